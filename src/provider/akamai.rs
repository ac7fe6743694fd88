//! Linode / Akamai: a token from `PUT /v1/token`, then JSON (asked for with `Accept`) from
//! `/v1/instance`, `/v1/network` and `/v1/ssh-keys`. No gateways or DNS: DHCP and SLAAC.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{id_string, netcfg, non_empty, CloudInterface, Ctx, Metadata, ProviderKind};
use crate::http::Request;
use crate::Result;

const BASE: &str = "http://169.254.169.254/v1/";

async fn token(ctx: &Ctx<'_>) -> Result<Option<String>> {
    let req = Request::put(ctx.url(&format!("{BASE}token"))?)
        .header("metadata-token-expiry-seconds", "3600")?;
    Ok(ctx
        .fetch(&req)
        .await?
        .map(|b| String::from_utf8_lossy(&b.bytes).trim().to_owned())
        .filter(|t| !t.is_empty() && t.len() < 4096))
}

fn request(ctx: &Ctx<'_>, path: &str, token: &str) -> Result<Request> {
    Request::get(ctx.url(&format!("{BASE}{path}"))?)
        .header("accept", "application/json")?
        .secret_header("metadata-token", token)
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    Ok(token(ctx).await?.is_some())
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let token = token(ctx)
        .await?
        .ok_or_else(|| ctx.invalid("PUT /v1/token: no token endpoint".into()))?;
    let mut meta = parse_instance(
        &ctx.required(&request(ctx, "instance", &token)?)
            .await?
            .bytes,
    )?;
    if let Some(b) = ctx.fetch(&request(ctx, "network", &token)?).await? {
        meta.network = parse_network(&b.bytes)?;
    }
    if let Some(b) = ctx.fetch(&request(ctx, "ssh-keys", &token)?).await? {
        let keys: SshKeys = ctx.parse_json("/v1/ssh-keys", &b.bytes)?;
        meta.ssh_keys = keys.users.into_values().flatten().collect();
    }
    meta.user_data_present = ctx
        .fetch(&request(ctx, "user-data", &token)?)
        .await?
        .is_some_and(|b| !b.bytes.is_empty());
    Ok(meta)
}

#[derive(Deserialize)]
struct Instance {
    id: serde_json::Value,
    label: Option<String>,
    region: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct SshKeys {
    #[serde(default)]
    users: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct Network {
    #[serde(default)]
    ipv4: V4,
    #[serde(default)]
    ipv6: V6,
}

#[derive(Deserialize, Default)]
struct V4 {
    #[serde(default)]
    public: Vec<String>,
    #[serde(default)]
    private: Vec<String>,
}

#[derive(Deserialize, Default)]
struct V6 {
    slaac: Option<String>,
}

/// `/v1/instance`. Linode has no hostname field; the label is what users name the instance.
pub fn parse_instance(bytes: &[u8]) -> Result<Metadata> {
    let doc: Instance = super::parse_json(ProviderKind::Akamai, "/v1/instance", bytes)?;
    Ok(Metadata {
        instance_id: Some(
            id_string(&doc.id)
                .ok_or_else(|| super::invalid(ProviderKind::Akamai, "id is missing".into()))?,
        ),
        hostname: non_empty(doc.label),
        region: non_empty(doc.region),
        instance_type: non_empty(doc.kind),
        ..Metadata::default()
    })
}

/// `/v1/network`: one interface (the MAC is not published), addresses as CIDR strings.
pub fn parse_network(bytes: &[u8]) -> Result<Vec<CloudInterface>> {
    let doc: Network = super::parse_json(ProviderKind::Akamai, "/v1/network", bytes)?;
    let addresses: Vec<ipnet::IpNet> = doc
        .ipv4
        .public
        .iter()
        .chain(&doc.ipv4.private)
        .chain(&doc.ipv6.slaac)
        .filter_map(|a| netcfg::parse_cidr(a, None))
        .collect();
    Ok(vec![CloudInterface {
        addresses,
        dhcp4: Some(true),
        dhcp6: Some(true),
        ..CloudInterface::default()
    }])
}
