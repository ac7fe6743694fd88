//! The stock image's network in nixos-images' shapes, for an installer built from its kexec
//! modules with `restore-network` still on (nixos-lift's own turns it off and uses the plan's
//! networkd units): `addrs.json`, `routes-v4.json`, `routes-v6.json`, the exact shapes of
//! `ip -j addr`, `ip -j -4 route` and `ip -j -6 route`. `restore-network` silently drops an
//! address without `preferred_life_time`/`valid_life_time`, so lifetimes are always written
//! (4294967295 = forever).

use serde_json::{json, Map, Value};

use crate::facts::{Family, Interface, Route};

/// `addrs.json`: one object per link, as `ip -j addr` prints it.
pub fn ip_addr_json(interfaces: &[Interface]) -> Value {
    Value::Array(interfaces.iter().map(link_json).collect())
}

fn link_json(link: &Interface) -> Value {
    let mut obj = Map::new();
    obj.insert("ifindex".into(), json!(link.index));
    obj.insert("ifname".into(), json!(link.name));
    obj.insert("flags".into(), json!(link_flags(link)));
    obj.insert("mtu".into(), json!(link.mtu));
    obj.insert("operstate".into(), json!(link.state.to_uppercase()));
    obj.insert("link_type".into(), json!(link.link_type));
    if let Some(mac) = &link.mac {
        obj.insert("address".into(), json!(mac));
    }
    let addr_info: Vec<Value> = link
        .addresses
        .iter()
        .map(|a| {
            let mut info = Map::new();
            info.insert("family".into(), json!(family_name(a.family)));
            info.insert("local".into(), json!(a.address));
            info.insert("prefixlen".into(), json!(a.prefix_len));
            info.insert("scope".into(), json!(a.scope));
            if a.dynamic {
                info.insert("dynamic".into(), json!(true));
            }
            if a.family == Family::Inet {
                info.insert("label".into(), json!(link.name));
            }
            info.insert("valid_life_time".into(), json!(a.valid_lifetime));
            info.insert("preferred_life_time".into(), json!(a.preferred_lifetime));
            Value::Object(info)
        })
        .collect();
    obj.insert("addr_info".into(), Value::Array(addr_info));
    Value::Object(obj)
}

fn link_flags(link: &Interface) -> Vec<&'static str> {
    let mut flags = Vec::new();
    if link.link_type == "loopback" {
        flags.push("LOOPBACK");
    } else {
        flags.extend(["BROADCAST", "MULTICAST"]);
    }
    if link.state == "up" || link.state == "unknown" {
        flags.extend(["UP", "LOWER_UP"]);
    }
    flags
}

/// `routes-v4.json` or `routes-v6.json`: the routes of one family, as `ip -j -4|-6 route` prints.
pub fn ip_route_json(routes: &[Route], family: Family) -> Value {
    Value::Array(
        routes
            .iter()
            .filter(|r| r.family == family)
            .map(route_json)
            .collect(),
    )
}

fn route_json(route: &Route) -> Value {
    let mut obj = Map::new();
    obj.insert("dst".into(), json!(route.dst));
    if let Some(gw) = &route.gateway {
        match route.gateway_family {
            // IPv4 via an IPv6 gateway: `ip` prints `via`, not `gateway` (nixos-images #230).
            Some(gw_family) if gw_family != route.family => {
                obj.insert(
                    "via".into(),
                    json!({"family": family_name(gw_family), "host": gw}),
                );
            }
            _ => {
                obj.insert("gateway".into(), json!(gw));
            }
        }
    }
    if let Some(dev) = &route.dev {
        obj.insert("dev".into(), json!(dev));
    }
    // `ip` leaves out the default protocol (`boot`) and scope (`global`/`universe`).
    if route.protocol != "boot" && !route.protocol.is_empty() {
        obj.insert("protocol".into(), json!(route.protocol));
    }
    if let Some(scope) = route
        .scope
        .as_deref()
        .filter(|s| !matches!(*s, "global" | "universe"))
    {
        obj.insert("scope".into(), json!(scope));
    }
    if let Some(metric) = route.metric {
        obj.insert("metric".into(), json!(metric));
    }
    if let Some(table) = route.table.filter(|t| *t != 254) {
        obj.insert("table".into(), json!(table.to_string()));
    }
    let flags: Vec<&str> = if route.onlink { vec!["onlink"] } else { vec![] };
    obj.insert("flags".into(), json!(flags));
    Value::Object(obj)
}

