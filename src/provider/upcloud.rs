//! UpCloud: one JSON document at `/metadata/v1.json`; per-interface addresses with DHCP flags.

use serde::Deserialize;

use super::{netcfg, non_empty, CloudInterface, Ctx, Metadata, ProviderKind};
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
    instance_id: String,
    hostname: Option<String>,
    region: Option<String>,
    #[serde(default)]
    public_keys: Vec<String>,
    user_data: Option<String>,
    #[serde(default)]
    network: Network,
}

#[derive(Deserialize, Default)]
struct Network {
    #[serde(default)]
    interfaces: Vec<Nic>,
    #[serde(default)]
    dns: Vec<String>,
}

#[derive(Deserialize)]
struct Nic {
    mac: String,
    #[serde(default)]
    ip_addresses: Vec<Ip>,
}

#[derive(Deserialize)]
struct Ip {
    address: String,
    #[serde(default)]
    dhcp: bool,
    family: Option<String>,
    gateway: Option<String>,
    network: Option<String>,
}

/// The `/metadata/v1.json` document. Floating IPs (dhcp false, a /32) become static addresses.
pub fn parse(bytes: &[u8]) -> Result<Metadata> {
    let doc: Doc = super::parse_json(ProviderKind::Upcloud, "/metadata/v1.json", bytes)?;
    let network = doc
        .network
        .interfaces
        .iter()
        .map(|nic| {
            let mut iface = CloudInterface {
                mac: netcfg::mac(&nic.mac),
                dhcp4: Some(
                    nic.ip_addresses
                        .iter()
                        .any(|i| i.dhcp && i.family.as_deref() == Some("IPv4")),
                ),
                dhcp6: Some(
                    nic.ip_addresses
                        .iter()
                        .any(|i| i.dhcp && i.family.as_deref() == Some("IPv6")),
                ),
                ..CloudInterface::default()
            };
            for ip in nic.ip_addresses.iter().filter(|i| !i.dhcp) {
                let prefix = ip
                    .network
                    .as_deref()
                    .and_then(|n| n.split_once('/'))
                    .and_then(|(_, p)| p.parse().ok());
                iface
                    .addresses
                    .extend(prefix.and_then(|p| netcfg::cidr(&ip.address, p)));
                if let Some(gw) = ip.gateway.as_deref().filter(|g| !g.is_empty()) {
                    iface.routes.extend(netcfg::route(
                        crate::facts::Destination::Default,
                        gw,
                        &iface.addresses,
                    ));
                }
            }
            iface.dns = netcfg::ips(&doc.network.dns);
            iface
        })
        .collect();
    Ok(Metadata {
        instance_id: non_empty(Some(doc.instance_id)),
        hostname: non_empty(doc.hostname),
        region: non_empty(doc.region),
        zone: None,
        instance_type: None,
        ssh_keys: doc.public_keys,
        network,
        user_data_present: non_empty(doc.user_data).is_some(),
        notes: Vec::new(),
    })
}
