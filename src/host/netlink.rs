//! The live network state over rtnetlink: links, addresses and routes, as `ip -j` shows them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use ipnet::IpNet;

use super::SysRoot;
use crate::facts::{Address, Destination, Family, Interface, NetworkFacts, Route};

/// The main routing table; `local` (255) holds the kernel's own addresses and is left out,
/// as `ip route` does.
const RT_TABLE_LOCAL: u32 = 255;
/// Per-receive timeout on the netlink socket.
const RECV_TIMEOUT_SECS: i64 = 5;
/// An infinite lifetime, as `ip -j addr` prints it.
const FOREVER: u32 = u32::MAX;

pub fn dump(root: &SysRoot) -> std::io::Result<NetworkFacts> {
    let socket = connect()?;
    let links = request(
        &socket,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
    )?;
    let addrs = request(
        &socket,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )?;
    let routes = request(
        &socket,
        RouteNetlinkMessage::GetRoute(RouteMessage::default()),
    )?;

    let mut interfaces: Vec<Interface> = links
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(link) => Some(interface(root, &link)),
            _ => None,
        })
        .collect();
    let names: BTreeMap<u32, String> = interfaces
        .iter()
        .map(|i| (i.index, i.name.clone()))
        .collect();
    for msg in addrs {
        if let RouteNetlinkMessage::NewAddress(a) = msg {
            let iface = interfaces.iter_mut().find(|i| i.index == a.header.index);
            if let (Some(iface), Some(addr)) = (iface, address(&a)) {
                iface.addresses.push(addr);
            }
        }
    }
    let routes = routes
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => route(&r, &names),
            _ => None,
        })
        .collect();
    Ok(NetworkFacts {
        interfaces,
        routes,
        ..NetworkFacts::default()
    })
}

fn connect() -> std::io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    // The kernel answers dumps at once; the timeout only guards against a wedged socket.
    let timeout = nix::sys::time::TimeVal::new(RECV_TIMEOUT_SECS, 0);
    nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)
        .map_err(std::io::Error::from)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// Sends one dump request and collects every message of the multipart answer.
fn request(socket: &Socket, msg: RouteNetlinkMessage) -> std::io::Result<Vec<RouteNetlinkMessage>> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut out = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < data.len() {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                .map_err(|e| std::io::Error::other(format!("decoding a netlink message: {e}")))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(e) => {
                    return Err(std::io::Error::other(format!("netlink error: {e}")))
                }
                NetlinkPayload::InnerMessage(inner) => out.push(inner),
                _ => {}
            }
            if len == 0 {
                return Ok(out);
            }
            offset += len;
        }
    }
}

fn interface(root: &SysRoot, link: &LinkMessage) -> Interface {
    let mut iface = Interface {
        name: String::new(),
        index: link.header.index,
        mac: None,
        driver: None,
        physical: false,
        link_type: link_type(u16::from(link.header.link_layer_type)),
        mtu: 0,
        state: "unknown".to_string(),
        addresses: Vec::new(),
    };
    for attr in &link.attributes {
        match attr {
            LinkAttribute::IfName(name) => iface.name = name.clone(),
            LinkAttribute::Address(mac) if !mac.is_empty() => {
                iface.mac = mac_string(mac).parse().ok()
            }
            LinkAttribute::Mtu(mtu) => iface.mtu = *mtu,
            LinkAttribute::OperState(state) => {
                iface.state = format!("{state:?}").to_ascii_lowercase()
            }
            _ => {}
        }
    }
    // sysfs knows which links sit on a real (or virtual-hardware) device and its driver.
    let device = format!("/sys/class/net/{}/device", iface.name);
    iface.physical = root.exists(&device);
    iface.driver = root.link_name(format!("{device}/driver"));
    iface
}

