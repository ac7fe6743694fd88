//! DNS resolvers that actually answer, looking through systemd-resolved's stub.

use std::net::{IpAddr, Ipv4Addr};

use super::SysRoot;

/// Addresses of systemd-resolved's local stub listeners; they forward, they do not resolve.
const RESOLVED_STUBS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 54)),
];
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// resolved's list of its real upstream servers, in resolv.conf syntax.
const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dns {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
    /// `resolv.conf` or `systemd-resolved`; `None` when nothing was found.
    pub source: Option<String>,
}

pub fn inspect(root: &SysRoot) -> Dns {
    let Some(conf) = root.read_string(RESOLV_CONF).map(|t| parse(&t)) else {
        return Dns::default();
    };
    if !conf.servers.iter().any(|s| RESOLVED_STUBS.contains(s)) {
        return Dns {
            source: (!conf.servers.is_empty()).then(|| "resolv.conf".to_string()),
            ..conf
        };
    }
    let upstream = root
        .read_string(RESOLVED_UPSTREAMS)
        .map(|t| parse(&t))
        .unwrap_or_default();
    if upstream.servers.is_empty() {
        tracing::warn!(
            "{RESOLV_CONF} points at the systemd-resolved stub but {RESOLVED_UPSTREAMS} lists no servers"
        );
    }
    Dns {
        servers: upstream.servers,
        search: if upstream.search.is_empty() {
            conf.search
        } else {
            upstream.search
        },
        source: Some("systemd-resolved".to_string()),
    }
}

/// `nameserver` and `search` lines of resolv.conf(5); the last `search`/`domain` line wins.
/// A scoped link-local server (`fe80::1%eth0`) is left out: interface names change after kexec.
fn parse(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => dns
                .servers
                .extend(words.next().and_then(|w| w.parse::<IpAddr>().ok())),
            Some("search" | "domain") => dns.search = words.map(str::to_string).collect(),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_lines() {
        let dns = parse("# c\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch a.example b\noptions edns0\nnameserver\n");
        assert_eq!(dns.servers, [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))]);
        assert_eq!(dns.search, ["a.example", "b"]);
    }
}
