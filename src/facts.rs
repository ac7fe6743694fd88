//! The facts schema: everything `detect` learns about the machine, as one serialisable value.
//!
//! The JSON names here are a contract: `plan`, the handoff, the Nix `facts` module and users'
//! scripts read them. Rename nothing without updating all of those.
//!
//! This module is a leaf: host inspection (`host`) and cloud identification (`provider`) fill
//! these types, and nothing here reaches back into them (only `config::Arch` comes in).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::{Arch, AuthorizedKey};

/// Schema version of `facts.json`; bump on any incompatible change.
pub const FACTS_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Facts {
    pub version: u32,
    pub host: HostFacts,
    pub dmi: DmiFacts,
    pub disks: Vec<Disk>,
    pub network: NetworkFacts,
    /// Filled by provider identification; `None` until it has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudFacts>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    Uefi,
    #[default]
    Bios,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HostFacts {
    pub arch: HostArch,
    pub kernel_release: Option<String>,
    pub firmware: Firmware,
    /// `None` when not UEFI or the efivar is unreadable.
    pub secure_boot: Option<bool>,
    /// The bracketed mode of `/sys/kernel/security/lockdown`: `none`, `integrity`, `confidentiality`.
    pub lockdown: Option<String>,
    /// `/proc/sys/kernel/kexec_load_disabled` as read (`None` when unreadable).
    pub kexec_load_disabled: Option<bool>,
    pub kexec_allowed: bool,
    /// Why kexec is not allowed, one entry per blocker; empty when allowed.
    #[serde(default)]
    pub kexec_blockers: Vec<String>,
    /// Container technology (`lxc`, `docker`, `podman`, `systemd-nspawn`, ...), `None` on a VM.
    pub container: Option<String>,
    /// `/sys/hypervisor/type` (`xen` on Xen guests).
    pub hypervisor: Option<String>,
    pub memory_bytes: u64,
    pub memory_available_bytes: u64,
    pub cpu_count: u32,
    pub os: OsRelease,
    /// Whether PID 1 is systemd (decides how stage 1 detaches and jumps).
    pub systemd: bool,
}

/// `uname -m`: an architecture nixos-lift installs, or another one kept as read so the `arch`
/// guard can name it. In JSON, the name (`x86_64`, `aarch64`, `riscv64`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum HostArch {
    Installable(Arch),
    Other(String),
}

impl HostArch {
    /// The architecture, when nixos-lift installs it.
    pub fn installable(&self) -> Option<Arch> {
        match self {
            Self::Installable(arch) => Some(*arch),
            Self::Other(_) => None,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Installable(arch) => arch.as_str(),
            Self::Other(name) => name,
        }
    }
}

impl Default for HostArch {
    fn default() -> Self {
        Self::Other("unknown".into())
    }
}

impl From<String> for HostArch {
    fn from(name: String) -> Self {
        Arch::from_uname(&name).map_or(Self::Other(name), Self::Installable)
    }
}

impl From<&str> for HostArch {
    fn from(name: &str) -> Self {
        name.to_string().into()
    }
}

impl From<HostArch> for String {
    fn from(arch: HostArch) -> String {
        arch.as_str().to_string()
    }
}

impl std::fmt::Display for HostArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of `/etc/os-release` the guards care about.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

