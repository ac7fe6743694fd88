//! Network helpers shared by the provider modules: MACs, netmasks, on-link decisions, cloud-init
//! network config (v1, v2) and matching published interfaces to local NICs.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::{CloudInterface, CloudRoute};
use crate::facts::{Destination, Interface, MacAddr, VF_DRIVERS};

/// A MAC as lowercase colon-separated hex; accepts `-`, `:` or no separators (Azure).
pub fn mac(s: &str) -> Option<MacAddr> {
    s.parse().ok()
}

/// The resolver addresses of a list; what does not parse is left out.
pub fn ips<'a>(list: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    list.into_iter()
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// Prefix length of a netmask (`255.255.240.0` → 20), or of a bare number (`64`).
pub fn prefix_len(mask: &str) -> Option<u8> {
    let mask = mask.trim();
    if let Ok(n) = mask.parse::<u8>() {
        return (n <= 128).then_some(n);
    }
    let bits: u128 = match mask.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    };
    let ones = bits.leading_ones();
    (bits.count_ones() == ones).then_some(ones as u8)
}

/// An address with its prefix length; `None` when either part is not valid.
pub fn cidr(addr: &str, prefix: u8) -> Option<IpNet> {
    IpNet::new(addr.trim().parse().ok()?, prefix).ok()
}

/// Parses `addr/prefix` (or a bare address with `default_prefix`); the prefix may be a netmask.
pub fn parse_cidr(s: &str, default_prefix: Option<u8>) -> Option<IpNet> {
    match s.trim().split_once('/') {
        Some((a, p)) => cidr(a, prefix_len(p)?),
        None => cidr(s, default_prefix?),
    }
}

