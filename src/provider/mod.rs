//! Cloud identification and metadata: which cloud this is, and what its metadata service says.
//!
//! [`identify`] is the entry point (`detect`, `plan` and `run` call it): local signals first
//! ([`detect`], a pure function of DMI facts and a few files), then the provider's own metadata
//! service, or, when nothing local matched, a short parallel probe of every service.
//!
//! Dispatch is a `match` on [`ProviderKind`] rather than a trait object: the crate is async and
//! `async fn` in a trait is not dyn-compatible; a match keeps each provider a plain module.

mod akamai;
mod alibaba;
mod aws;
mod azure;
pub mod detect;
mod digitalocean;
mod ec2;
mod exoscale;
mod gcp;
mod hetzner;
pub mod netcfg;
mod nocloud;
mod openstack;
mod oracle;
mod scaleway;
mod upcloud;
mod vultr;

use std::time::Duration;

use reqwest::Url;
use serde::de::DeserializeOwned;

use crate::facts::Facts;
pub use crate::facts::{CloudFacts, CloudInterface, CloudRoute, ProviderKind};
use crate::host::SysRoot;
use crate::http::{Body, Client, Deadline, Request, RetryPolicy};
use crate::{Error, Result};

/// Every provider the metadata probe tries when nothing local matched, most specific first:
/// a provider whose probe needs its own header or token wins over one that answers a plain GET.
pub const PROBE_ORDER: &[ProviderKind] = &[
    ProviderKind::Gcp,
    ProviderKind::Azure,
    ProviderKind::Oracle,
    ProviderKind::Aws,
    ProviderKind::Akamai,
    ProviderKind::Hetzner,
    ProviderKind::Digitalocean,
    ProviderKind::Upcloud,
    ProviderKind::Vultr,
    ProviderKind::Scaleway,
    ProviderKind::Alibaba,
    ProviderKind::Openstack,
    ProviderKind::Exoscale,
];

/// The probe's own budget, inside the metadata deadline: on a machine with no cloud, `detect`
/// waits at most this long for nothing.
pub const PROBE_BUDGET: Duration = Duration::from_secs(5);

/// The default `--metadata-timeout`.
pub const DEFAULT_METADATA_TIMEOUT: Duration = Duration::from_secs(120);

/// How [`identify`] may use the network.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// `Some` forces the provider (`--provider NAME`); `None` identifies it (`auto`).
    pub provider: Option<ProviderKind>,
    /// Replaces scheme, host and port of every metadata URL (`--metadata-base`).
    pub metadata_base: Option<Url>,
    /// Bounds the whole metadata phase; zero means local signals (DMI) only.
    pub timeout: Duration,
}

impl ProbeOptions {
    /// The same options as arguments, for re-launching the command (`run` under systemd-run).
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--provider".to_string(),
            self.provider.map_or("auto", |k| k.as_str()).to_string(),
            format!("--metadata-timeout={}", self.timeout.as_secs()),
        ];
        if let Some(base) = &self.metadata_base {
            args.push(format!("--metadata-base={base}"));
        }
        args
    }
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            provider: None,
            metadata_base: None,
            timeout: DEFAULT_METADATA_TIMEOUT,
        }
    }
}

/// What a provider module reads from its metadata service, before keys are validated and
/// interfaces are matched to local NICs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub instance_id: Option<String>,
    pub hostname: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    /// Raw key lines as published; validated by [`crate::sshkey`] later.
    pub ssh_keys: Vec<String>,
    pub network: Vec<CloudInterface>,
    pub user_data_present: bool,
    pub notes: Vec<String>,
}

