//! NoCloud: seed files `meta-data`, `user-data` and `network-config`, from the `seedfrom` URL of
//! a `ds=nocloud;s=…` line-config (SMBIOS serial or kernel command line), from a local seed
//! directory, or from a mounted `cidata` volume. Nothing is mounted here.

use std::path::PathBuf;

use serde::Deserialize;

use super::{detect, netcfg, non_empty, Ctx, Metadata, ProviderKind};
use crate::http::Request;
use crate::Result;

/// The parsed `ds=nocloud;s=…;i=…;h=…` line-config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineConfig {
    pub seedfrom: Option<String>,
    pub instance_id: Option<String>,
    pub hostname: Option<String>,
}

/// Finds a `ds=nocloud…` word in `text` (the SMBIOS serial or the kernel command line).
pub fn parse_line_config(text: &str) -> Option<LineConfig> {
    let word = text
        .split_whitespace()
        .find(|w| w.starts_with("ds=nocloud"))?;
    let mut cfg = LineConfig::default();
    for part in word.split(';').skip(1) {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        let v = Some(v.to_owned()).filter(|v| !v.is_empty());
        match k {
            "s" | "seedfrom" => cfg.seedfrom = v,
            "i" | "instance-id" => cfg.instance_id = v,
            "h" | "local-hostname" => cfg.hostname = v,
            _ => {}
        }
    }
    Some(cfg)
}

enum Seed {
    Url(String),
    Dir(PathBuf),
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let serial = ctx
        .facts
        .dmi
        .product_serial
        .as_deref()
        .filter(|_| ctx.facts.host.container.is_none());
    let line = serial
        .and_then(parse_line_config)
        .or_else(|| ctx.signals.cmdline.as_deref().and_then(parse_line_config))
        .unwrap_or_default();
    let seed = match line.seedfrom.as_deref() {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
            let url = if url.ends_with('/') {
                url.to_owned()
            } else {
                format!("{url}/")
            };
            Some(Seed::Url(url))
        }
        Some(path) => Some(Seed::Dir(
            ctx.root.join(path.strip_prefix("file://").unwrap_or(path)),
        )),
        None => ctx
            .signals
            .nocloud_seed
            .as_deref()
            .map(|d| Seed::Dir(ctx.root.join(d)))
            .or_else(|| {
                detect::cidata_label(ctx.facts)
                    .and_then(|mounts| mounts.into_iter().next())
                    .map(|m| Seed::Dir(ctx.root.join(m)))
            }),
    };
    let Some(seed) = seed else {
        let mut meta = Metadata {
            instance_id: line.instance_id,
            hostname: line.hostname,
            ..Metadata::default()
        };
        meta.notes.push(
            "nocloud-seed-unreadable: no seedfrom URL, seed directory or mounted cidata volume"
                .into(),
        );
        return Ok(meta);
    };
    let read = |name: &'static str| {
        let seed = &seed;
        async move {
            match seed {
                Seed::Url(base) => {
                    let req = Request::get(ctx.url(&format!("{base}{name}"))?);
                    Ok::<_, crate::Error>(ctx.fetch(&req).await?.map(|b| b.bytes))
                }
                Seed::Dir(dir) => Ok(std::fs::read(dir.join(name)).ok()),
            }
        }
    };
    let meta_data = read("meta-data")
        .await?
        .ok_or_else(|| ctx.invalid("the seed has no meta-data file".into()))?;
    let mut meta = parse_meta_data(&meta_data)?;
    if let Some(nc) = read("network-config").await? {
        meta.network = netcfg::parse_network_config(&nc)
            .map_err(|e| ctx.invalid(format!("parsing network-config: {e}")))?;
    }
    meta.user_data_present = read("user-data").await?.is_some_and(|u| !u.is_empty());
    meta.hostname = meta.hostname.or(line.hostname);
    Ok(meta)
}

#[derive(Deserialize)]
struct MetaData {
    #[serde(rename = "instance-id")]
    instance_id: serde_json::Value,
    #[serde(rename = "local-hostname")]
    local_hostname: Option<String>,
    #[serde(rename = "public-keys", alias = "public_keys", default)]
    public_keys: serde_json::Value,
}

/// The `meta-data` YAML; `instance-id` is required.
pub fn parse_meta_data(bytes: &[u8]) -> Result<Metadata> {
    let doc: MetaData = super::parse_yaml(ProviderKind::Nocloud, "meta-data", bytes)?;
    let keys = match &doc.public_keys {
        serde_json::Value::Object(m) => m
            .values()
            .filter_map(|v| v.as_str())
            .map(str::to_owned)
            .collect(),
        other => super::digitalocean::string_list(other),
    };
    Ok(Metadata {
        instance_id: Some(super::id_string(&doc.instance_id).ok_or_else(|| {
            super::invalid(ProviderKind::Nocloud, "meta-data has no instance-id".into())
        })?),
        hostname: non_empty(doc.local_hostname),
        ssh_keys: keys,
        ..Metadata::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn line_config() {
        let c = parse_line_config(
            "quiet ds=nocloud;s=http://10.0.2.2:8000/seed/;i=iid-1;h=web-1 console=ttyS0",
        )
        .unwrap();
        assert_eq!(c.seedfrom.as_deref(), Some("http://10.0.2.2:8000/seed/"));
        assert_eq!(c.instance_id.as_deref(), Some("iid-1"));
        assert_eq!(c.hostname.as_deref(), Some("web-1"));
        assert_eq!(parse_line_config("root=/dev/vda"), None);
    }
}
