//! The one renderer of the [`NetworkPlan`]: systemd-networkd units, as INI files for the
//! installer (the handoff's `networkd/`) and as NixOS `systemd.network.networks` values for the
//! installed system (facts.json's `install.network`, which the Nix modules pass through).
//! Both forms come from the same [`Unit`], so they cannot drift apart.

use serde_json::{json, Map, Value};

use super::network::{InterfacePlan, NetworkPlan, RoutePlan};
use crate::facts::Family;

/// Lower than the cloud module's `99-nixos-lift-ethernet` catch-all: networkd takes the first
/// matching file, so a planned interface never falls through to it.
const UNIT_PREFIX: &str = "10-nixos-lift-";

/// The MTU networkd would set anyway.
const DEFAULT_MTU: u32 = 1500;

type Section = Vec<(&'static str, Value)>;

/// One `.network` unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Without the `.network` suffix.
    pub name: String,
    matches: Section,
    link: Section,
    network: Section,
    addresses: Vec<String>,
    routes: Vec<Section>,
}

/// One unit per planned interface.
pub fn units(plan: &NetworkPlan) -> Vec<Unit> {
    plan.interfaces.iter().map(unit).collect()
}

fn unit(iface: &InterfacePlan) -> Unit {
    let mut name = format!("{UNIT_PREFIX}{}", iface.mac.compact());
    let mut matches: Section = vec![("MACAddress", json!(iface.mac.as_str()))];
    if let Some(driver) = &iface.driver {
        name.push('-');
        name.push_str(driver);
        matches.push(("Driver", json!(driver)));
    }
    if iface.unmanaged {
        return Unit {
            name,
            matches,
            link: vec![("Unmanaged", json!(true))],
            network: Vec::new(),
            addresses: Vec::new(),
            routes: Vec::new(),
        };
    }
    let link = match iface.mtu {
        Some(mtu) if mtu != DEFAULT_MTU => vec![("MTUBytes", json!(mtu.to_string()))],
        _ => Vec::new(),
    };
    Unit {
        name,
        matches,
        link,
        network: vec![
            ("DHCP", json!(if iface.dhcp { "yes" } else { "no" })),
            ("IPv6AcceptRA", json!(true)),
        ],
        addresses: iface.addresses.iter().map(ToString::to_string).collect(),
        routes: iface.routes.iter().map(route).collect(),
    }
}

fn route(r: &RoutePlan) -> Section {
    let mut s: Section = Vec::new();
    match (r.destination, r.gateway) {
        (Some(dst), _) => s.push(("Destination", json!(dst.to_string()))),
        // An IPv4 default via an IPv6 gateway: networkd takes the family from the destination.
        (None, Some(gw)) if r.family == Family::Inet && gw.is_ipv6() => {
            s.push(("Destination", json!("0.0.0.0/0")));
        }
        (None, _) => {}
    }
    match r.gateway {
        Some(gw) => s.push(("Gateway", json!(gw.to_string()))),
        None => s.push(("Scope", json!("link"))),
    }
    if r.onlink {
        s.push(("GatewayOnLink", json!(true)));
    }
    if let Some(metric) = r.metric {
        s.push(("Metric", json!(metric)));
    }
    s
}

impl Unit {
    /// The `.network` file.
    pub fn to_ini(&self) -> String {
        let mut out = String::from("# Written by nixos-lift from the network plan\n");
        section(&mut out, "Match", &self.matches);
        section(&mut out, "Link", &self.link);
        let mut network = self.network.clone();
        network.extend(self.addresses.iter().map(|a| ("Address", json!(a))));
        section(&mut out, "Network", &network);
        for r in &self.routes {
            section(&mut out, "Route", r);
        }
        out
    }

    /// The value of `systemd.network.networks.<name>` in NixOS.
    pub fn to_nixos(&self) -> Value {
        let mut unit = Map::new();
        for (key, entries) in [
            ("matchConfig", &self.matches),
            ("linkConfig", &self.link),
            ("networkConfig", &self.network),
        ] {
            if !entries.is_empty() {
                unit.insert(key.into(), attrs(entries));
            }
        }
        if !self.addresses.is_empty() {
            unit.insert("address".into(), json!(self.addresses));
        }
        if !self.routes.is_empty() {
            unit.insert(
                "routes".into(),
                Value::Array(self.routes.iter().map(attrs).collect()),
            );
        }
        Value::Object(unit)
    }
}

