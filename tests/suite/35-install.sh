#!/usr/bin/env bash
# Stage 2 (`nixos-lift install`) on this host, without touching its disks or network:
# 1. The rehearsal tests (tests/install_rehearsal.rs) with Debian's nix-instantiate present,
#    so the generated wrapper flake and facts module must parse.
# 2. Network restore for real: a network namespace whose NIC has a different name than in the
#    plan's network (matched by MAC) gets a static IPv4 with an onlink gateway outside its subnet, a
#    static IPv6 with the link-local default gateway fe80::1, an IPv4 route via that IPv6
#    gateway and MTU 1400; `ip -j` must show them, resolv.conf must hold the handoff's
#    resolvers, and the wait for the flake's host must succeed through the onlink default
#    route (an HTTP server on the peer side, reachable only through it) and fail, naming the
#    host, when that host is down.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"

need_apt nix-bin jq iproute2 python3
NIXOS_LIFT_REQUIRE_NIX=1 cargo test --quiet --test install_rehearsal 2>&1

if [ "$(id -u)" -ne 0 ]; then
    [ "${CI:-}" = "true" ] && { echo "35-install: needs root (ip netns)" >&2; exit 1; }
    echo "35-install: network part SKIPPED, needs root (ip netns)"
    exit 0
fi
cargo build --quiet
bin=$(agent_bin)

ns="lift-s2-$$"
peer="lift-s2p-$$"
work=$(mktemp -d)
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    ip netns del "$peer" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$ns"
ip netns add "$peer"
ip -n "$ns" link set lo up
ip -n "$peer" link set lo up
# The installer's NIC: named enp0s9 here, ens3 in the handoff; same MAC. Down, no addresses.
ip -n "$ns" link add enp0s9 address 02:00:5e:00:53:02 type veth peer name gw0 netns "$peer"
ip -n "$peer" link set gw0 up
# The peer is the gateway: 10.99.1.1 (outside the installer's /24, so only onlink reaches
# it), fe80::1, and a "flake host" 10.99.5.5 behind it.
ip -n "$peer" addr add 10.99.0.1/24 dev gw0
ip -n "$peer" addr add 10.99.1.1/32 dev gw0
ip -n "$peer" addr add fe80::1/64 dev gw0 nodad
ip -n "$peer" addr add 2001:db8:99::1/64 dev gw0 nodad
ip -n "$peer" addr add 10.99.5.5/32 dev lo
ip -n "$peer" route add 10.99.0.0/16 dev gw0
ip netns exec "$peer" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.gw0.rp_filter=0

mkdir -p "$work/root/etc" "$work/root/proc/self" "$work/handoff"
printf 'rootfs / rootfs rw 0 0\n' >"$work/root/proc/self/mounts"
printf 'nameserver 127.0.0.53\n' >"$work/root/etc/resolv.conf"
: >"$work/console"
: >"$work/kmsg"

port=18099
# The schema version stage 2 accepts, from the source, so the fixture follows a bump.
plan_version=$(sed -n 's/^pub const PLAN_VERSION: u32 = \([0-9]*\);/\1/p' src/plan/mod.rs)
write_handoff() { # FLAKE_URL
    jq -n --arg url "$1" --argjson version "$plan_version" '{
      version: $version, agent_version: "test", arch: "x86_64", firmware: "bios",
      provider: "digitalocean", instance_id: "netns-1", hostname: "netns",
      target: null, other_disks: [],
      flake: { reference: ($url + "#web"), url: $url, attr: "web" },
      system: null, installer: { url: "file:///x", sha256: null }, kernel_cmdline: null,
      guards: [], nix: { substituters: [], trusted_public_keys: [] },
      report: { webhook_url: null }, ssh_authorized_keys: [], reboot: false,
      keep_host_keys: false,
      network: {
        # What stage 1 plans from ens3 (static addresses, an onlink IPv4 default outside the
        # /24, an IPv4 route via the IPv6 link-local gateway, that gateway as IPv6 default; the
        # kernel prefix route left out) and the metadata (MTU 1400, a second resolver).
        interfaces: [{
          mac: "02:00:5e:00:53:02", name: "ens3", driver: null, unmanaged: false, dhcp: false,
          addresses: ["10.99.0.2/24", "2001:db8:99::2/64"],
          routes: [
            { family: "inet", destination: null, gateway: "10.99.1.1", onlink: true, metric: null },
            { family: "inet", destination: "10.99.6.0/24", gateway: "fe80::1", onlink: false, metric: null },
            { family: "inet6", destination: null, gateway: "fe80::1", onlink: false, metric: 1024 }
          ],
          mtu: 1400 }],
        nameservers: ["10.99.0.53", "2001:db8:99::53"],
        search: ["example.internal"] } }' >"$work/handoff/plan.json"
    jq -n '{ version: 1,
      host: { arch: "x86_64", kernel_release: null, firmware: "bios", secure_boot: null,
        lockdown: null, kexec_load_disabled: null, kexec_allowed: true, container: null,
        hypervisor: null, memory_bytes: 0, memory_available_bytes: 0, cpu_count: 1,
        os: { id: null, version_id: null, pretty_name: null }, systemd: false },
      dmi: {}, disks: [], network: { interfaces: [], routes: [], dns: [], dns_search: [] } }' \
        >"$work/handoff/facts.json"
}

