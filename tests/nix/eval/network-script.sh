#!/usr/bin/env bash
# Runs the installer's nixos-lift-network script (its text as the installer module renders it,
# with the real nixpkgs lib) on a handoff, with /run and /etc moved under a scratch root and
# a recording double for systemctl. It must write the handoff's resolvers, without loopback
# ones, for systemd-resolved, make the running resolved re-read them, and write eth0's networkd
# unit as nixos-images' restore-network did (MAC, static addresses, routes) plus the MTU.
# Usage: network-script.sh WORKDIR ARGS... (the --argstr list of run.sh; nix26 exported)
set -euo pipefail
work=$1
shift
repo=$(git rev-parse --show-toplevel)
root="$work/network-root"
rm -rf "$root"
mkdir -p "$root/bin" "$root/run/nixos-lift/handoff"

text=$(nix26 nix-instantiate --eval --strict --raw "$@" --expr \
    "{ nixpkgsLib, disko, nixosImages, wrapper }: ((import $repo/tests/nix/eval { inherit nixpkgsLib disko nixosImages; }).installer \"x86_64-linux\").config.system.build.nixosLiftNetwork.text")

# The handoff: the sample facts with loopback resolvers added and a 9000-byte MTU on eth0.
jq '.network.dns = ["127.0.0.53"] + .network.dns + ["::1"]
    | .network.interfaces |= map(if .name == "eth0" then .mtu = 9000 else . end)' \
    "$repo/nix/tests/facts-sample.json" > "$root/run/nixos-lift/handoff/facts.json"
want_dns=$(jq -r '[.network.dns[], (.cloud.network[]?.dns[]?)] | unique | join(" ")' "$repo/nix/tests/facts-sample.json")

# TEST DOUBLE for systemctl: records its arguments.
cat > "$root/bin/systemctl" <<EOF
#!/bin/sh
echo "\$*" >> "$root/systemctl.calls"
EOF
chmod +x "$root/bin/systemctl"

script=$(sed -e "s|/run/|$root/run/|g" -e "s|/etc/|$root/etc/|g" <<<"$text")
PATH="$root/bin:$PATH" bash -euo pipefail -c "$script" > "$root/out" ||
    { cat "$root/out" >&2; echo "network script: failed" >&2; exit 1; }

fail() { echo "network script: $*" >&2; cat "$root/out" >&2; exit 1; }
conf="$root/run/systemd/resolved.conf.d/50-nixos-lift.conf"
[ -f "$conf" ] || fail "no resolved drop-in"
got=$(sed -n 's/^DNS=//p' "$conf" | tr ' ' '\n' | sed '/^$/d' | sort -u | paste -sd' ')
[ "$got" = "$want_dns" ] || fail "resolvers '$got', want '$want_dns' (no loopback)"
grep -qx 'try-reload-or-restart systemd-resolved.service' "$root/systemctl.calls" 2>/dev/null ||
    fail "systemd-resolved was not asked to re-read its configuration"
# The sample's eth0: two static addresses (the link-local one left to the kernel), a static
# default route per family, and a kernel prefix route that comes back by itself.
unit="$root/etc/systemd/network/00-eth0.network"
[ -f "$unit" ] || fail "no networkd unit for eth0"
want_unit='[Match]
MACAddress=2a:35:8c:91:4e:07
[Link]
MTUBytes=9000
[Network]
DHCP=yes
IPv6AcceptRA=yes
Address=203.0.113.17/20
Address=2001:db8:800::1a/64
[Route]
Gateway=203.0.113.1
[Route]
Gateway=2001:db8:800::1
Metric=1024'
[ "$(cat "$unit")" = "$want_unit" ] || fail "eth0's unit differs:
$(diff <(echo "$want_unit") "$unit")"
[ "$(ls "$root/etc/systemd/network")" = "00-eth0.network" ] || fail "units for other interfaces: $(ls "$root/etc/systemd/network")"
echo "eval: installer network script: resolvers $got, resolved reloaded, eth0's unit with addresses, routes and MTU 9000"