fn attrs(entries: &Section) -> Value {
    Value::Object(
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn section(out: &mut String, title: &str, entries: &Section) {
    if entries.is_empty() {
        return;
    }
    out.push_str(&format!("[{title}]\n"));
    for (key, value) in entries {
        let text = match value {
            Value::Bool(true) => "yes".to_string(),
            Value::Bool(false) => "no".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push_str(&format!("{key}={text}\n"));
    }
}

/// systemd-resolved's drop-in with the plan's resolvers; `None` without any.
pub fn resolved_conf(plan: &NetworkPlan) -> Option<String> {
    if plan.nameservers.is_empty() {
        return None;
    }
    let dns: Vec<String> = plan.nameservers.iter().map(ToString::to_string).collect();
    let mut out = format!(
        "# Written by nixos-lift from the network plan\n[Resolve]\nDNS={}\n",
        dns.join(" ")
    );
    if !plan.search.is_empty() {
        out.push_str(&format!("Domains={}\n", plan.search.join(" ")));
    }
    Some(out)
}

/// facts.json's `install.network`: what nix/lib hands to `systemd.network.networks`,
/// `networking.nameservers` and `networking.search`.
pub fn nixos(plan: &NetworkPlan) -> Value {
    let networks: Map<String, Value> = units(plan)
        .iter()
        .map(|u| (u.name.clone(), u.to_nixos()))
        .collect();
    json!({
        "networks": networks,
        "nameservers": plan.nameservers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "search": plan.search,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::network::MacAddr;

    fn iface(mac: &str) -> InterfacePlan {
        InterfacePlan {
            mac: mac.parse::<MacAddr>().unwrap(),
            name: "eth0".into(),
            driver: None,
            unmanaged: false,
            dhcp: true,
            addresses: vec![],
            routes: vec![],
            mtu: Some(1500),
        }
    }

    fn route(family: Family, dst: Option<&str>, gw: Option<&str>, onlink: bool) -> RoutePlan {
        RoutePlan {
            family,
            destination: dst.map(|d| d.parse().unwrap()),
            gateway: gw.map(|g| g.parse().unwrap()),
            onlink,
            metric: None,
        }
    }

    #[test]
    fn both_forms_say_the_same_for_gateways_of_every_kind() {
        let mut eth0 = iface("96:00:01:02:03:04");
        eth0.mtu = Some(1450);
        eth0.addresses = vec!["2001:db8::10/64".parse().unwrap()];
        eth0.routes = vec![
            route(Family::Inet6, None, Some("fe80::1"), true),
            route(Family::Inet, None, Some("fe80::2"), false),
            route(Family::Inet, Some("10.0.0.1/32"), None, false),
        ];
        let plan = NetworkPlan {
            interfaces: vec![eth0],
            ..Default::default()
        };
        let unit = &units(&plan)[0];
        assert_eq!(unit.name, "10-nixos-lift-960001020304");
        assert_eq!(
            unit.to_ini(),
            "# Written by nixos-lift from the network plan\n\
             [Match]\nMACAddress=96:00:01:02:03:04\n\
             [Link]\nMTUBytes=1450\n\
             [Network]\nDHCP=yes\nIPv6AcceptRA=yes\nAddress=2001:db8::10/64\n\
             [Route]\nGateway=fe80::1\nGatewayOnLink=yes\n\
             [Route]\nDestination=0.0.0.0/0\nGateway=fe80::2\n\
             [Route]\nDestination=10.0.0.1/32\nScope=link\n"
        );
        assert_eq!(
            unit.to_nixos(),
            json!({
                "matchConfig": { "MACAddress": "96:00:01:02:03:04" },
                "linkConfig": { "MTUBytes": "1450" },
                "networkConfig": { "DHCP": "yes", "IPv6AcceptRA": true },
                "address": ["2001:db8::10/64"],
                "routes": [
                    { "Gateway": "fe80::1", "GatewayOnLink": true },
                    { "Destination": "0.0.0.0/0", "Gateway": "fe80::2" },
                    { "Destination": "10.0.0.1/32", "Scope": "link" }
                ]
            })
        );
    }

    #[test]
    fn a_vf_is_unmanaged_and_its_synthetic_nic_matched_by_driver() {
        let mut synthetic = iface("00:0d:3a:04:75:98");
        synthetic.driver = Some("hv_netvsc".into());
        let mut vf = iface("00:0d:3a:04:75:98");
        vf.driver = Some("mlx5_core".into());
        vf.unmanaged = true;
        let plan = NetworkPlan {
            interfaces: vec![synthetic, vf],
            nameservers: vec!["168.63.129.16".parse().unwrap()],
            search: vec!["internal.cloudapp.net".into()],
        };
        let all = nixos(&plan);
        let networks = all["networks"].as_object().unwrap();
        assert_eq!(networks.len(), 2);
        assert_eq!(
            networks["10-nixos-lift-000d3a047598-hv_netvsc"]["matchConfig"]["Driver"],
            "hv_netvsc"
        );
        assert_eq!(
            networks["10-nixos-lift-000d3a047598-mlx5_core"],
            json!({
                "matchConfig": { "MACAddress": "00:0d:3a:04:75:98", "Driver": "mlx5_core" },
                "linkConfig": { "Unmanaged": true }
            })
        );
        assert_eq!(
            resolved_conf(&plan).unwrap(),
            "# Written by nixos-lift from the network plan\n[Resolve]\n\
             DNS=168.63.129.16\nDomains=internal.cloudapp.net\n"
        );
        assert_eq!(resolved_conf(&NetworkPlan::default()), None);
    }
}
