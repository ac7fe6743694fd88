//! Google Compute Engine: text leaves under `/computeMetadata/v1/`, `Metadata-Flavor: Google`
//! on every request and echoed on every answer.

use super::{netcfg, CloudInterface, Ctx, Metadata};
use crate::http::Request;
use crate::Result;

const BASE: &str = "http://169.254.169.254/computeMetadata/v1/";

fn request(ctx: &Ctx<'_>, path: &str) -> Result<Request> {
    Request::get(ctx.url(&format!("{BASE}{path}"))?).header("metadata-flavor", "Google")
}

async fn leaf(ctx: &Ctx<'_>, path: &str) -> Result<Option<String>> {
    ctx.text(&request(ctx, path)?).await
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    let Some(body) = ctx
        .client
        .send(&request(ctx, "instance/id")?, ctx.deadline)
        .await?
    else {
        return Ok(false);
    };
    Ok(body
        .headers()
        .get("metadata-flavor")
        .is_some_and(|v| v == "Google"))
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let instance_id = leaf(ctx, "instance/id")
        .await?
        .ok_or_else(|| ctx.invalid("instance/id is missing".into()))?;
    let zone = leaf(ctx, "instance/zone").await?.map(|z| last_segment(&z));
    let region = zone
        .as_deref()
        .and_then(|z| z.rsplit_once('-'))
        .map(|(r, _)| r.to_owned());
    let mut keys = Vec::new();
    // Legacy `sshKeys` wins alone when present (afterburn); otherwise instance then project keys.
    if let Some(legacy) = leaf(ctx, "instance/attributes/sshKeys").await? {
        keys.extend(parse_ssh_keys(legacy.as_bytes()));
    } else {
        if let Some(k) = leaf(ctx, "instance/attributes/ssh-keys").await? {
            keys.extend(parse_ssh_keys(k.as_bytes()));
        }
        if leaf(ctx, "instance/attributes/block-project-ssh-keys")
            .await?
            .as_deref()
            != Some("true")
        {
            for path in ["project/attributes/sshKeys", "project/attributes/ssh-keys"] {
                if let Some(k) = leaf(ctx, path).await? {
                    keys.extend(parse_ssh_keys(k.as_bytes()));
                }
            }
        }
    }
    let mut network = Vec::new();
    for n in 0..8 {
        let dir = format!("instance/network-interfaces/{n}/");
        let Some(mac) = leaf(ctx, &format!("{dir}mac")).await? else {
            break;
        };
        let mut iface = CloudInterface {
            mac: netcfg::mac(&mac),
            mtu: leaf(ctx, &format!("{dir}mtu"))
                .await?
                .and_then(|m| m.parse().ok()),
            dhcp4: Some(true),
            ..CloudInterface::default()
        };
        if let Some(dns) = leaf(ctx, &format!("{dir}dns-servers")).await? {
            iface.dns = dns
                .split([',', '\n'])
                .filter_map(|s| s.trim().parse().ok())
                .collect();
        }
        network.push(iface);
    }
    Ok(Metadata {
        instance_id: Some(instance_id),
        hostname: leaf(ctx, "instance/hostname").await?,
        region,
        zone,
        instance_type: leaf(ctx, "instance/machine-type")
            .await?
            .map(|t| last_segment(&t)),
        ssh_keys: keys,
        network,
        user_data_present: leaf(ctx, "instance/attributes/user-data").await?.is_some(),
        notes: Vec::new(),
    })
}

fn last_segment(s: &str) -> String {
    s.rsplit('/').next().unwrap_or(s).to_owned()
}

/// `user:<key> [google-ssh {...}]` lines → the keys, without the user and the google-ssh JSON.
pub fn parse_ssh_keys(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|line| {
            let (_, key) = line.trim().split_once(':')?;
            let key = match key.find(" google-ssh ") {
                Some(i) => &key[..i],
                None => key,
            };
            Some(key.trim().to_owned()).filter(|k| !k.is_empty())
        })
        .collect()
}
