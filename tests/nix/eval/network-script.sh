#!/usr/bin/env bash
# Runs the installer's nixos-lift-network script (its text as the installer module renders it,
# with the real nixpkgs lib) on a handoff, with /run and /etc moved under a scratch root and
# a recording double for systemctl. It must write the handoff's resolvers, without loopback
# ones, for systemd-resolved, make the running resolved re-read them, and add the MTU drop-in.
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
grep -qx 'MTUBytes=9000' "$root/etc/systemd/network/00-eth0.network.d/50-nixos-lift-mtu.conf" ||
    fail "no MTU drop-in for eth0"
echo "eval: installer network script: resolvers $got, resolved reloaded, MTU 9000 on eth0"
