//! Oracle Cloud: JSON at `/opc/v2/instance/` and `/opc/v2/vnics/` with
//! `Authorization: Bearer Oracle`.

use serde::Deserialize;

use super::{netcfg, non_empty, CloudInterface, Ctx, Metadata, ProviderKind};
use crate::http::Request;
use crate::Result;

const BASE: &str = "http://169.254.169.254/opc/v2/";
/// OCI VNICs run jumbo frames.
const MTU: u32 = 9000;

fn request(ctx: &Ctx<'_>, path: &str) -> Result<Request> {
    Request::get(ctx.url(&format!("{BASE}{path}"))?).header("authorization", "Bearer Oracle")
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    Ok(match ctx.fetch(&request(ctx, "instance/")?).await? {
        Some(b) => parse_instance(&b.bytes).is_ok(),
        None => false,
    })
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let mut meta = parse_instance(&ctx.required(&request(ctx, "instance/")?).await?.bytes)?;
    if let Some(b) = ctx.fetch(&request(ctx, "vnics/")?).await? {
        meta.network = parse_vnics(&b.bytes)?;
    }
    Ok(meta)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Instance {
    id: String,
    hostname: Option<String>,
    display_name: Option<String>,
    canonical_region_name: Option<String>,
    region: Option<String>,
    availability_domain: Option<String>,
    shape: Option<String>,
    #[serde(default)]
    metadata: serde_json::Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vnic {
    mac_addr: String,
    private_ip: Option<String>,
    subnet_cidr_block: Option<String>,
    virtual_router_ip: Option<String>,
    #[serde(default)]
    ipv6_addresses: Vec<String>,
    ipv6_subnet_cidr_block: Option<String>,
    ipv6_virtual_router_ip: Option<String>,
}

/// `/opc/v2/instance/`. `metadata.ssh_authorized_keys` may be null or not a string.
pub fn parse_instance(bytes: &[u8]) -> Result<Metadata> {
    let doc: Instance = super::parse_json(ProviderKind::Oracle, "/opc/v2/instance/", bytes)?;
    let field = |k: &str| {
        doc.metadata
            .get(k)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    Ok(Metadata {
        instance_id: non_empty(Some(doc.id)),
        hostname: non_empty(doc.hostname).or(non_empty(doc.display_name)),
        region: non_empty(doc.canonical_region_name).or(non_empty(doc.region)),
        zone: non_empty(doc.availability_domain),
        instance_type: non_empty(doc.shape),
        ssh_keys: field("ssh_authorized_keys")
            .map(|k| k.lines().map(str::to_owned).collect())
            .unwrap_or_default(),
        network: Vec::new(),
        user_data_present: non_empty(field("user_data")).is_some(),
        notes: Vec::new(),
    })
}

/// `/opc/v2/vnics/`: the first VNIC is the primary. Addresses take their subnet's prefix;
/// the gateway is the subnet's virtual router.
pub fn parse_vnics(bytes: &[u8]) -> Result<Vec<CloudInterface>> {
    let vnics: Vec<Vnic> = super::parse_json(ProviderKind::Oracle, "/opc/v2/vnics/", bytes)?;
    Ok(vnics
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let prefix = |block: &Option<String>| {
                block
                    .as_deref()
                    .and_then(|b| b.split_once('/'))
                    .and_then(|(_, p)| p.parse::<u8>().ok())
            };
            let mut addresses: Vec<ipnet::IpNet> = Vec::new();
            addresses.extend(
                v.private_ip
                    .as_deref()
                    .zip(prefix(&v.subnet_cidr_block))
                    .and_then(|(a, p)| netcfg::cidr(a, p)),
            );
            if let Some(p6) = prefix(&v.ipv6_subnet_cidr_block) {
                addresses.extend(v.ipv6_addresses.iter().filter_map(|a| netcfg::cidr(a, p6)));
            }
            let mut routes = Vec::new();
            // Only the primary VNIC carries default routes; secondaries would compete.
            if i == 0 {
                for gw in [&v.virtual_router_ip, &v.ipv6_virtual_router_ip]
                    .into_iter()
                    .flatten()
                {
                    routes.extend(netcfg::route(
                        crate::facts::Destination::Default,
                        gw,
                        &addresses,
                    ));
                }
            }
            CloudInterface {
                mac: netcfg::mac(&v.mac_addr),
                addresses,
                routes,
                mtu: Some(MTU),
                dhcp4: Some(i == 0),
                ..CloudInterface::default()
            }
        })
        .collect())
}