install_network() {
    ip netns exec "$ns" "$bin" install --handoff "$work/handoff" --root "$work/root" \
        --console "$work/console" --kmsg "$work/kmsg" --stop-after network --network-timeout 6
}

# The "flake host": an HTTP server on 10.99.5.5, reachable only through the onlink default.
ip netns exec "$peer" python3 -m http.server --bind 10.99.5.5 "$port" >/dev/null 2>&1 &
server_pid=$!
for _ in $(seq 50); do
    ip netns exec "$peer" bash -c "exec 3<>/dev/tcp/10.99.5.5/$port" 2>/dev/null && break
    sleep 0.1
done

write_handoff "git+http://10.99.5.5:$port/fleet.git"
install_network

addr=$(ip -n "$ns" -j addr show dev enp0s9)
jq -e '.[0].mtu == 1400 and (.[0].flags | index("UP"))' <<<"$addr" >/dev/null ||
    { echo "link not up with mtu 1400: $addr" >&2; exit 1; }
jq -e '[.[0].addr_info[] | select(.family == "inet" and .local == "10.99.0.2" and .prefixlen == 24)] | length == 1' \
    <<<"$addr" >/dev/null || { echo "static IPv4 missing: $addr" >&2; exit 1; }
jq -e '[.[0].addr_info[] | select(.family == "inet6" and .local == "2001:db8:99::2" and .prefixlen == 64)] | length == 1' \
    <<<"$addr" >/dev/null || { echo "static IPv6 missing: $addr" >&2; exit 1; }
r4=$(ip -n "$ns" -j -4 route show)
jq -e '[.[] | select(.dst == "default" and .gateway == "10.99.1.1" and .dev == "enp0s9" and (.flags | index("onlink")))] | length == 1' \
    <<<"$r4" >/dev/null || { echo "onlink IPv4 default missing: $r4" >&2; exit 1; }
jq -e '[.[] | select(.dst == "10.99.6.0/24" and .via.family == "inet6" and .via.host == "fe80::1")] | length == 1' \
    <<<"$r4" >/dev/null || { echo "IPv4 route via IPv6 gateway missing: $r4" >&2; exit 1; }
r6=$(ip -n "$ns" -j -6 route show)
jq -e '[.[] | select(.dst == "default" and .gateway == "fe80::1" and .dev == "enp0s9")] | length == 1' \
    <<<"$r6" >/dev/null || { echo "IPv6 link-local default missing: $r6" >&2; exit 1; }
grep -qx 'nameserver 10.99.0.53' "$work/root/etc/resolv.conf"
grep -qx 'nameserver 2001:db8:99::53' "$work/root/etc/resolv.conf"
grep -qx 'search example.internal' "$work/root/etc/resolv.conf"
grep -q 'nixos-lift: \[2/8\] restoring the network' "$work/console"
grep -q 'network: enp0s9 (02:00:5e:00:53:02, was ens3): 2 address(es), 3 route(s), mtu 1400' "$work/console"
grep -q "network: reachable 10.99.5.5:$port" "$work/console"
# A real fetch through the restored static addresses, not only a TCP handshake.
ip netns exec "$ns" python3 -c "import urllib.request; urllib.request.urlopen('http://10.99.5.5:$port/', timeout=5).read()"

# Running it again is idempotent (addresses and routes are replaced, not duplicated).
install_network
[ "$(ip -n "$ns" -j -4 route show | jq '[.[] | select(.dst == "default")] | length')" = 1 ]

# A flake host that is down: the wait ends by its deadline and names the host.
kill "$server_pid"
wait "$server_pid" 2>/dev/null || true
server_pid=""
: >"$work/console"
start=$(date +%s)
if install_network 2>"$work/stderr"; then
    echo "install succeeded although the flake host is down" >&2
    exit 1
fi
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -le 20 ] || { echo "the network wait overran its 6 s deadline: ${elapsed}s" >&2; exit 1; }
grep -q "INSTALL FAILED in phase network (2/8)" "$work/console"
grep -q "flake 10.99.5.5:$port unreachable" "$work/console"
grep -q "the disk is untouched" "$work/console"
echo "35-install: network restore checked in a network namespace"