/// Identifies the cloud and reads its metadata. Local signals decide first; then the provider's
/// metadata service confirms and enriches. A service that does not answer within the deadline
/// leaves the local identification standing (noted in `cloud.notes`); a service that answers
/// with something unusable is an error.
pub async fn identify(facts: &Facts, root: &SysRoot, opts: &ProbeOptions) -> Result<CloudFacts> {
    let signals = detect::Signals::gather(root);
    let local = match opts.provider {
        Some(kind) => Some(detect::Detection {
            kind,
            evidence: vec!["forced:--provider".into()],
        }),
        None => detect::identify(facts, &signals),
    };
    if let Some(d) = &local {
        tracing::info!(provider = %d.kind, evidence = ?d.evidence, "identified the cloud locally");
    }
    if local.as_ref().is_some_and(|d| d.kind == ProviderKind::None) {
        return Ok(CloudFacts::bare(
            ProviderKind::None,
            local.map(|d| d.evidence).unwrap_or_default(),
        ));
    }
    // A fixture tree (`--root`) is not this machine: its cloud's metadata service is not the one
    // on this network, so only an explicit `--metadata-base` sends requests for it.
    let fixture_without_base = !root.is_host() && opts.metadata_base.is_none();
    if opts.timeout.is_zero() || fixture_without_base {
        let mut cloud = match local {
            Some(d) => CloudFacts::bare(d.kind, d.evidence),
            None => CloudFacts::bare(ProviderKind::None, vec!["dmi:no-match".into()]),
        };
        cloud.notes.push("metadata-skipped".into());
        return Ok(cloud);
    }
    let deadline = Deadline::after(opts.timeout);
    let (kind, mut evidence) = match local {
        Some(d) => (d.kind, d.evidence),
        None => match probe(facts, root, opts, deadline).await? {
            Some(kind) => (kind, vec![format!("probe:{kind}")]),
            None => {
                tracing::info!("no local signal and no metadata service answered: provider none");
                let mut cloud =
                    CloudFacts::bare(ProviderKind::None, vec!["probe:no-answer".into()]);
                cloud.notes.push("no-metadata-service".into());
                return Ok(cloud);
            }
        },
    };
    let client = Client::new(RetryPolicy::metadata(), opts.metadata_base.clone())?;
    let ctx = Ctx {
        client: &client,
        deadline,
        facts,
        root,
        signals: &signals,
        kind,
    };
    match fetch(&ctx).await {
        Ok(meta) => {
            detect::cross_check(kind, facts, &meta)?;
            evidence.push("metadata".into());
            Ok(CloudFacts::from_metadata(kind, evidence, meta, facts))
        }
        Err(
            err @ (Error::Timeout { .. }
            | Error::Metadata {
                reason: "metadata-absent",
                ..
            }),
        ) => {
            tracing::warn!(provider = %kind, "{err}; keeping the local identification without metadata");
            let mut cloud = CloudFacts::bare(kind, evidence);
            cloud.notes.push(match err {
                Error::Timeout { .. } => "metadata-unreachable".into(),
                _ => "metadata-absent".into(),
            });
            Ok(cloud)
        }
        Err(err) => Err(err),
    }
}

/// [`identify`] on a current-thread runtime of its own, for synchronous callers.
pub fn identify_blocking(facts: &Facts, root: &SysRoot, opts: &ProbeOptions) -> Result<CloudFacts> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?
        .block_on(identify(facts, root, opts))
}

/// Asks every metadata service at once under a short deadline; the first in [`PROBE_ORDER`]
/// that answers as itself wins.
async fn probe(
    facts: &Facts,
    root: &SysRoot,
    opts: &ProbeOptions,
    deadline: Deadline,
) -> Result<Option<ProviderKind>> {
    let client = Client::new(RetryPolicy::probe(), opts.metadata_base.clone())?;
    let signals = detect::Signals::default();
    let deadline = deadline.capped(PROBE_BUDGET);
    let probes = PROBE_ORDER.iter().map(|&kind| {
        let ctx = Ctx {
            client: &client,
            deadline,
            facts,
            root,
            signals: &signals,
            kind,
        };
        async move {
            let answered = probe_one(&ctx).await;
            tracing::debug!(provider = %kind, ?answered, "metadata probe");
            matches!(answered, Ok(true))
        }
    });
    let answers = futures_util::future::join_all(probes).await;
    Ok(PROBE_ORDER
        .iter()
        .zip(answers)
        .find_map(|(&kind, yes)| yes.then_some(kind)))
}

