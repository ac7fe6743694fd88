//! Vultr: one JSON document at `/v1.json` (sent with `Metadata-Token: cloudinit`, as cloud-init
//! does). The primary NIC uses DHCP; private NICs are static.

use serde::Deserialize;

use super::digitalocean::string_list;
use super::{id_string, netcfg, non_empty, CloudInterface, Ctx, Metadata, ProviderKind};
use crate::http::Request;
use crate::Result;

const URL: &str = "http://169.254.169.254/v1.json";

fn request(ctx: &Ctx<'_>) -> Result<Request> {
    Request::get(ctx.url(URL)?).header("metadata-token", "cloudinit")
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    Ok(match ctx.fetch(&request(ctx)?).await? {
        Some(b) => parse(&b.bytes).is_ok(),
        None => false,
    })
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    parse(&ctx.required(&request(ctx)?).await?.bytes)
}

#[derive(Deserialize)]
struct Doc {
    #[serde(rename = "instance-v2-id")]
    instance_v2_id: Option<String>,
    #[serde(default)]
    instanceid: serde_json::Value,
    hostname: Option<String>,
    region: Option<Region>,
    #[serde(rename = "public-keys", default)]
    public_keys: serde_json::Value,
    #[serde(rename = "user-data")]
    user_data: Option<serde_json::Value>,
    #[serde(default)]
    interfaces: Vec<Nic>,
}

#[derive(Deserialize)]
struct Region {
    regioncode: Option<String>,
}

#[derive(Deserialize)]
struct Nic {
    mac: String,
    #[serde(rename = "network-type")]
    network_type: Option<String>,
    ipv4: Option<V4>,
    ipv6: Option<V6>,
    mtu: Option<u32>,
}

#[derive(Deserialize)]
struct V4 {
    address: Option<String>,
    netmask: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct V6 {
    address: Option<String>,
    prefix: Option<serde_json::Value>,
}

/// The `/v1.json` document.
pub fn parse(bytes: &[u8]) -> Result<Metadata> {
    let doc: Doc = super::parse_json(ProviderKind::Vultr, "/v1.json", bytes)?;
    let instance_id = non_empty(doc.instance_v2_id)
        .or_else(|| id_string(&doc.instanceid))
        .ok_or_else(|| super::invalid(ProviderKind::Vultr, "instance-v2-id is missing".into()))?;
    let network = doc
        .interfaces
        .iter()
        .map(|nic| {
            let public = nic.network_type.as_deref() != Some("private");
            let mut iface = CloudInterface {
                mac: netcfg::mac(&nic.mac),
                mtu: nic.mtu,
                dhcp4: Some(public),
                dhcp6: Some(public),
                ..CloudInterface::default()
            };
            if let Some(v4) = &nic.ipv4 {
                let prefix = v4.netmask.as_deref().and_then(netcfg::prefix_len);
                iface.addresses.extend(
                    v4.address
                        .as_deref()
                        .zip(prefix)
                        .and_then(|(a, p)| netcfg::cidr(a, p)),
                );
            }
            if let Some(v6) = &nic.ipv6 {
                let prefix = v6
                    .prefix
                    .as_ref()
                    .and_then(id_string)
                    .and_then(|p| p.parse().ok());
                iface.addresses.extend(
                    v6.address
                        .as_deref()
                        .zip(prefix)
                        .and_then(|(a, p)| netcfg::cidr(a, p)),
                );
            }
            if let Some(gw) = nic.ipv4.as_ref().and_then(|v| v.gateway.as_deref()) {
                iface.routes.extend(netcfg::route(
                    crate::facts::Destination::Default,
                    gw,
                    &iface.addresses,
                ));
            }
            iface
        })
        .collect();
    Ok(Metadata {
        instance_id: Some(instance_id),
        hostname: non_empty(doc.hostname),
        region: doc
            .region
            .and_then(|r| non_empty(r.regioncode))
            .map(|r| r.to_ascii_lowercase()),
        zone: None,
        instance_type: None,
        ssh_keys: string_list(&doc.public_keys),
        network,
        user_data_present: doc
            .user_data
            .as_ref()
            .is_some_and(|u| !u.is_null() && u.as_str() != Some("")),
        notes: Vec::new(),
    })
}
