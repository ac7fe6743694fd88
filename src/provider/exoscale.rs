//! Exoscale: the EC2-style text tree at `/1.0/meta-data/`; the network is DHCP.

use super::ec2::Tree;
use super::{Ctx, Metadata};
use crate::Result;

const BASE: &str = "http://169.254.169.254/1.0/";

fn tree<'a, 'c>(ctx: &'a Ctx<'c>) -> Tree<'a, 'c> {
    Tree {
        ctx,
        base: format!("{BASE}meta-data/"),
        token: None,
    }
}

pub(crate) async fn probe(ctx: &Ctx<'_>) -> Result<bool> {
    Ok(tree(ctx).leaf("service-offering").await?.is_some())
}

pub(crate) async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    let t = tree(ctx);
    let zone = t.leaf("availability-zone").await?;
    let root = Tree {
        ctx,
        base: BASE.into(),
        token: None,
    };
    Ok(Metadata {
        instance_id: Some(t.required_leaf("instance-id").await?),
        hostname: t.leaf("local-hostname").await?,
        // Exoscale zones are regions (`ch-gva-2`).
        region: zone.clone(),
        zone,
        instance_type: t.leaf("service-offering").await?,
        ssh_keys: t
            .leaf("public-keys")
            .await?
            .map(|k| k.lines().map(str::to_owned).collect())
            .unwrap_or_default(),
        network: Vec::new(),
        user_data_present: root.leaf("user-data").await?.is_some(),
        notes: Vec::new(),
    })
}
