//! AWS EC2 IMDS: IMDSv2 (a token from `PUT /latest/api/token`, sent on every GET). The PUT's
//! status decides the rest (AWS's documented IMDS error codes):
//! - 403: IMDS is turned off for the instance (or the request was refused): fatal, with the fix;
//! - 404 or 405: no token endpoint here, i.e. an IMDSv1-only (EC2-compatible) service: read
//!   without a token, noted as `imdsv1-fallback`. If those GETs then answer 401, the service
//!   wants a token it does not issue, and the error says so.
//! - a GET answering 401 with a token means the token expired or was revoked: fetch a new one
//!   and read again, once; a second 401 is fatal.

use serde::Deserialize;

use super::ec2::{region_of_zone, Tree};
use super::{netcfg, CloudInterface, Ctx, Metadata};
use crate::facts::MacAddr;
use crate::http::Request;
use crate::{Error, Result};

const BASE: &str = "http://169.254.169.254";
const TOKEN_TTL: &str = "21600";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";

async fn token(ctx: &Ctx<'_>) -> Result<Option<String>> {
    let req = Request::put(ctx.url(&format!("{BASE}/latest/api/token"))?)
        .header("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL)?;
    match ctx.fetch(&req).await {
        Ok(Some(body)) => {
            let t = String::from_utf8_lossy(&body.bytes).trim().to_owned();
            if t.is_empty() || t.len() > 4096 {
                return Err(ctx.invalid("the IMDSv2 token PUT answered without a usable token".into()));
            }
            Ok(Some(t))
        }
        // 404/405: no token endpoint, i.e. an IMDSv1-only EC2-compatible service.
        Ok(None) | Err(Error::Http { status: 405, .. }) => Ok(None),
        Err(Error::Http { status: 403, .. }) => Err(Error::Metadata {
            provider: "aws",
            reason: "metadata-disabled",
            message: "the IMDSv2 token PUT answered 403: IMDS is disabled for this instance (enable it with `aws ec2 modify-instance-metadata-options --http-endpoint enabled`)".into(),
        }),
        Err(e) => Err(e),
    }
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    Ok(token(ctx).await?.is_some())
}

#[derive(Deserialize)]
struct Identity {
    region: Option<String>,
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let first = token(ctx).await?;
    let had_token = first.is_some();
    match read(ctx, first).await {
        Err(Error::Http {
            status: 401,
            method,
            url,
        }) if !had_token => Err(unauthorized(format!(
            "{method} {url} answered 401 without a token, yet the IMDSv2 token PUT found no \
             endpoint (404 or 405): the service wants a token it does not issue"
        ))),
        Err(Error::Http { status: 401, .. }) => {
            tracing::info!(
                "IMDS answered 401: the IMDSv2 token expired or was revoked; fetching a new one \
                 and reading again"
            );
            match read(ctx, token(ctx).await?).await {
                Err(Error::Http {
                    status: 401,
                    method,
                    url,
                }) => Err(unauthorized(format!(
                    "{method} {url} answered 401 even with a fresh IMDSv2 token"
                ))),
                other => other,
            }
        }
        other => other,
    }
}

fn unauthorized(message: String) -> Error {
    Error::Metadata {
        provider: "aws",
        reason: "metadata-unauthorized",
        message,
    }
}

/// Reads the instance's metadata with `token` (IMDSv1 without one).
async fn read(ctx: &Ctx<'_>, token: Option<String>) -> Result<Metadata> {
    let mut notes = Vec::new();
    if token.is_none() {
        tracing::warn!("IMDSv2 token endpoint absent; falling back to IMDSv1");
        notes.push("imdsv1-fallback".to_owned());
    }
    let tree = Tree {
        ctx,
        base: format!("{BASE}/latest/meta-data/"),
        token: token.clone().map(|t| (TOKEN_HEADER, t)),
    };
    let instance_id = tree.required_leaf("instance-id").await?;
    let zone = tree.leaf("placement/availability-zone").await?;
    let root = Tree {
        ctx,
        base: format!("{BASE}/latest/"),
        token: token.map(|t| (TOKEN_HEADER, t)),
    };
    let region = match root
        .ctx
        .fetch(&root.request("dynamic/instance-identity/document")?)
        .await?
    {
        Some(doc) => {
            ctx.parse_json::<Identity>("the instance identity document", &doc.bytes)?
                .region
        }
        None => None,
    }
    .or_else(|| zone.as_deref().and_then(region_of_zone));
    let mut network = Vec::new();
    for entry in tree.list("network/interfaces/macs/").await? {
        let Some(mac) = netcfg::mac(entry.trim_end_matches('/')) else {
            continue;
        };
        let dir = format!("network/interfaces/macs/{mac}/");
        network.push(interface(&tree, &dir, &mac).await?);
    }
    Ok(Metadata {
        instance_id: Some(instance_id),
        hostname: tree
            .leaf("local-hostname")
            .await?
            .or(tree.leaf("hostname").await?),
        region,
        zone,
        instance_type: tree.leaf("instance-type").await?,
        ssh_keys: tree.public_keys().await?,
        network,
        user_data_present: root.leaf("user-data").await?.is_some(),
        notes,
    })
}

/// One NIC: its private addresses with the subnet's prefix. Gateways and DNS come from DHCP.
async fn interface(tree: &Tree<'_, '_>, dir: &str, mac: &MacAddr) -> Result<CloudInterface> {
    let prefix_of = |block: Option<String>| {
        block.and_then(|b| {
            b.lines()
                .next()
                .and_then(|c| c.split_once('/'))
                .and_then(|(_, p)| p.parse::<u8>().ok())
        })
    };
    let v4_prefix = prefix_of(tree.leaf(&format!("{dir}subnet-ipv4-cidr-block")).await?);
    let v6_prefix = prefix_of(tree.leaf(&format!("{dir}subnet-ipv6-cidr-blocks")).await?);
    let mut addresses = Vec::new();
    for (leaf, prefix) in [("local-ipv4s", v4_prefix), ("ipv6s", v6_prefix)] {
        if let Some(text) = tree.leaf(&format!("{dir}{leaf}")).await? {
            addresses.extend(text.lines().filter_map(|a| netcfg::cidr(a, prefix?)));
        }
    }
    Ok(CloudInterface {
        mac: Some(mac.clone()),
        addresses,
        dhcp4: Some(true),
        dhcp6: v6_prefix.map(|_| true),
        ..CloudInterface::default()
    })
}