async fn probe_one(ctx: &Ctx<'_>) -> Result<bool> {
    match ctx.kind {
        ProviderKind::Aws => aws::probe(ctx).await,
        ProviderKind::Gcp => gcp::probe(ctx).await,
        ProviderKind::Azure => azure::probe(ctx).await,
        ProviderKind::Hetzner => hetzner::probe(ctx).await,
        ProviderKind::Digitalocean => digitalocean::probe(ctx).await,
        ProviderKind::Vultr => vultr::probe(ctx).await,
        ProviderKind::Akamai => akamai::probe(ctx).await,
        ProviderKind::Oracle => oracle::probe(ctx).await,
        ProviderKind::Scaleway => scaleway::probe(ctx).await,
        ProviderKind::Openstack => openstack::probe(ctx).await,
        ProviderKind::Exoscale => exoscale::probe(ctx).await,
        ProviderKind::Upcloud => upcloud::probe(ctx).await,
        ProviderKind::Alibaba => alibaba::probe(ctx).await,
        ProviderKind::Nocloud | ProviderKind::None => Ok(false),
    }
}

async fn fetch(ctx: &Ctx<'_>) -> Result<Metadata> {
    match ctx.kind {
        ProviderKind::Aws => aws::fetch(ctx).await,
        ProviderKind::Gcp => gcp::fetch(ctx).await,
        ProviderKind::Azure => azure::fetch(ctx).await,
        ProviderKind::Hetzner => hetzner::fetch(ctx).await,
        ProviderKind::Digitalocean => digitalocean::fetch(ctx).await,
        ProviderKind::Vultr => vultr::fetch(ctx).await,
        ProviderKind::Akamai => akamai::fetch(ctx).await,
        ProviderKind::Oracle => oracle::fetch(ctx).await,
        ProviderKind::Scaleway => scaleway::fetch(ctx).await,
        ProviderKind::Openstack => openstack::fetch(ctx).await,
        ProviderKind::Exoscale => exoscale::fetch(ctx).await,
        ProviderKind::Upcloud => upcloud::fetch(ctx).await,
        ProviderKind::Alibaba => alibaba::fetch(ctx).await,
        ProviderKind::Nocloud => nocloud::fetch(ctx).await,
        ProviderKind::None => Ok(Metadata::default()),
    }
}

/// What a provider module gets: the client, the deadline and the local facts.
pub(crate) struct Ctx<'a> {
    pub client: &'a Client,
    pub deadline: Deadline,
    pub facts: &'a Facts,
    pub root: &'a SysRoot,
    pub signals: &'a detect::Signals,
    pub kind: ProviderKind,
}

impl Ctx<'_> {
    /// The URL of `default` (an IP literal), after `--metadata-base`.
    pub fn url(&self, default: &str) -> Result<Url> {
        self.client.url(default)
    }

    pub async fn fetch(&self, req: &Request) -> Result<Option<Body>> {
        let body = self.client.fetch(req, self.deadline).await?;
        if let Some(b) = &body {
            // A captive portal or proxy error page is not a metadata document.
            if b.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("text/html"))
            {
                return Err(self.invalid(format!(
                    "{}: answered with an HTML page, not a metadata document",
                    req.url
                )));
            }
        }
        Ok(body)
    }

    /// Probing a provider whose metadata is one document: it answers and the document parses.
    pub async fn probe_document(
        &self,
        url: &str,
        parse: fn(&[u8]) -> Result<Metadata>,
    ) -> Result<bool> {
        Ok(match self.fetch(&Request::get(self.url(url)?)).await? {
            Some(b) => parse(&b.bytes).is_ok(),
            None => false,
        })
    }

    /// Reading a provider whose metadata is one document that must exist.
    pub async fn fetch_document(
        &self,
        url: &str,
        parse: fn(&[u8]) -> Result<Metadata>,
    ) -> Result<Metadata> {
        parse(&self.required(&Request::get(self.url(url)?)).await?.bytes)
    }

    /// A document that must exist: 404 means this provider's service is not there.
    pub async fn required(&self, req: &Request) -> Result<Body> {
        self.fetch(req).await?.ok_or_else(|| Error::Metadata {
            provider: self.kind.as_str(),
            reason: "metadata-absent",
            message: format!("{} {}: not found (404)", req.method, req.url),
        })
    }

    /// An optional text leaf, trimmed; `None` when absent or blank.
    pub async fn text(&self, req: &Request) -> Result<Option<String>> {
        match self.fetch(req).await? {
            None => Ok(None),
            Some(b) => {
                let t = b
                    .text(req.url.as_str())
                    .map_err(|e| self.invalid(e.to_string()))?
                    .trim()
                    .to_owned();
                Ok((!t.is_empty()).then_some(t))
            }
        }
    }

    pub fn parse_json<T: DeserializeOwned>(&self, what: &str, bytes: &[u8]) -> Result<T> {
        parse_json(self.kind, what, bytes)
    }

    pub fn invalid(&self, message: String) -> Error {
        invalid(self.kind, message)
    }
}