fn family_name(family: Family) -> &'static str {
    match family {
        Family::Inet => "inet",
        Family::Inet6 => "inet6",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::facts::Address;

    fn eth0() -> Interface {
        Interface {
            name: "eth0".into(),
            index: 2,
            mac: Some("52:54:00:12:34:56".parse().unwrap()),
            driver: Some("virtio_net".into()),
            physical: true,
            link_type: "ether".into(),
            mtu: 1500,
            state: "up".into(),
            addresses: vec![
                Address {
                    family: Family::Inet,
                    address: "203.0.113.10".parse().unwrap(),
                    prefix_len: 24,
                    scope: "global".into(),
                    dynamic: false,
                    valid_lifetime: u32::MAX,
                    preferred_lifetime: u32::MAX,
                },
                Address {
                    family: Family::Inet6,
                    address: "2001:db8::10".parse().unwrap(),
                    prefix_len: 64,
                    scope: "global".into(),
                    dynamic: true,
                    valid_lifetime: 86400,
                    preferred_lifetime: 14400,
                },
            ],
        }
    }

    fn route(family: Family, dst: &str, gw: Option<&str>) -> Route {
        Route {
            family,
            dst: dst.parse().unwrap(),
            gateway: gw.map(|g| g.parse().unwrap()),
            gateway_family: None,
            dev: Some("eth0".into()),
            onlink: false,
            metric: None,
            protocol: "boot".into(),
            scope: None,
            table: Some(254),
        }
    }

    #[test]
    fn addrs_have_every_key_restore_network_requires() {
        let v = ip_addr_json(&[eth0()]);
        let link = &v[0];
        assert_eq!(link["ifname"], "eth0");
        assert_eq!(link["address"], "52:54:00:12:34:56");
        assert_eq!(link["link_type"], "ether");
        let static4 = &link["addr_info"][0];
        assert_eq!(static4["family"], "inet");
        assert_eq!(static4["local"], "203.0.113.10");
        assert_eq!(static4["prefixlen"], 24);
        assert_eq!(static4["valid_life_time"], 4294967295u32);
        assert_eq!(static4["preferred_life_time"], 4294967295u32);
        assert!(static4.get("dynamic").is_none());
        let dyn6 = &link["addr_info"][1];
        assert_eq!(dyn6["dynamic"], true);
        assert_eq!(dyn6["valid_life_time"], 86400);
    }

    #[test]
    fn routes_split_by_family_in_ip_shape() {
        let mut onlink = route(Family::Inet, "default", Some("172.31.1.1"));
        onlink.onlink = true;
        let mut v4_via_v6 = route(Family::Inet, "10.9.0.0/16", Some("fe80::1"));
        v4_via_v6.gateway_family = Some(Family::Inet6);
        let mut kernel = route(Family::Inet, "203.0.113.0/24", None);
        kernel.protocol = "kernel".into();
        kernel.scope = Some("link".into());
        let v6 = route(Family::Inet6, "default", Some("fe80::1"));
        let routes = [onlink, v4_via_v6, kernel, v6];

        let v4 = ip_route_json(&routes, Family::Inet);
        assert_eq!(
            v4,
            json!([
                {"dst": "default", "gateway": "172.31.1.1", "dev": "eth0", "flags": ["onlink"]},
                {"dst": "10.9.0.0/16", "via": {"family": "inet6", "host": "fe80::1"},
                 "dev": "eth0", "flags": []},
                {"dst": "203.0.113.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link",
                 "flags": []}
            ])
        );
        let v6 = ip_route_json(&routes, Family::Inet6);
        assert_eq!(v6.as_array().map(Vec::len), Some(1));
        assert_eq!(v6[0]["gateway"], "fe80::1");
    }
}
