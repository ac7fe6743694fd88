//! Alibaba ECS: the EC2-style tree at `http://100.100.100.200/latest/meta-data/`, with the
//! optional hardened-mode token when the service hands one out.

use super::ec2::Tree;
use super::{netcfg, CloudInterface, Ctx, Metadata};
use crate::http::Request;
use crate::{Error, Result};

const BASE: &str = "http://100.100.100.200/latest/";
const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";

async fn token(ctx: &Ctx<'_>) -> Result<Option<String>> {
    let req = Request::put(ctx.url(&format!("{BASE}api/token"))?)
        .header("x-aliyun-ecs-metadata-token-ttl-seconds", "21600")?;
    match ctx.fetch(&req).await {
        Ok(b) => Ok(b
            .map(|b| String::from_utf8_lossy(&b.bytes).trim().to_owned())
            .filter(|t| !t.is_empty())),
        Err(Error::Http { status: 405, .. }) => Ok(None),
        Err(Error::Http { status: 403, .. }) => Err(Error::Metadata {
            provider: "alibaba",
            reason: "metadata-disabled",
            message:
                "the token PUT answered 403: the metadata service is disabled for this instance"
                    .into(),
        }),
        Err(e) => Err(e),
    }
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    let t = Tree {
        ctx,
        base: format!("{BASE}meta-data/"),
        token: None,
    };
    Ok(t.leaf("region-id").await?.is_some())
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let token = token(ctx).await?;
    let t = Tree {
        ctx,
        base: format!("{BASE}meta-data/"),
        token: token.clone().map(|v| (TOKEN_HEADER, v)),
    };
    let dns: Vec<std::net::IpAddr> = t
        .leaf("dns-conf/nameservers")
        .await?
        .map(|d| d.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    let mut network = Vec::new();
    for entry in t.list("network/interfaces/macs/").await? {
        let Some(mac) = netcfg::mac(entry.trim_end_matches('/')) else {
            continue;
        };
        let dir = format!("network/interfaces/macs/{mac}/");
        let prefix = t
            .leaf(&format!("{dir}netmask"))
            .await?
            .and_then(|m| netcfg::prefix_len(&m));
        let ip = t.leaf(&format!("{dir}primary-ip-address")).await?;
        let mut iface = CloudInterface {
            mac: Some(mac),
            dhcp4: Some(true),
            dns: dns.clone(),
            ..CloudInterface::default()
        };
        iface
            .addresses
            .extend(ip.zip(prefix).and_then(|(a, p)| netcfg::cidr(&a, p)));
        if let Some(gw) = t.leaf(&format!("{dir}gateway")).await? {
            iface.routes.extend(netcfg::route(
                crate::facts::Destination::Default,
                &gw,
                &iface.addresses,
            ));
        }
        network.push(iface);
    }
    let root = Tree {
        ctx,
        base: BASE.into(),
        token: token.map(|v| (TOKEN_HEADER, v)),
    };
    Ok(Metadata {
        instance_id: Some(t.required_leaf("instance-id").await?),
        hostname: t.leaf("hostname").await?,
        region: t.leaf("region-id").await?,
        zone: t.leaf("zone-id").await?,
        instance_type: t.leaf("instance/instance-type").await?,
        ssh_keys: t.public_keys().await?,
        network,
        user_data_present: root.leaf("user-data").await?.is_some(),
        notes: Vec::new(),
    })
}