pub(crate) fn invalid(kind: ProviderKind, message: String) -> Error {
    Error::Metadata {
        provider: kind.as_str(),
        reason: "metadata-invalid",
        message,
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(
    kind: ProviderKind,
    what: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| invalid(kind, format!("parsing {what}: {e}")))
}

pub(crate) fn parse_yaml<T: DeserializeOwned>(
    kind: ProviderKind,
    what: &str,
    bytes: &[u8],
) -> Result<T> {
    serde_yaml::from_slice(bytes).map_err(|e| invalid(kind, format!("parsing {what}: {e}")))
}

/// A JSON value that clouds publish as a number or a string (ids), as a string.
pub(crate) fn id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(crate) fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl CloudFacts {
    /// A provider with no metadata: local evidence only.
    pub fn bare(provider: ProviderKind, source: Vec<String>) -> Self {
        Self {
            provider,
            source,
            instance_id: None,
            hostname: None,
            region: None,
            zone: None,
            instance_type: None,
            ssh_keys: Vec::new(),
            network: Vec::new(),
            user_data_present: false,
            notes: Vec::new(),
        }
    }

    /// Normalises what a provider module read: keys validated and deduplicated, interfaces
    /// matched to local NICs by MAC.
    pub fn from_metadata(
        provider: ProviderKind,
        source: Vec<String>,
        meta: Metadata,
        facts: &Facts,
    ) -> Self {
        let offered: Vec<String> = meta
            .ssh_keys
            .into_iter()
            .filter(|k| !k.trim().is_empty())
            .collect();
        let invalid = offered
            .iter()
            .filter(|k| crate::sshkey::check_authorized_key(k).is_err())
            .count();
        let ssh_keys = crate::sshkey::normalise(offered, &format!("{provider} metadata"));
        let mut notes = meta.notes;
        if invalid > 0 {
            notes.push(format!("ssh-keys-invalid: {invalid}"));
        }
        let mut network = meta.network;
        notes.extend(netcfg::match_interfaces(
            &mut network,
            &facts.network.interfaces,
        ));
        Self {
            provider,
            source,
            instance_id: meta.instance_id,
            hostname: meta.hostname,
            region: meta.region,
            zone: meta.zone,
            instance_type: meta.instance_type,
            ssh_keys,
            network,
            user_data_present: meta.user_data_present,
            notes,
        }
    }
}

/// The metadata parsers, one per document format, for fuzzing and tests. Each takes the raw
/// bytes a service (or seed) returned and never panics.
pub mod parse {
    pub use super::akamai::{parse_instance as akamai_instance, parse_network as akamai_network};
    pub use super::azure::parse as azure;
    pub use super::digitalocean::parse as digitalocean;
    pub use super::ec2::parse_listing as ec2_listing;
    pub use super::gcp::parse_ssh_keys as gcp_ssh_keys;
    pub use super::hetzner::parse as hetzner;
    pub use super::netcfg::parse_network_config as network_config;
    pub use super::nocloud::{
        parse_line_config as nocloud_line_config, parse_meta_data as nocloud_meta_data,
    };
    pub use super::openstack::{
        parse_meta_data as openstack_meta_data, parse_network_data as openstack_network_data,
    };
    pub use super::oracle::{parse_instance as oracle_instance, parse_vnics as oracle_vnics};
    pub use super::scaleway::parse as scaleway;
    pub use super::upcloud::parse as upcloud;
    pub use super::vultr::parse as vultr;
}
