//! Azure IMDS: one JSON document at `/metadata/instance` with `Metadata: true` and an
//! `api-version`. 404 and 410 are transient here while IMDS starts (cloud-init's
//! `cloudinit/sources/azure/imds.py` retries them too).

use serde::Deserialize;

use super::{netcfg, non_empty, CloudInterface, Ctx, Metadata, ProviderKind};
use crate::http::Request;
use crate::Result;

const URL: &str = "http://169.254.169.254/metadata/instance?api-version=2021-08-01";

fn request(ctx: &Ctx<'_>) -> Result<Request> {
    Ok(Request::get(ctx.url(URL)?)
        .header("metadata", "true")?
        .also_retry(&[404, 410]))
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    // No 404 retry while probing: a non-Azure service answers 404 for good.
    let req = request(ctx)?.also_retry(&[]);
    Ok(match ctx.fetch(&req).await? {
        Some(b) => parse(&b.bytes).is_ok(),
        None => false,
    })
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let body = ctx.required(&request(ctx)?).await?;
    parse(&body.bytes)
}

#[derive(Deserialize)]
struct Instance {
    compute: Compute,
    #[serde(default)]
    network: Network,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Compute {
    vm_id: String,
    name: Option<String>,
    location: Option<String>,
    zone: Option<String>,
    vm_size: Option<String>,
    os_profile: Option<OsProfile>,
    #[serde(default)]
    public_keys: Vec<PublicKey>,
    user_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OsProfile {
    computer_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PublicKey {
    key_data: String,
}

#[derive(Deserialize, Default)]
struct Network {
    #[serde(default)]
    interface: Vec<Nic>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Nic {
    mac_address: String,
    #[serde(default)]
    ipv4: Family,
    #[serde(default)]
    ipv6: Family,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Family {
    #[serde(default)]
    ip_address: Vec<Ip>,
    #[serde(default)]
    subnet: Vec<Subnet>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ip {
    private_ip_address: Option<String>,
}

#[derive(Deserialize)]
struct Subnet {
    prefix: Option<String>,
}

/// The IMDS instance document. Addresses come with their subnet's prefix; gateways and DNS
/// come from DHCP on Azure, so none are published.
pub fn parse(bytes: &[u8]) -> Result<Metadata> {
    let doc: Instance =
        super::parse_json(ProviderKind::Azure, "the IMDS instance document", bytes)?;
    let c = doc.compute;
    let network = doc
        .network
        .interface
        .iter()
        .map(|nic| {
            let mut addresses = Vec::new();
            for (fam, default) in [(&nic.ipv4, 32u8), (&nic.ipv6, 128u8)] {
                let prefix = fam
                    .subnet
                    .first()
                    .and_then(|s| s.prefix.as_deref())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(default);
                addresses.extend(
                    fam.ip_address
                        .iter()
                        .filter_map(|ip| ip.private_ip_address.as_deref())
                        .filter_map(|a| netcfg::cidr(a, prefix)),
                );
            }
            CloudInterface {
                mac: netcfg::mac(&nic.mac_address),
                addresses,
                dhcp4: Some(true),
                ..CloudInterface::default()
            }
        })
        .collect();
    Ok(Metadata {
        instance_id: non_empty(Some(c.vm_id)),
        hostname: non_empty(c.os_profile.and_then(|o| o.computer_name)).or(non_empty(c.name)),
        region: non_empty(c.location),
        zone: non_empty(c.zone),
        instance_type: non_empty(c.vm_size),
        ssh_keys: c.public_keys.into_iter().map(|k| k.key_data).collect(),
        network,
        user_data_present: non_empty(c.user_data).is_some(),
        notes: Vec::new(),
    })
}
