//! Hetzner Cloud: one YAML document at `/hetzner/v1/metadata` (cloud-init network v1 inside);
//! user-data at `/hetzner/v1/userdata`, 204 when empty.

use serde::Deserialize;

use super::{id_string, netcfg, non_empty, Ctx, Metadata, ProviderKind};
use crate::http::Request;
use crate::Result;

const BASE: &str = "http://169.254.169.254/hetzner/v1/";

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    Ok(
        match ctx
            .fetch(&Request::get(ctx.url(&format!("{BASE}metadata"))?))
            .await?
        {
            Some(b) => parse(&b.bytes).is_ok(),
            None => false,
        },
    )
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let body = ctx
        .required(&Request::get(ctx.url(&format!("{BASE}metadata"))?))
        .await?;
    let mut meta = parse(&body.bytes)?;
    let user_data = ctx
        .fetch(&Request::get(ctx.url(&format!("{BASE}userdata"))?))
        .await?;
    meta.user_data_present = user_data.is_some_and(|b| !b.bytes.is_empty());
    Ok(meta)
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "instance-id")]
    instance_id: serde_json::Value,
    hostname: Option<String>,
    region: Option<String>,
    #[serde(rename = "availability-zone")]
    zone: Option<String>,
    #[serde(rename = "public-keys", default)]
    public_keys: Vec<String>,
    #[serde(rename = "network-config")]
    network_config: Option<serde_yaml::Value>,
}

/// The `/hetzner/v1/metadata` YAML document.
pub fn parse(bytes: &[u8]) -> Result<Metadata> {
    let doc: Doc = super::parse_yaml(ProviderKind::Hetzner, "the metadata document", bytes)?;
    let instance_id = id_string(&doc.instance_id).ok_or_else(|| {
        super::invalid(
            ProviderKind::Hetzner,
            "instance-id is not a number or string".into(),
        )
    })?;
    let network = match doc.network_config {
        Some(v) => netcfg::from_value(v).map_err(|e| {
            super::invalid(
                ProviderKind::Hetzner,
                format!("parsing network-config: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    Ok(Metadata {
        instance_id: Some(instance_id),
        hostname: non_empty(doc.hostname),
        region: non_empty(doc.region),
        zone: non_empty(doc.zone),
        instance_type: None,
        ssh_keys: doc.public_keys,
        network,
        user_data_present: false,
        notes: Vec::new(),
    })
}