/// `/sys/class/dmi/id/*`; a field that is absent or unreadable is `None`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DmiFacts {
    pub sys_vendor: Option<String>,
    pub product_name: Option<String>,
    pub product_serial: Option<String>,
    pub product_uuid: Option<String>,
    pub chassis_asset_tag: Option<String>,
    pub board_vendor: Option<String>,
    pub bios_vendor: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Nvme,
    Virtio,
    Scsi,
    Xen,
    Ata,
    Mmc,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Disk {
    /// Kernel name, e.g. `nvme0n1`.
    pub name: String,
    /// `/dev/<name>`.
    pub path: String,
    pub size_bytes: u64,
    pub logical_sector_size: Option<u32>,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub transport: Transport,
    pub rotational: Option<bool>,
    pub removable: bool,
    pub read_only: bool,
    /// Full `/dev/disk/by-id/...` paths that point at this disk.
    pub by_id: Vec<String>,
    /// Filesystem label of the whole disk (e.g. `cidata`, `config-2`), when known.
    pub fs_label: Option<String>,
    pub partitions: Vec<Partition>,
    /// Devices stacked on the whole disk (dm, md).
    pub holders: Vec<String>,
    /// Mountpoints of the whole disk itself (no partition table).
    pub mountpoints: Vec<String>,
    pub swap: bool,
    /// True when the running root filesystem lives on this disk, through any dm/LVM/md/partition stack.
    pub holds_root: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Partition {
    pub name: String,
    pub path: String,
    pub number: Option<u32>,
    pub size_bytes: u64,
    pub partlabel: Option<String>,
    pub fs_label: Option<String>,
    pub holders: Vec<String>,
    pub mountpoints: Vec<String>,
    pub swap: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct NetworkFacts {
    pub interfaces: Vec<Interface>,
    pub routes: Vec<Route>,
    /// Resolver addresses that actually answer queries (never the 127.0.0.53 stub).
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    /// Where `dns` came from: `resolv.conf`, `systemd-resolved`, or `network-state` (fixture).
    pub dns_source: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interface {
    pub name: String,
    pub index: u32,
    pub mac: Option<MacAddr>,
    pub driver: Option<String>,
    /// Backed by a device (has `/sys/class/net/<if>/device`), as opposed to veth, bridge, dummy, ...
    pub physical: bool,
    /// `ether`, `loopback`, ... as `ip` prints `link_type`.
    pub link_type: String,
    pub mtu: u32,
    /// Operational state: `up`, `down`, `unknown`, ...
    pub state: String,
    pub addresses: Vec<Address>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Inet,
    Inet6,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Address {
    pub family: Family,
    pub address: IpAddr,
    pub prefix_len: u8,
    /// `global`, `link`, `host`, ...
    pub scope: String,
    /// Configured by DHCP or RA (`ip` prints `dynamic`), as opposed to static.
    pub dynamic: bool,
    /// Seconds; 4294967295 means forever, as in `ip -j addr`.
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Route {
    pub family: Family,
    pub dst: Destination,
    pub gateway: Option<IpAddr>,
    /// Family of the gateway when it differs from the route's (IPv4 via an IPv6 gateway).
    pub gateway_family: Option<Family>,
    pub dev: Option<String>,
    pub onlink: bool,
    pub metric: Option<u32>,
    /// `kernel`, `boot`, `static`, `dhcp`, `ra`, ... as `ip` prints it.
    pub protocol: String,
    pub scope: Option<String>,
    pub table: Option<u32>,
}

/// Drivers of SR-IOV virtual functions. On Azure (accelerated networking) a VF carries its
/// synthetic NIC's MAC and is driven through it, so nothing may configure it.
pub const VF_DRIVERS: [&str; 6] = [
    "mlx4_core",
    "mlx4_en",
    "mlx5_core",
    "mana",
    "ixgbevf",
    "iavf",
];

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
    pub ssh_keys: Vec<AuthorizedKey>,
    /// Static network configuration published by the provider, matched to local NICs by MAC.
    pub network: Vec<CloudInterface>,
    pub user_data_present: bool,
    /// Protocol notes, e.g. `imdsv1-fallback`.
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CloudInterface {
    pub mac: Option<MacAddr>,
    /// Local interface name when matched by MAC.
    pub name: Option<String>,
    /// Address with prefix length, IPv4 or IPv6.
    pub addresses: Vec<IpNet>,
    pub routes: Vec<CloudRoute>,
    pub dns: Vec<IpAddr>,
    pub mtu: Option<u32>,
    /// Whether the provider serves DHCP on this interface.
    pub dhcp4: Option<bool>,
    pub dhcp6: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CloudRoute {
    pub dst: Destination,
    pub gateway: IpAddr,
    pub onlink: bool,
}

/// A route's destination: `default`, or a prefix (`ip` prints a host route without `/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Destination {
    Default,
    Prefix(IpNet),
}

impl Destination {
    /// The prefix; `None` for the default route.
    pub fn prefix(self) -> Option<IpNet> {
        match self {
            Self::Default => None,
            Self::Prefix(net) => Some(net),
        }
    }
}

impl std::str::FromStr for Destination {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "default" {
            return Ok(Self::Default);
        }
        s.parse::<IpNet>()
            .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
            .map(Self::Prefix)
            .map_err(|_| format!("{s:?} is not `default` or a prefix"))
    }
}

impl TryFrom<String> for Destination {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Destination> for String {
    fn from(d: Destination) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::Prefix(net) => net.fmt(f),
        }
    }
}

/// A link-layer address as networkd matches it: lowercase hex pairs joined by colons (6 bytes
/// for ethernet; tunnels and InfiniBand have other lengths). Accepts Azure's bare
/// `000D3A047598` form too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(String);

impl MacAddr {
    /// The all-zero address of loopback and some virtual links.
    pub fn is_zero(&self) -> bool {
        self.0.bytes().all(|b| b == b'0' || b == b':')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Without colons, for file names.
    pub fn compact(&self) -> String {
        self.0.replace(':', "")
    }
}

impl TryFrom<String> for MacAddr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.0
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let hex = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit());
        let pairs: Vec<String> = if lower.contains(':') || lower.contains('-') {
            lower.split([':', '-']).map(str::to_string).collect()
        } else {
            (0..lower.len() / 2)
                .map(|i| lower.get(2 * i..2 * i + 2).unwrap_or_default().to_string())
                .collect()
        };
        let whole = pairs.len() * 2 == lower.replace([':', '-'], "").len();
        if pairs.is_empty() || pairs.len() > 32 || !whole || !pairs.iter().all(|p| hex(p)) {
            return Err(format!("{s:?} is not a link-layer address"));
        }
        Ok(Self(pairs.join(":")))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
