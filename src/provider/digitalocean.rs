//! DigitalOcean: one JSON document at `/metadata/v1.json`. Every address is static (no DHCP):
//! public IPv4/IPv6 with gateways, the anchor IPv4 (for reserved IPs) and private IPv4.

use serde::Deserialize;

use super::{id_string, netcfg, non_empty, CloudInterface, Ctx, Metadata, ProviderKind};
use crate::Result;

const URL: &str = "http://169.254.169.254/metadata/v1.json";

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    ctx.probe_document(URL, parse).await
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    ctx.fetch_document(URL, parse).await
}

#[derive(Deserialize)]
struct Doc {
    droplet_id: serde_json::Value,
    hostname: Option<String>,
    region: Option<String>,
    #[serde(default)]
    public_keys: serde_json::Value,
    user_data: Option<String>,
    #[serde(default)]
    interfaces: Interfaces,
    dns: Option<Dns>,
}

#[derive(Deserialize, Default)]
struct Interfaces {
    #[serde(default)]
    public: Vec<Nic>,
    #[serde(default)]
    private: Vec<Nic>,
}

#[derive(Deserialize)]
struct Nic {
    mac: String,
    ipv4: Option<V4>,
    anchor_ipv4: Option<V4>,
    ipv6: Option<V6>,
}

#[derive(Deserialize)]
struct V4 {
    ip_address: String,
    netmask: String,
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct V6 {
    ip_address: String,
    cidr: serde_json::Value,
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct Dns {
    #[serde(default)]
    nameservers: Vec<String>,
}

/// The `/metadata/v1.json` document. Default routes go via the public gateways only; anchor and
/// private addresses are on-link subnets without a gateway of their own.
pub fn parse(bytes: &[u8]) -> Result<Metadata> {
    let doc: Doc = super::parse_json(ProviderKind::Digitalocean, "/metadata/v1.json", bytes)?;
    let instance_id = id_string(&doc.droplet_id).ok_or_else(|| {
        super::invalid(ProviderKind::Digitalocean, "droplet_id is missing".into())
    })?;
    let dns = netcfg::ips(&doc.dns.map(|d| d.nameservers).unwrap_or_default());
    let mut network = Vec::new();
    for (nic, public) in doc
        .interfaces
        .public
        .iter()
        .map(|n| (n, true))
        .chain(doc.interfaces.private.iter().map(|n| (n, false)))
    {
        let mut iface = CloudInterface {
            mac: netcfg::mac(&nic.mac),
            dhcp4: Some(false),
            dhcp6: Some(false),
            ..CloudInterface::default()
        };
        for v4 in [&nic.ipv4, &nic.anchor_ipv4].into_iter().flatten() {
            iface.addresses.extend(
                netcfg::prefix_len(&v4.netmask).and_then(|p| netcfg::cidr(&v4.ip_address, p)),
            );
        }
        if let Some(v6) = &nic.ipv6 {
            let prefix = id_string(&v6.cidr).and_then(|c| c.parse().ok());
            iface
                .addresses
                .extend(prefix.and_then(|p| netcfg::cidr(&v6.ip_address, p)));
        }
        if public {
            let gws = [
                nic.ipv4.as_ref().and_then(|v| v.gateway.clone()),
                nic.ipv6.as_ref().and_then(|v| v.gateway.clone()),
            ];
            for gw in gws.into_iter().flatten() {
                iface.routes.extend(netcfg::route(
                    crate::facts::Destination::Default,
                    &gw,
                    &iface.addresses,
                ));
            }
            iface.dns.clone_from(&dns);
        }
        network.push(iface);
    }
    Ok(Metadata {
        instance_id: Some(instance_id),
        hostname: non_empty(doc.hostname),
        region: non_empty(doc.region),
        zone: None,
        instance_type: None,
        ssh_keys: string_list(&doc.public_keys),
        network,
        user_data_present: non_empty(doc.user_data).is_some(),
        notes: Vec::new(),
    })
}

/// DigitalOcean's `public_keys` is a list, a newline-separated string or `""`.
pub(crate) fn string_list(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => s.lines().map(str::to_owned).collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .filter_map(|k| k.as_str())
            .flat_map(str::lines)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}
