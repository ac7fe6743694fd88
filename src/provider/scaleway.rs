//! Scaleway: JSON at `http://169.254.42.42/conf?format=json`, no auth. User-data needs a
//! privileged source port, which reqwest cannot choose; its presence is read from the listing.

use serde::Deserialize;

use super::{netcfg, non_empty, CloudInterface, Ctx, Metadata, ProviderKind};
use crate::Result;

const URL: &str = "http://169.254.42.42/conf?format=json";

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    ctx.probe_document(URL, parse).await
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let mut meta = ctx.fetch_document(URL, parse).await?;
    meta.notes
        .push("user-data-not-checked: Scaleway serves it only to privileged source ports".into());
    Ok(meta)
}

#[derive(Deserialize)]
struct Doc {
    id: String,
    hostname: Option<String>,
    commercial_type: Option<String>,
    zone: Option<String>,
    location: Option<Location>,
    #[serde(default)]
    ssh_public_keys: Vec<Key>,
    #[serde(default)]
    tags: Vec<String>,
    mac_address: Option<String>,
    ipv6: Option<V6>,
}

#[derive(Deserialize)]
struct Location {
    zone_id: Option<String>,
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

#[derive(Deserialize)]
struct V6 {
    address: Option<String>,
    gateway: Option<String>,
    netmask: Option<String>,
}

/// The `/conf` document. IPv4 is DHCP; IPv6, when assigned, is static with its gateway.
pub fn parse(bytes: &[u8]) -> Result<Metadata> {
    let doc: Doc = super::parse_json(ProviderKind::Scaleway, "/conf", bytes)?;
    let zone = doc
        .location
        .and_then(|l| non_empty(l.zone_id))
        .or(non_empty(doc.zone));
    let region = zone
        .as_deref()
        .and_then(|z| z.rsplit_once('-'))
        .map(|(r, _)| r.to_owned());
    let mut keys: Vec<String> = doc.ssh_public_keys.into_iter().map(|k| k.key).collect();
    // Tags `AUTHORIZED_KEY=ssh-ed25519_AAAA...`: underscores stand for spaces.
    keys.extend(
        doc.tags
            .iter()
            .filter_map(|t| t.strip_prefix("AUTHORIZED_KEY="))
            .map(|k| k.replace('_', " ")),
    );
    let mut iface = CloudInterface {
        mac: doc.mac_address.as_deref().and_then(netcfg::mac),
        dhcp4: Some(true),
        ..CloudInterface::default()
    };
    if let Some(v6) = &doc.ipv6 {
        let prefix = v6.netmask.as_deref().and_then(netcfg::prefix_len);
        iface.addresses.extend(
            v6.address
                .as_deref()
                .zip(prefix)
                .and_then(|(a, p)| netcfg::cidr(a, p)),
        );
        if let Some(gw) = &v6.gateway {
            iface.routes.extend(netcfg::route(
                crate::facts::Destination::Default,
                gw,
                &iface.addresses,
            ));
        }
    }
    Ok(Metadata {
        instance_id: non_empty(Some(doc.id)),
        hostname: non_empty(doc.hostname),
        region,
        zone,
        instance_type: non_empty(doc.commercial_type),
        ssh_keys: keys,
        network: vec![iface],
        user_data_present: false,
        notes: Vec::new(),
    })
}
