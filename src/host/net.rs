//! Network facts: interfaces, addresses and routes (live over netlink, or from a fixture's
//! network-state file) and DNS.

use super::{dns, netlink, SysRoot};
use crate::facts::NetworkFacts;

/// In a fixture root, the file that stands in for the kernel's live network state: JSON in the
/// shape of `detect`'s `network` object (`interfaces`, `routes`, optionally `dns`).
pub const NETWORK_STATE_FILE: &str = "/network-state.json";

pub fn inspect(root: &SysRoot) -> NetworkFacts {
    let mut facts = if root.is_host() {
        netlink::dump(root).unwrap_or_else(|e| {
            tracing::warn!("reading the network state over netlink: {e}");
            NetworkFacts::default()
        })
    } else {
        from_state_file(root)
    };
    // resolv.conf wins when it names servers; a fixture's state file may carry `dns` instead.
    let resolv = dns::inspect(root);
    if resolv.source.is_some() || facts.dns.is_empty() {
        facts.dns = resolv.servers;
        facts.dns_search = resolv.search;
        facts.dns_source = resolv.source;
    } else {
        facts.dns_source = Some("network-state".to_string());
    }
    facts
}

fn from_state_file(root: &SysRoot) -> NetworkFacts {
    let Some(bytes) = root.read_bytes(NETWORK_STATE_FILE) else {
        tracing::info!("no {NETWORK_STATE_FILE} in the root: network state left empty");
        return NetworkFacts::default();
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!("reading {NETWORK_STATE_FILE}: {e}");
        NetworkFacts::default()
    })
}
