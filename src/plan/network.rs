//! The network plan: which interface gets which static addresses, routes, MTU and resolvers,
//! decided once in stage 1 from what the stock image had and what the cloud publishes.
//!
//! It travels in `plan.json`. Stage 2 applies it over netlink (`install::network`), and
//! [`networkd`](super::networkd) renders it into the units the installer and the installed
//! system run. Nothing else decides the network.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::facts::MacAddr;
use crate::facts::{CloudInterface, Family, Interface, NetworkFacts, Route, VF_DRIVERS};

/// Routes that the kernel, a DHCP client or router advertisements bring back by themselves.
const SELF_RESTORING: [&str; 3] = ["kernel", "dhcp", "ra"];

/// The main routing table; routes in other tables belong to policy routing we do not restore.
const MAIN_TABLE: u32 = 254;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkPlan {
    pub interfaces: Vec<InterfacePlan>,
    /// The host's working resolvers, then the cloud's; never a loopback stub.
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

/// One interface, found again by MAC (kernel names can differ after kexec).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InterfacePlan {
    pub mac: MacAddr,
    /// The name in the stock image, for messages.
    pub name: String,
    /// Set when another interface shares the MAC (an Azure VF and its synthetic NIC): the
    /// driver then tells them apart.
    pub driver: Option<String>,
    /// A VF that its synthetic NIC drives: left alone.
    pub unmanaged: bool,
    /// DHCPv4 runs here (the stock image had a lease, or the cloud says it serves one).
    pub dhcp: bool,
    /// Static addresses with their prefix length.
    pub addresses: Vec<IpNet>,
    pub routes: Vec<RoutePlan>,
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RoutePlan {
    /// The route's family: an IPv4 route may have an IPv6 gateway (RFC 5549).
    pub family: Family,
    /// `None` for the default route.
    pub destination: Option<IpNet>,
    /// `None` for a device route (`10.0.0.1 dev eth0 scope link`).
    pub gateway: Option<IpAddr>,
    /// The gateway is outside every on-link prefix (Hetzner's IPv4 /32).
    pub onlink: bool,
    pub metric: Option<u32>,
}

impl RoutePlan {
    /// `default` or the prefix, for messages.
    pub fn destination_text(&self) -> String {
        self.destination
            .map_or_else(|| "default".to_string(), |d| d.to_string())
    }
}

/// Plans the network from the host's observations and the cloud's published interfaces.
pub fn plan_network(observed: &NetworkFacts, cloud: &[CloudInterface]) -> NetworkPlan {
    let ethernet: Vec<(&Interface, MacAddr)> = observed
        .interfaces
        .iter()
        .filter(|i| i.link_type == "ether" && i.physical)
        .filter_map(|i| Some((i, i.mac.clone()?)))
        .filter(|(_, mac)| !mac.is_zero())
        .collect();
    let mut interfaces: Vec<InterfacePlan> = ethernet
        .iter()
        .map(|(iface, mac)| {
            let shared = ethernet.iter().filter(|(_, m)| m == mac).count() > 1;
            from_host(iface, mac.clone(), shared, &observed.routes)
        })
        .collect();
    for published in cloud {
        merge_cloud(&mut interfaces, published);
    }

    let mut nameservers: Vec<IpAddr> = Vec::new();
    let cloud_dns = cloud.iter().flat_map(|c| &c.dns);
    for &ip in observed.dns.iter().chain(cloud_dns) {
        if !ip.is_loopback() && !nameservers.contains(&ip) {
            nameservers.push(ip);
        }
    }
    NetworkPlan {
        interfaces,
        nameservers,
        search: observed.dns_search.clone(),
    }
}

fn from_host(iface: &Interface, mac: MacAddr, shared: bool, routes: &[Route]) -> InterfacePlan {
    let driver = iface.driver.clone().filter(|_| shared);
    let unmanaged = driver.as_deref().is_some_and(|d| VF_DRIVERS.contains(&d));
    let addresses = iface
        .addresses
        .iter()
        .filter(|a| a.scope != "link" && a.scope != "host" && !a.dynamic)
        .filter_map(|a| IpNet::new(a.address, a.prefix_len).ok())
        .collect();
    let lease = iface
        .addresses
        .iter()
        .any(|a| a.dynamic && a.family == Family::Inet);
    let mut planned = Vec::new();
    let static_routes = routes
        .iter()
        .filter(|r| r.dev.as_deref() == Some(iface.name.as_str()))
        .filter(|r| !SELF_RESTORING.contains(&r.protocol.as_str()))
        .filter(|r| r.table.is_none_or(|t| t == MAIN_TABLE));
    for r in static_routes {
        let route = observed_route(r);
        if !planned.contains(&route) {
            planned.push(route);
        }
    }
    let addresses: Vec<IpNet> = if unmanaged { Vec::new() } else { addresses };
    InterfacePlan {
        mac,
        name: iface.name.clone(),
        driver,
        unmanaged,
        // A NIC with nothing static is asked by DHCP, as cloud images' catch-all would.
        dhcp: !unmanaged && (lease || addresses.is_empty()),
        addresses,
        routes: if unmanaged { Vec::new() } else { planned },
        mtu: Some(iface.mtu).filter(|m| *m > 0),
    }
}

fn observed_route(r: &Route) -> RoutePlan {
    RoutePlan {
        family: r.family,
        destination: r.dst.prefix(),
        gateway: r.gateway,
        onlink: r.onlink,
        metric: r.metric,
    }
}

/// Adds what the cloud publishes for one MAC; the cloud's MTU and DHCP word win.
fn merge_cloud(interfaces: &mut Vec<InterfacePlan>, published: &CloudInterface) {
    let Some(mac) = published.mac.clone() else {
        return;
    };
    let index = match interfaces.iter().position(|p| p.mac == mac && !p.unmanaged) {
        Some(i) => i,
        None => {
            interfaces.push(InterfacePlan {
                name: published.name.clone().unwrap_or_else(|| mac.to_string()),
                mac,
                driver: None,
                unmanaged: false,
                dhcp: false,
                addresses: Vec::new(),
                routes: Vec::new(),
                mtu: None,
            });
            interfaces.len() - 1
        }
    };
    let plan = &mut interfaces[index];
    for net in &published.addresses {
        if !plan.addresses.contains(net) {
            plan.addresses.push(*net);
        }
    }
    for r in &published.routes {
        let (dest, gateway) = (r.dst.prefix(), r.gateway);
        let family = match dest {
            Some(IpNet::V4(_)) => Family::Inet,
            Some(IpNet::V6(_)) => Family::Inet6,
            None if gateway.is_ipv4() => Family::Inet,
            None => Family::Inet6,
        };
        let route = RoutePlan {
            family,
            destination: dest,
            gateway: Some(gateway),
            onlink: r.onlink,
            metric: None,
        };
        let same = |x: &RoutePlan| x.family == route.family && x.destination == route.destination;
        if !plan.routes.iter().any(same) {
            plan.routes.push(route);
        }
    }
    plan.mtu = published.mtu.or(plan.mtu);
    match published.dhcp4 {
        Some(dhcp4) => plan.dhcp = dhcp4,
        None if plan.addresses.is_empty() => plan.dhcp = true,
        None => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn iface(
        name: &str,
        mac: &str,
        driver: &str,
        addresses: serde_json::Value,
    ) -> serde_json::Value {
        json!({ "name": name, "index": 2, "mac": mac, "driver": driver, "physical": true,
                "link_type": "ether", "mtu": 1500, "state": "up", "addresses": addresses })
    }

    fn addr(ip: &str, prefix: u8, scope: &str, dynamic: bool) -> serde_json::Value {
        let family = if ip.contains(':') { "inet6" } else { "inet" };
        json!({ "family": family, "address": ip, "prefix_len": prefix, "scope": scope,
                "dynamic": dynamic, "valid_lifetime": 0, "preferred_lifetime": 0 })
    }

    fn route(
        family: &str,
        dst: &str,
        gw: Option<&str>,
        dev: &str,
        proto: &str,
    ) -> serde_json::Value {
        json!({ "family": family, "dst": dst, "gateway": gw, "gateway_family": null, "dev": dev,
                "onlink": false, "metric": null, "protocol": proto, "scope": null, "table": 254 })
    }

    fn facts(v: serde_json::Value) -> NetworkFacts {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn an_azure_vf_is_left_to_its_synthetic_nic_and_both_are_told_apart_by_driver() {
        let net = facts(json!({
            "interfaces": [
                iface("eth0", "00:0D:3A:04:75:98", "hv_netvsc", json!([addr("10.0.0.4", 24, "global", true)])),
                iface("enP1s1", "00:0d:3a:04:75:98", "mlx5_core", json!([])),
            ],
            "dns": ["168.63.129.16"]
        }));
        let cloud = [CloudInterface {
            mac: Some("000D3A047598".parse().unwrap()),
            mtu: Some(1400),
            ..Default::default()
        }];
        let plan = plan_network(&net, &cloud);
        assert_eq!(plan.interfaces.len(), 2);
        let (synthetic, vf) = (&plan.interfaces[0], &plan.interfaces[1]);
        assert_eq!(synthetic.mac.as_str(), "00:0d:3a:04:75:98");
        assert_eq!(synthetic.driver.as_deref(), Some("hv_netvsc"));
        assert!(!synthetic.unmanaged && synthetic.dhcp);
        // The cloud's MTU lands on the synthetic NIC, not on the VF.
        assert_eq!(synthetic.mtu, Some(1400));
        assert!(vf.unmanaged && !vf.dhcp);
        assert_eq!(vf.driver.as_deref(), Some("mlx5_core"));
    }

    #[test]
    fn static_addresses_and_routes_are_kept_and_what_comes_back_by_itself_is_not() {
        let mut ll_default = route("inet6", "default", Some("fe80::1"), "eth0", "static");
        ll_default["onlink"] = json!(true);
        let mut v4_via_v6 = route("inet", "10.99.0.0/16", Some("fe80::2"), "eth0", "boot");
        v4_via_v6["gateway_family"] = json!("inet6");
        let mut other_table = route("inet", "default", Some("192.0.2.254"), "eth0", "static");
        other_table["table"] = json!(100);
        let net = facts(json!({
            "interfaces": [iface("eth0", "96:00:01:02:03:04", "virtio_net", json!([
                addr("192.0.2.10", 24, "global", false),
                addr("2001:db8::10", 64, "global", false),
                addr("fe80::9400:1ff:fe02:304", 64, "link", false),
            ]))],
            "routes": [
                ll_default, v4_via_v6, other_table,
                route("inet", "192.0.2.0/24", None, "eth0", "kernel"),
                route("inet", "198.51.100.0/24", Some("192.0.2.1"), "eth0", "dhcp"),
            ],
            "dns": ["127.0.0.53", "::1", "192.0.2.53", "192.0.2.53"],
            "dns_search": ["corp.example"]
        }));
        let plan = plan_network(&net, &[]);
        let eth0 = &plan.interfaces[0];
        let addrs: Vec<String> = eth0.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["192.0.2.10/24", "2001:db8::10/64"]);
        assert!(!eth0.dhcp, "static IPv4 and no lease: no DHCP");
        assert_eq!(eth0.routes.len(), 2, "{:?}", eth0.routes);
        assert_eq!(eth0.routes[0].destination, None);
        assert_eq!(eth0.routes[0].gateway, Some("fe80::1".parse().unwrap()));
        assert!(eth0.routes[0].onlink);
        assert_eq!(eth0.routes[1].family, Family::Inet);
        assert_eq!(eth0.routes[1].destination_text(), "10.99.0.0/16");
        assert_eq!(plan.nameservers, ["192.0.2.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(plan.search, ["corp.example"]);
    }

    #[test]
    fn the_cloud_adds_interfaces_addresses_and_routes_and_decides_dhcp() {
        let net = facts(json!({
            "interfaces": [
                iface("ens3", "02:00:00:00:00:01", "virtio_net", json!([addr("10.0.0.5", 24, "global", true)])),
                // Not backed by a device (docker0, a veth): never planned.
                { "name": "docker0", "index": 3, "mac": "02:42:ac:11:00:01", "driver": null,
                  "physical": false, "link_type": "ether", "mtu": 1500, "state": "up",
                  "addresses": [addr("172.17.0.1", 16, "global", false)] },
            ]
        }));
        let cloud = [
            CloudInterface {
                mac: Some("02:00:00:00:00:01".parse().unwrap()),
                addresses: vec!["2001:db8:1::5/64".parse().unwrap()],
                routes: vec![crate::facts::CloudRoute {
                    dst: crate::facts::Destination::Default,
                    gateway: "fe80::1".parse().unwrap(),
                    onlink: true,
                }],
                dns: vec!["2001:4860:4860::8888".parse().unwrap()],
                ..Default::default()
            },
            CloudInterface {
                mac: Some("02:00:00:00:00:02".parse().unwrap()),
                name: Some("ens4".into()),
                addresses: vec!["10.1.0.5/24".parse().unwrap()],
                dhcp4: Some(false),
                ..Default::default()
            },
        ];
        let plan = plan_network(&net, &cloud);
        assert_eq!(plan.interfaces.len(), 2, "{:?}", plan.interfaces);
        let ens3 = &plan.interfaces[0];
        assert!(ens3.dhcp, "the stock image had a lease");
        assert_eq!(ens3.addresses.len(), 1);
        assert_eq!(ens3.routes[0].family, Family::Inet6);
        let ens4 = &plan.interfaces[1];
        assert_eq!((ens4.name.as_str(), ens4.dhcp), ("ens4", false));
        assert_eq!(plan.nameservers.len(), 1);
    }

    #[test]
    fn link_layer_addresses_are_normalised_or_refused() {
        let ok = |s: &str| s.parse::<MacAddr>().map(|m| m.to_string());
        assert_eq!(ok("000D3A047598").unwrap(), "00:0d:3a:04:75:98");
        assert_eq!(ok("00-0D-3A-04-75-98").unwrap(), "00:0d:3a:04:75:98");
        assert!(ok("000D3A04759").is_err());
        assert!(ok("").is_err());
        assert!(ok("00:0d:3a:04:75:9g").is_err());
        assert!(ok("00:0d:3a:04:75:987").is_err());
        assert!("00:00:00:00:00:00".parse::<MacAddr>().unwrap().is_zero());
    }
}