fn address(msg: &AddressMessage) -> Option<Address> {
    let family = family(msg.header.family)?;
    let (mut address, mut local, mut flags) = (None, None, u32::from(msg.header.flags.bits()));
    let (mut valid, mut preferred) = (FOREVER, FOREVER);
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            AddressAttribute::CacheInfo(info) => {
                valid = info.ifa_valid;
                preferred = info.ifa_preferred;
            }
            _ => {}
        }
    }
    // On point-to-point links IFA_ADDRESS is the peer; IFA_LOCAL is ours (as `ip` reads it).
    let ip: IpAddr = local.or(address)?;
    Some(Address {
        family,
        address: ip,
        prefix_len: msg.header.prefix_len,
        scope: scope_name(u8::from(msg.header.scope)),
        // `ip` prints `dynamic` for every address the kernel does not hold as permanent:
        // DHCP leases and SLAAC addresses carry finite lifetimes.
        dynamic: !AddressFlags::from_bits_retain(flags).contains(AddressFlags::Permanent),
        valid_lifetime: valid,
        preferred_lifetime: preferred,
    })
}

fn route(msg: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<Route> {
    let header = &msg.header;
    if header.kind != RouteType::Unicast {
        return None;
    }
    let family = family(header.address_family)?;
    let mut route = Route {
        family,
        dst: Destination::Default,
        gateway: None,
        gateway_family: None,
        dev: None,
        onlink: header.flags.contains(RouteFlags::Onlink),
        metric: None,
        protocol: protocol_name(u8::from(header.protocol)),
        scope: Some(scope_name(u8::from(header.scope))),
        table: Some(u32::from(header.table)),
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(dst) => {
                if let Some(net) = route_ip(dst)
                    .and_then(|ip| IpNet::new(ip, header.destination_prefix_length).ok())
                {
                    route.dst = Destination::Prefix(net);
                }
            }
            RouteAttribute::Gateway(gw) => route.gateway = route_ip(gw),
            // IPv4 via an IPv6 next hop (RFC 5549), as `ip route add ... via inet6 fe80::1`.
            RouteAttribute::Via(RouteVia::Inet6(ip)) => {
                route.gateway = Some(IpAddr::V6(*ip));
                route.gateway_family = Some(Family::Inet6);
            }
            RouteAttribute::Via(RouteVia::Inet(ip)) => {
                route.gateway = Some(IpAddr::V4(*ip));
                route.gateway_family = Some(Family::Inet);
            }
            RouteAttribute::Oif(index) => route.dev = names.get(index).cloned(),
            RouteAttribute::Priority(metric) => route.metric = Some(*metric),
            RouteAttribute::Table(table) => route.table = Some(*table),
            _ => {}
        }
    }
    // IPv6 multicast and link-local routes clutter the main table without saying anything.
    let multicast = matches!(route.dst, Destination::Prefix(net) if net.to_string() == "ff00::/8");
    let noise = multicast || route.table == Some(RT_TABLE_LOCAL);
    (!noise).then_some(route)
}

fn route_ip(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

fn family(family: AddressFamily) -> Option<Family> {
    match family {
        AddressFamily::Inet => Some(Family::Inet),
        AddressFamily::Inet6 => Some(Family::Inet6),
        _ => None,
    }
}

fn mac_string(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The names `ip` uses (`/etc/iproute2/rt_scopes`).
fn scope_name(scope: u8) -> String {
    match scope {
        0 => "global".into(),
        200 => "site".into(),
        253 => "link".into(),
        254 => "host".into(),
        255 => "nowhere".into(),
        other => other.to_string(),
    }
}

/// The names `ip` uses (`/etc/iproute2/rt_protos`).
fn protocol_name(proto: u8) -> String {
    match proto {
        0 => "unspec".into(),
        1 => "redirect".into(),
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        9 => "ra".into(),
        16 => "dhcp".into(),
        other => other.to_string(),
    }
}

/// The `ARPHRD_*` names `ip -j link` prints as `link_type`.
fn link_type(arphrd: u16) -> String {
    match arphrd {
        1 => "ether".into(),
        32 => "infiniband".into(),
        768 => "ipip".into(),
        776 => "sit".into(),
        778 => "gre".into(),
        772 => "loopback".into(),
        65534 => "none".into(),
        other => other.to_string(),
    }
}
