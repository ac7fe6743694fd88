//! Restoring the network stage 1 saw (and the cloud publishes), over netlink, then waiting
//! until the flake's host and the substituters answer.
//!
//! Interfaces are matched by MAC: kernel names can differ between the stock image and the
//! installer. Static addresses, gateways (onlink, IPv6 link-local, IPv4 via IPv6) and MTU go
//! in over rtnetlink; DNS goes into resolv.conf. DHCP interfaces are left to the installer's
//! systemd-networkd (the installer's nixos-lift-network writes its units); without systemd (the
//! busybox test fixture) stage 2 runs `udhcpc` once when it exists.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr as NlAddr};

use crate::facts::Family;
use crate::plan::network::{InterfacePlan, MacAddr, NetworkPlan, RoutePlan};
use crate::plan::Plan;
use crate::{Error, Result};

/// Applies the plan to the links of the current network namespace; returns one line per
/// interface for the log.
pub fn apply(plan: &NetworkPlan) -> Result<Vec<String>> {
    let mut nl = Netlink::open().map_err(|e| Error::io("opening rtnetlink", e))?;
    let links = nl.links().map_err(|e| Error::io("listing links", e))?;
    let mut report = Vec::new();
    for iface in &plan.interfaces {
        if iface.unmanaged {
            report.push(format!(
                "{} ({}, {}): a VF its synthetic NIC drives; left alone",
                iface.name,
                iface.mac,
                iface.driver.as_deref().unwrap_or("?")
            ));
            continue;
        }
        let Some(link) = find_link(&links, iface) else {
            report.push(format!(
                "{} ({}): no interface with this MAC here; skipped",
                iface.name, iface.mac
            ));
            continue;
        };
        let (index, name) = (link.index, &link.name);
        let ctx = |what: &str| format!("restoring {name} ({}): {what}", iface.mac);
        nl.link_up(index, iface.mtu)
            .map_err(|e| Error::io(ctx("setting link up"), e))?;
        for addr in &iface.addresses {
            nl.add_address(index, addr.addr(), addr.prefix_len())
                .map_err(|e| Error::io(ctx(&format!("adding {addr}")), e))?;
        }
        // Device routes first: an onlink-less gateway may only be reachable through them.
        let mut routes: Vec<&RoutePlan> = iface.routes.iter().collect();
        routes.sort_by_key(|r| (r.gateway.is_some(), r.destination.is_none()));
        for route in routes {
            nl.add_route(index, route).map_err(|e| {
                let via = route
                    .gateway
                    .map_or_else(|| "link".into(), |g| g.to_string());
                Error::io(
                    ctx(&format!(
                        "adding route {} via {via}",
                        route.destination_text()
                    )),
                    e,
                )
            })?;
        }
        report.push(format!(
            "{name} ({}, was {}): {} address(es), {} route(s){}{}",
            iface.mac,
            iface.name,
            iface.addresses.len(),
            iface.routes.len(),
            iface.mtu.map(|m| format!(", mtu {m}")).unwrap_or_default(),
            if iface.dhcp { ", dhcp" } else { "" }
        ));
    }
    Ok(report)
}

/// The link with the plan's MAC. Where several share it (a VF enslaved to its synthetic NIC),
/// the one without a controller.
fn find_link<'a>(links: &'a [Link], iface: &InterfacePlan) -> Option<&'a Link> {
    let mut same = links.iter().filter(|l| l.mac.as_ref() == Some(&iface.mac));
    let first = same.next()?;
    if !first.enslaved {
        return Some(first);
    }
    same.find(|l| !l.enslaved).or(Some(first))
}

