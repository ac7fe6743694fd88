#!/usr/bin/env bash
# Network facts read for real: a network namespace with veth links carrying a static IPv4
# address and default route, a static IPv6 /64 with an on-link fe80::1 default gateway, a
# DHCP-style address (finite lifetimes, so the kernel does not mark it permanent and `ip`
# prints `dynamic`), a `proto dhcp` route, an IPv4 route via an IPv6 gateway, and a
# systemd-resolved stub resolv.conf whose real upstreams live in /run/systemd/resolve.
# `nixos-lift detect` runs inside it (as root and as nobody) and the JSON is checked with jq.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"

if [ "$(id -u)" -ne 0 ]; then
    [ "${CI:-}" = "true" ] && { echo "20-netns: needs root (ip netns)" >&2; exit 1; }
    echo "20-netns: SKIPPED, needs root (ip netns)"
    exit 0
fi
need_apt iproute2 jq util-linux
cargo build --quiet
bin=$(agent_bin)

ns="nixos-lift-test-$$"
work=$(mktemp -d)
cleanup() {
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns" "$work"
}
trap cleanup EXIT

ip netns add "$ns"
nsip() { ip -n "$ns" "$@"; }
nsip link set lo up
nsip link add eth0 type veth peer name peer0
nsip link add eth1 type veth peer name peer1
nsip link set eth0 mtu 1450
for link in eth0 peer0 eth1 peer1; do nsip link set "$link" up; done
# Static IPv4 with a static default route.
nsip addr add 192.0.2.10/24 dev eth0
nsip route add default via 192.0.2.1 dev eth0 proto static metric 50
# Static IPv6 /64; the default gateway is the on-link fe80::1, as on Hetzner.
nsip addr add 2001:db8:10::10/64 dev eth0 nodad
nsip -6 route add default via fe80::1 dev eth0 onlink metric 1024
# A DHCP lease: finite lifetimes, and a route installed by the DHCP client.
nsip addr add 198.51.100.20/24 dev eth1 valid_lft 3600 preferred_lft 1800
nsip route add 203.0.113.0/24 via 198.51.100.1 dev eth1 proto dhcp metric 100
# IPv4 via an IPv6 next hop (RFC 5549).
nsip route add 10.99.0.0/16 via inet6 fe80::2 dev eth0

# `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf.
mkdir -p "/etc/netns/$ns"
printf 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch stub.example\n' >"/etc/netns/$ns/resolv.conf"
printf 'nameserver 192.0.2.53\nnameserver 2001:db8:10::53\nsearch corp.example\n' >"$work/upstream.conf"

# resolved's upstream list goes in a private mount namespace, over a tmpfs /run, so the
# host's /run is never touched.
detect_in_ns() {
    ip netns exec "$ns" unshare -m --propagation private sh -ec '
        mount -t tmpfs tmpfs /run
        mkdir -p /run/systemd/resolve
        cp "$1" /run/systemd/resolve/resolv.conf
        shift
        exec "$@"
    ' sh "$work/upstream.conf" "$@" detect --format json
}

detect_in_ns "$bin" >"$work/root.json"
detect_in_ns setpriv --reuid=65534 --regid=65534 --clear-groups "$bin" >"$work/nobody.json"
ip netns exec "$ns" "$bin" -q detect --format json >"$work/stub-only.json"

check() {
    local file=$1 what=$2 filter=$3
    if jq -e "$filter" "$file" >/dev/null; then
        echo "ok   $what ($(basename "$file"))"
    else
        echo "FAIL $what ($(basename "$file")): $filter" >&2
        jq '.network' "$file" >&2
        exit 1
    fi
}
addr() { echo ".network.interfaces[] | select(.name == \"$1\") | .addresses[] | select(.address == \"$2\")"; }
route() { echo ".network.routes[] | select(.family == \"$1\" and .dst == \"$2\")"; }

for f in "$work/root.json" "$work/nobody.json"; do
    check "$f" "eth0 is a virtual ether link, up, mtu 1450" \
        '.network.interfaces[] | select(.name == "eth0") | .link_type == "ether" and .state == "up" and .mtu == 1450 and .physical == false and (.mac | test("^([0-9a-f]{2}:){5}[0-9a-f]{2}$"))'
    check "$f" "static IPv4 is not dynamic and lives forever" \
        "$(addr eth0 192.0.2.10) | .family == \"inet\" and .prefix_len == 24 and .scope == \"global\" and .dynamic == false and .valid_lifetime == 4294967295"
    check "$f" "static IPv6 /64" \
        "$(addr eth0 2001:db8:10::10) | .family == \"inet6\" and .prefix_len == 64 and .dynamic == false"
    check "$f" "the DHCP-style address is dynamic with finite lifetimes" \
        "$(addr eth1 198.51.100.20) | .dynamic == true and .valid_lifetime <= 3600 and .valid_lifetime > 3000 and .preferred_lifetime <= 1800"
    check "$f" "static IPv4 default route" \
        "$(route inet default) | .gateway == \"192.0.2.1\" and .dev == \"eth0\" and .protocol == \"static\" and .metric == 50 and .onlink == false"
    check "$f" "IPv6 default via on-link fe80::1" \
        "$(route inet6 default) | .gateway == \"fe80::1\" and .onlink == true and .dev == \"eth0\" and .metric == 1024"
    check "$f" "DHCP route keeps its protocol and metric" \
        "$(route inet 203.0.113.0/24) | .gateway == \"198.51.100.1\" and .protocol == \"dhcp\" and .metric == 100"
    check "$f" "IPv4 route via an IPv6 gateway" \
        "$(route inet 10.99.0.0/16) | .gateway == \"fe80::2\" and .gateway_family == \"inet6\""
    check "$f" "connected route from the kernel" \
        "$(route inet 192.0.2.0/24) | .protocol == \"kernel\" and .scope == \"link\" and .gateway == null"
    check "$f" "DNS is resolved's upstreams, not the stub" \
        '.network.dns == ["192.0.2.53", "2001:db8:10::53"] and .network.dns_source == "systemd-resolved" and .network.dns_search == ["corp.example"]'
done
check "$work/stub-only.json" "a stub without upstreams reports no servers, never 127.0.0.53" \
    '.network.dns == [] and .network.dns_source == "systemd-resolved"'
echo "20-netns: all checks passed"
