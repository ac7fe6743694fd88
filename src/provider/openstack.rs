//! OpenStack: `meta_data.json` and `network_data.json` under `/openstack/latest/`, plus the
//! EC2-compatible tree for the instance type (not in the OpenStack documents).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ec2::Tree;
use super::{netcfg, non_empty, CloudInterface, Ctx, Metadata, ProviderKind};
use crate::facts::Destination;
use crate::http::Request;
use crate::Result;

const BASE: &str = "http://169.254.169.254/openstack/latest/";

fn request(ctx: &Ctx<'_>, file: &str) -> Result<Request> {
    Ok(Request::get(ctx.url(&format!("{BASE}{file}"))?))
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    Ok(match ctx.fetch(&request(ctx, "meta_data.json")?).await? {
        Some(b) => parse_meta_data(&b.bytes).is_ok(),
        None => false,
    })
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let mut meta = parse_meta_data(&ctx.required(&request(ctx, "meta_data.json")?).await?.bytes)?;
    if let Some(b) = ctx.fetch(&request(ctx, "network_data.json")?).await? {
        meta.network = parse_network_data(&b.bytes)?;
    }
    meta.user_data_present = ctx
        .fetch(&request(ctx, "user_data")?)
        .await?
        .is_some_and(|b| !b.bytes.is_empty());
    let ec2 = Tree {
        ctx,
        base: "http://169.254.169.254/latest/meta-data/".into(),
        token: None,
    };
    meta.instance_type = ec2.leaf("instance-type").await?;
    Ok(meta)
}

#[derive(Deserialize)]
struct MetaData {
    uuid: String,
    hostname: Option<String>,
    name: Option<String>,
    availability_zone: Option<String>,
    #[serde(default)]
    public_keys: BTreeMap<String, String>,
    #[serde(default)]
    keys: Vec<Key>,
}

#[derive(Deserialize)]
struct Key {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<String>,
}

/// `meta_data.json`. Region is not published.
pub fn parse_meta_data(bytes: &[u8]) -> Result<Metadata> {
    let doc: MetaData = super::parse_json(ProviderKind::Openstack, "meta_data.json", bytes)?;
    let mut keys: Vec<String> = doc.public_keys.into_values().collect();
    keys.extend(
        doc.keys
            .into_iter()
            .filter(|k| k.kind.as_deref() == Some("ssh"))
            .filter_map(|k| k.data),
    );
    Ok(Metadata {
        instance_id: non_empty(Some(doc.uuid)),
        hostname: non_empty(doc.hostname).or(non_empty(doc.name)),
        zone: non_empty(doc.availability_zone),
        ssh_keys: keys
            .iter()
            .flat_map(|k| k.lines())
            .map(str::to_owned)
            .collect(),
        ..Metadata::default()
    })
}

#[derive(Deserialize)]
struct NetworkData {
    #[serde(default)]
    links: Vec<Link>,
    #[serde(default)]
    networks: Vec<Network>,
    #[serde(default)]
    services: Vec<Service>,
}

#[derive(Deserialize)]
struct Link {
    id: String,
    ethernet_mac_address: Option<String>,
    mtu: Option<u32>,
}

#[derive(Deserialize)]
struct Network {
    link: String,
    #[serde(rename = "type")]
    kind: String,
    ip_address: Option<String>,
    netmask: Option<String>,
    #[serde(default)]
    routes: Vec<Route>,
}

#[derive(Deserialize)]
struct Route {
    network: String,
    netmask: String,
    gateway: String,
}

#[derive(Deserialize)]
struct Service {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}

/// `network_data.json`: links (NICs by MAC), networks (static or DHCP, with routes) and DNS.
pub fn parse_network_data(bytes: &[u8]) -> Result<Vec<CloudInterface>> {
    let doc: NetworkData = super::parse_json(ProviderKind::Openstack, "network_data.json", bytes)?;
    let dns: Vec<std::net::IpAddr> = doc
        .services
        .iter()
        .filter(|s| s.kind == "dns")
        .filter_map(|s| s.address.trim().parse().ok())
        .collect();
    Ok(doc
        .links
        .iter()
        .map(|link| {
            let mut iface = CloudInterface {
                mac: link.ethernet_mac_address.as_deref().and_then(netcfg::mac),
                mtu: link.mtu,
                dns: dns.clone(),
                ..CloudInterface::default()
            };
            for net in doc.networks.iter().filter(|n| n.link == link.id) {
                match net.kind.as_str() {
                    "ipv4_dhcp" => iface.dhcp4 = Some(true),
                    "ipv6_dhcp"
                    | "ipv6_dhcpv6-stateful"
                    | "ipv6_dhcpv6-stateless"
                    | "ipv6_slaac" => iface.dhcp6 = Some(true),
                    "ipv4" | "ipv6" => {
                        let default = net.netmask.as_deref().and_then(netcfg::prefix_len);
                        iface.addresses.extend(
                            net.ip_address
                                .as_deref()
                                .and_then(|a| netcfg::parse_cidr(a, default)),
                        );
                        for r in &net.routes {
                            let Some(dst) = netcfg::prefix_len(&r.netmask)
                                .and_then(|p| netcfg::cidr(&r.network, p))
                            else {
                                continue;
                            };
                            let dst = if dst.prefix_len() == 0 {
                                Destination::Default
                            } else {
                                Destination::Prefix(dst)
                            };
                            iface
                                .routes
                                .extend(netcfg::route(dst, &r.gateway, &iface.addresses));
                        }
                    }
                    _ => {}
                }
            }
            iface
        })
        .collect())
}