/// A route via `gateway`, on-link when the gateway is outside every address of the interface
/// (IPv6 link-local gateways are always reachable on the link). `None` for a missing or
/// unspecified gateway (`0.0.0.0`, as DigitalOcean writes for "none").
pub fn route(dst: Destination, gateway: &str, addresses: &[IpNet]) -> Option<CloudRoute> {
    let gw: IpAddr = gateway.trim().parse().ok()?;
    if gw.is_unspecified() {
        return None;
    }
    let link_local = matches!(gw, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
    let onlink = !link_local && !addresses.iter().any(|a| a.contains(&gw));
    Some(CloudRoute {
        dst,
        gateway: gw,
        onlink,
    })
}

/// Fills `name` of each published interface from the local NIC with the same MAC. Returns notes
/// for interfaces that match no local NIC or more than one (Azure accelerated networking: the VF
/// shares the synthetic NIC's MAC; the synthetic one is preferred).
pub fn match_interfaces(published: &mut [CloudInterface], local: &[Interface]) -> Vec<String> {
    let mut notes = Vec::new();
    for iface in published.iter_mut() {
        let Some(want) = &iface.mac else {
            continue;
        };
        let matches: Vec<&Interface> = local
            .iter()
            .filter(|l| l.mac.as_ref() == Some(want))
            .collect();
        let chosen = matches
            .iter()
            .find(|l| !l.driver.as_deref().is_some_and(|d| VF_DRIVERS.contains(&d)))
            .or(matches.first());
        match chosen {
            Some(l) => iface.name = Some(l.name.clone()),
            None if !local.is_empty() => notes.push(format!("no-local-nic-for-mac: {want}")),
            None => {}
        }
    }
    notes
}

/// A cloud-init network config document (`version: 1` or `version: 2`), as Hetzner and NoCloud
/// publish it; a document wrapped in `network:` is accepted too.
pub fn parse_network_config(bytes: &[u8]) -> Result<Vec<CloudInterface>, String> {
    let value: serde_yaml::Value = serde_yaml::from_slice(bytes).map_err(|e| e.to_string())?;
    from_value(value)
}

pub(crate) fn from_value(mut value: serde_yaml::Value) -> Result<Vec<CloudInterface>, String> {
    if let Some(inner) = value.get("network").cloned() {
        value = inner;
    }
    let version = value.get("version").and_then(serde_yaml::Value::as_u64);
    match version {
        Some(1) => {
            let v1: V1 = serde_yaml::from_value(value).map_err(|e| e.to_string())?;
            Ok(v1.interfaces())
        }
        Some(2) => {
            let v2: V2 = serde_yaml::from_value(value).map_err(|e| e.to_string())?;
            Ok(v2.interfaces())
        }
        other => Err(format!("unsupported network config version {other:?}")),
    }
}

#[derive(Deserialize)]
struct V1 {
    #[serde(default)]
    config: Vec<V1Item>,
}

#[derive(Deserialize)]
struct V1Item {
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    mac_address: Option<String>,
    mtu: Option<u32>,
    #[serde(default)]
    subnets: Vec<V1Subnet>,
    #[serde(default)]
    address: OneOrMany,
    interface: Option<String>,
}

#[derive(Deserialize)]
struct V1Subnet {
    #[serde(rename = "type")]
    kind: String,
    address: Option<String>,
    netmask: Option<String>,
    gateway: Option<String>,
    #[serde(default)]
    dns_nameservers: Vec<String>,
    #[serde(default)]
    routes: Vec<V1Route>,
}

#[derive(Deserialize)]
struct V1Route {
    #[serde(alias = "destination")]
    network: Option<String>,
    netmask: Option<String>,
    gateway: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

impl V1 {
    fn interfaces(&self) -> Vec<CloudInterface> {
        let mut out: Vec<(Option<String>, CloudInterface)> = Vec::new();
        let mut global_dns = Vec::new();
        for item in &self.config {
            match item.kind.as_str() {
                "physical" => {
                    let mut iface = CloudInterface {
                        mac: item.mac_address.as_deref().and_then(mac),
                        mtu: item.mtu,
                        ..CloudInterface::default()
                    };
                    for s in &item.subnets {
                        match s.kind.as_str() {
                            "dhcp" | "dhcp4" => iface.dhcp4 = Some(true),
                            "dhcp6" | "ipv6_dhcpv6-stateful" | "ipv6_slaac" => {
                                iface.dhcp6 = Some(true)
                            }
                            "static" | "static6" => {
                                let default_prefix = s.netmask.as_deref().and_then(prefix_len);
                                let Some(addr) = s
                                    .address
                                    .as_deref()
                                    .and_then(|a| parse_cidr(a, default_prefix))
                                else {
                                    continue;
                                };
                                iface.addresses.push(addr);
                                if let Some(gw) = &s.gateway {
                                    let default = Destination::Default;
                                    iface.routes.extend(route(default, gw, &iface.addresses));
                                }
                                for r in &s.routes {
                                    let dst = match (&r.network, &r.netmask) {
                                        (Some(n), Some(m)) => {
                                            prefix_len(m).and_then(|p| cidr(n, p))
                                        }
                                        (Some(n), None) => parse_cidr(n, None),
                                        _ => None,
                                    };
                                    if let (Some(dst), Some(gw)) = (dst, &r.gateway) {
                                        let dst = Destination::Prefix(dst);
                                        iface.routes.extend(route(dst, gw, &iface.addresses));
                                    }
                                }
                                iface.dns.extend(ips(&s.dns_nameservers));
                            }
                            _ => {}
                        }
                    }
                    out.push((item.name.clone(), iface));
                }
                "nameserver" => {
                    let addrs = ips(&item.address.list());
                    match &item.interface {
                        Some(name) => {
                            if let Some((_, i)) =
                                out.iter_mut().find(|(n, _)| n.as_deref() == Some(name))
                            {
                                i.dns.extend(addrs);
                            }
                        }
                        None => global_dns.extend(addrs),
                    }
                }
                _ => {}
            }
        }
        out.into_iter()
            .map(|(_, mut i)| {
                for d in &global_dns {
                    if !i.dns.contains(d) {
                        i.dns.push(*d);
                    }
                }
                i
            })
            .collect()
    }
}

#[derive(Deserialize)]
struct V2 {
    #[serde(default)]
    ethernets: std::collections::BTreeMap<String, V2Eth>,
}

#[derive(Deserialize)]
struct V2Eth {
    #[serde(rename = "match")]
    matches: Option<V2Match>,
    #[serde(default)]
    dhcp4: Option<bool>,
    #[serde(default)]
    dhcp6: Option<bool>,
    #[serde(default)]
    addresses: Vec<String>,
    gateway4: Option<String>,
    gateway6: Option<String>,
    #[serde(default)]
    routes: Vec<V2Route>,
    nameservers: Option<V2Dns>,
    mtu: Option<u32>,
}

#[derive(Deserialize)]
struct V2Match {
    macaddress: Option<String>,
}

#[derive(Deserialize)]
struct V2Route {
    to: String,
    via: String,
    #[serde(rename = "on-link", default)]
    on_link: bool,
}

#[derive(Deserialize)]
struct V2Dns {
    #[serde(default)]
    addresses: Vec<String>,
}

impl V2 {
    fn interfaces(&self) -> Vec<CloudInterface> {
        self.ethernets
            .values()
            .map(|e| {
                let addresses: Vec<IpNet> = e
                    .addresses
                    .iter()
                    .filter_map(|a| parse_cidr(a, None))
                    .collect();
                let mut routes: Vec<CloudRoute> = [&e.gateway4, &e.gateway6]
                    .into_iter()
                    .flatten()
                    .filter_map(|gw| route(Destination::Default, gw, &addresses))
                    .collect();
                for r in &e.routes {
                    let dst = match r.to.as_str() {
                        "default" | "0.0.0.0/0" | "::/0" => Destination::Default,
                        to => match parse_cidr(to, None) {
                            Some(c) => Destination::Prefix(c),
                            None => continue,
                        },
                    };
                    if let Some(mut rt) = route(dst, &r.via, &addresses) {
                        rt.onlink |= r.on_link;
                        routes.push(rt);
                    }
                }
                CloudInterface {
                    mac: e
                        .matches
                        .as_ref()
                        .and_then(|m| m.macaddress.as_deref())
                        .and_then(mac),
                    name: None,
                    addresses,
                    routes,
                    dns: e
                        .nameservers
                        .as_ref()
                        .map(|n| ips(&n.addresses))
                        .unwrap_or_default(),
                    mtu: e.mtu,
                    dhcp4: e.dhcp4,
                    dhcp6: e.dhcp6,
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_masks() {
        let text = |s: &str| mac(s).map(|m| m.to_string());
        assert_eq!(text("000D3A047598").as_deref(), Some("00:0d:3a:04:75:98"));
        assert_eq!(
            text("96:00:01:AA:BB:01").as_deref(),
            Some("96:00:01:aa:bb:01")
        );
        assert_eq!(mac("zz"), None);
        assert_eq!(prefix_len("255.255.240.0"), Some(20));
        assert_eq!(prefix_len("64"), Some(64));
        assert_eq!(prefix_len("255.0.255.0"), None);
        assert_eq!(prefix_len("ffff:ffff:ffff:ffff::"), Some(64));
    }

    #[test]
    fn onlink_only_when_the_gateway_is_off_subnet() {
        let addrs = vec!["10.0.0.5/24".parse().unwrap()];
        let default = Destination::Default;
        assert!(!route(default, "10.0.0.1", &addrs).unwrap().onlink);
        assert!(route(default, "172.31.1.1", &addrs).unwrap().onlink);
        assert!(!route(default, "fe80::1", &addrs).unwrap().onlink);
        assert!(route(default, "0.0.0.0", &addrs).is_none());
    }

    #[test]
    fn v2_static() {
        let doc = b"version: 2\nethernets:\n  e:\n    match: {macaddress: '52:54:00:12:34:56'}\n    addresses: [192.168.1.5/24]\n    routes: [{to: default, via: 192.168.1.1}]\n";
        let ifs = parse_network_config(doc).unwrap();
        assert_eq!(ifs[0].addresses[0].to_string(), "192.168.1.5/24");
        assert_eq!(ifs[0].routes[0].gateway.to_string(), "192.168.1.1");
    }
}
