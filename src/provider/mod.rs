//! Cloud identification and metadata: which cloud this is, and what its metadata service says.

use serde::{Deserialize, Serialize};

/// The single list of clouds nixos-lift knows. It drives the CLI, the config, JSON and docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lowercase")]
pub enum ProviderKind {
    Aws,
    Gcp,
    Azure,
    Hetzner,
    Digitalocean,
    Vultr,
    Akamai,
    Oracle,
    Scaleway,
    Openstack,
    Exoscale,
    Upcloud,
    Alibaba,
    Nocloud,
    None,
}

impl ProviderKind {
    /// The name used in config, CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
            Self::Hetzner => "hetzner",
            Self::Digitalocean => "digitalocean",
            Self::Vultr => "vultr",
            Self::Akamai => "akamai",
            Self::Oracle => "oracle",
            Self::Scaleway => "scaleway",
            Self::Openstack => "openstack",
            Self::Exoscale => "exoscale",
            Self::Upcloud => "upcloud",
            Self::Alibaba => "alibaba",
            Self::Nocloud => "nocloud",
            Self::None => "none",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Normalised cloud facts (`facts.cloud`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CloudFacts {
    pub provider: ProviderKind,
    /// The signals that decided the provider, e.g. `dmi:sys_vendor=Hetzner`, `metadata`.
    pub source: Vec<String>,
    pub instance_id: Option<String>,
    pub hostname: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub instance_type: Option<String>,
    /// Validated OpenSSH public keys, deduplicated, options stripped.
    pub ssh_keys: Vec<String>,
    /// Static network configuration published by the provider, matched to local NICs by MAC.
    pub network: Vec<CloudInterface>,
    pub user_data_present: bool,
    /// Protocol notes, e.g. `imdsv1-fallback`.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CloudInterface {
    pub mac: Option<String>,
    /// Local interface name when matched by MAC.
    pub name: Option<String>,
    /// `addr/prefix`, IPv4 or IPv6.
    pub addresses: Vec<String>,
    pub routes: Vec<CloudRoute>,
    pub dns: Vec<String>,
    pub mtu: Option<u32>,
    /// Whether the provider serves DHCP on this interface.
    pub dhcp4: Option<bool>,
    pub dhcp6: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CloudRoute {
    /// `default` or `prefix/len`.
    pub dst: String,
    pub gateway: String,
    pub onlink: bool,
}