/// Runs `udhcpc` once on DHCP interfaces when systemd (and so networkd) is not running.
pub fn dhcp_without_systemd(root: &Path, plan: &NetworkPlan) -> Vec<String> {
    if root.join("run/systemd/system").exists() {
        return Vec::new();
    }
    let Ok(links) = Netlink::open().and_then(|mut nl| nl.links()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // `dhcp` is DHCPv4, which brings the default route: static addresses next to it (Hetzner's
    // IPv6, the address AWS's metadata publishes) do not replace it.
    for iface in plan.interfaces.iter().filter(|i| i.dhcp) {
        let Some(Link { name, .. }) = find_link(&links, iface) else {
            continue;
        };
        let status = std::process::Command::new("udhcpc")
            .args(["-i", name, "-n", "-q", "-t", "5", "-T", "2"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        out.push(match status {
            Ok(s) if s.success() => format!("{name}: DHCP lease from udhcpc"),
            Ok(s) => format!("{name}: udhcpc failed ({s})"),
            Err(e) => format!("{name}: no DHCP client without systemd ({e})"),
        });
    }
    out
}

/// Writes resolv.conf with the plan's resolvers; returns them.
pub fn write_resolv_conf(path: &Path, plan: &NetworkPlan) -> Result<Vec<IpAddr>> {
    if plan.nameservers.is_empty() {
        return Ok(Vec::new());
    }
    let mut text = String::from("# Written by nixos-lift from the network plan\n");
    for s in &plan.nameservers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !plan.search.is_empty() {
        text.push_str(&format!("search {}\n", plan.search.join(" ")));
    }
    // Replace a symlink (to a resolver stub) rather than write through it.
    let tmp = path.with_extension("nixos-lift.tmp");
    std::fs::write(&tmp, text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::io(format!("replacing {}", path.display()), e))?;
    Ok(plan.nameservers.clone())
}

/// A host that must answer before the install starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `flake` or `substituter`.
    pub role: &'static str,
}

/// The flake's host and the substituters, as TCP endpoints. Local references (`path:`,
/// `file://`) have none.
pub fn endpoints(plan: &Plan) -> Vec<Endpoint> {
    let mut out = Vec::new();
    if let Some((host, port)) = flake_host(&plan.flake.url) {
        out.push(Endpoint {
            host,
            port,
            role: "flake",
        });
    }
    for s in &plan.nix.substituters {
        if let Some((host, port)) = url_host(s.as_str()) {
            let e = Endpoint {
                host,
                port,
                role: "substituter",
            };
            if !out.iter().any(|x| x.host == e.host && x.port == e.port) {
                out.push(e);
            }
        }
    }
    out
}

fn flake_host(url: &str) -> Option<(String, u16)> {
    let forge = |host: &str| Some((host.to_string(), 443));
    if url.starts_with("github:") {
        return forge("github.com");
    }
    if url.starts_with("gitlab:") {
        return forge("gitlab.com");
    }
    if url.starts_with("sourcehut:") {
        return forge("git.sr.ht");
    }
    let stripped = url
        .strip_prefix("git+")
        .or_else(|| url.strip_prefix("tarball+"))
        .or_else(|| url.strip_prefix("file+"))
        .unwrap_or(url);
    url_host(stripped)
}

/// `scheme://[user@]host[:port]/...` to host and port (default by scheme).
fn url_host(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "https" => 443,
        "http" => 80,
        "ssh" => 22,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        let (host, tail) = v6.split_once(']')?;
        let port = tail
            .strip_prefix(':')
            .and_then(|p| p.parse().ok())
            .unwrap_or(default);
        return Some((host.to_string(), port));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None if !hostport.is_empty() => Some((hostport.to_string(), default)),
        None => None,
    }
}

/// Waits until every endpoint accepts a TCP connection, or fails naming the first that
/// did not by `deadline`.
pub fn wait_reachable(endpoints: &[Endpoint], deadline: Duration) -> Result<()> {
    let start = Instant::now();
    for ep in endpoints {
        let mut last_err;
        loop {
            let left = deadline.saturating_sub(start.elapsed());
            match connect(ep, left.min(Duration::from_secs(5))) {
                Ok(()) => break,
                Err(e) => last_err = e,
            }
            if start.elapsed() + Duration::from_secs(2) >= deadline {
                return Err(Error::Network {
                    what: "waiting for the network".into(),
                    why: format!(
                        "{} {}:{} unreachable after {}s: {last_err}",
                        ep.role,
                        ep.host,
                        ep.port,
                        start.elapsed().as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
    Ok(())
}

fn connect(ep: &Endpoint, timeout: Duration) -> std::result::Result<(), String> {
    let timeout = timeout.max(Duration::from_millis(100));
    let addrs: Vec<SocketAddr> = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| format!("resolving: {e}"))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}

/// A minimal synchronous rtnetlink client: one request, then its ACK or dump.
struct Netlink {
    socket: Socket,
    seq: u32,
}

struct Link {
    index: u32,
    name: String,
    mac: Option<MacAddr>,
    /// Enslaved to another link (a VF under its synthetic NIC, a bond member).
    enslaved: bool,
}

impl Netlink {
    fn open() -> std::io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&NlAddr::new(0, 0))?;
        Ok(Self { socket, seq: 0 })
    }

    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> std::io::Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                    .map_err(|e| std::io::Error::other(format!("decoding netlink: {e}")))?;
                let len = msg.header.length as usize;
                if msg.header.sequence_number == self.seq {
                    match msg.payload {
                        NetlinkPayload::Done(_) => return Ok(out),
                        NetlinkPayload::Error(e) => {
                            return match e.code {
                                None => Ok(out),
                                Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
                            }
                        }
                        NetlinkPayload::InnerMessage(m) => out.push(m),
                        _ => {}
                    }
                }
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
            }
        }
    }

    fn links(&mut self) -> std::io::Result<Vec<Link>> {
        let msgs = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .map(|l| {
                let mut link = Link {
                    index: l.header.index,
                    name: String::new(),
                    mac: None,
                    enslaved: false,
                };
                for a in &l.attributes {
                    match a {
                        LinkAttribute::IfName(n) => link.name = n.clone(),
                        LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                            let hex: Vec<String> =
                                bytes.iter().map(|b| format!("{b:02x}")).collect();
                            link.mac = hex.join(":").parse().ok();
                        }
                        LinkAttribute::Controller(_) => link.enslaved = true,
                        _ => {}
                    }
                }
                link
            })
            .collect())
    }

    fn link_up(&mut self, index: u32, mtu: Option<u32>) -> std::io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    fn add_address(&mut self, index: u32, ip: IpAddr, prefix: u8) -> std::io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = family(ip);
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        if ip.is_ipv6() {
            // No duplicate address detection: a tentative address can't be a route's source.
            msg.header.flags = AddressHeaderFlags::Nodad;
        }
        msg.attributes.push(AddressAttribute::Local(ip));
        msg.attributes.push(AddressAttribute::Address(ip));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }

    fn add_route(&mut self, index: u32, route: &RoutePlan) -> std::io::Result<()> {
        let mut msg = RouteMessage::default();
        let mut dst_len = 0;
        if let Some(dst) = route.destination {
            dst_len = dst.prefix_len();
            msg.attributes
                .push(RouteAttribute::Destination(dst.addr().into()));
        }
        if let Some(gw) = route.gateway {
            match (route.family, gw) {
                (Family::Inet, IpAddr::V6(v6)) => msg
                    .attributes
                    .push(RouteAttribute::Via(RouteVia::Inet6(v6))),
                (_, gw) => msg
                    .attributes
                    .push(RouteAttribute::Gateway(RouteAddress::from(gw))),
            }
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        if let Some(metric) = route.metric {
            msg.attributes.push(RouteAttribute::Priority(metric));
        }
        msg.header = RouteHeader {
            address_family: match route.family {
                Family::Inet => AddressFamily::Inet,
                Family::Inet6 => AddressFamily::Inet6,
            },
            destination_prefix_length: dst_len,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Static,
            kind: RouteType::Unicast,
            scope: if route.gateway.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            },
            flags: if route.onlink {
                RouteFlags::Onlink
            } else {
                RouteFlags::empty()
            },
            ..RouteHeader::default()
        };
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map(drop)
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn flake_hosts_come_from_forges_and_urls() {
        assert_eq!(
            flake_host("github:me/fleet"),
            Some(("github.com".into(), 443))
        );
        assert_eq!(
            flake_host("git+https://git.example.org:8443/me/fleet?ref=main"),
            Some(("git.example.org".into(), 8443))
        );
        assert_eq!(
            flake_host("git+ssh://git@host.example/x"),
            Some(("host.example".into(), 22))
        );
        assert_eq!(
            flake_host("git+http://[fd00::1]/x"),
            Some(("fd00::1".into(), 80))
        );
        assert_eq!(flake_host("path:/etc/nixos"), None);
        assert_eq!(flake_host("git+file:///srv/flake"), None);
    }

    #[test]
    fn unreachable_endpoint_is_named() {
        // Port 1 on loopback refuses at once.
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: 1,
            role: "substituter",
        };
        let err = wait_reachable(&[ep], Duration::from_secs(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("substituter 127.0.0.1:1 unreachable"),
            "{err}"
        );
    }
}
