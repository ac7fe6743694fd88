#!/usr/bin/env bash
# Runs the installer's nixos-lift-network script (its text as the installer module renders it,
# with the real nixpkgs lib) with /run and /etc moved under a scratch root and a recording
# double for systemctl:
#   1. on the handoff the agent renders for nix/tests/facts-sample.json (tests/handoff_payload.rs
#      writes it out): the installed networkd units are the handoff's files, byte for byte, the
#      resolved drop-in is the handoff's resolved.conf, and the running resolved re-reads it;
#   2. on a handoff without units or resolvers: nothing installed, no failure (DHCP only);
# and checks that nix/tests/install-sample.json's `network` (the NixOS form the eval checks
# use) is the same plan as the agent's rendering in 1.
# Usage: network-script.sh WORKDIR ARGS... (the --argstr list of run.sh; nix26 exported)
set -euo pipefail
work=$1
shift
repo=$(git rev-parse --show-toplevel)
root="$work/network-root"
handoff="$root/run/nixos-lift/handoff"

fail() { echo "network script: $*" >&2; [ ! -f "$root/out" ] || cat "$root/out" >&2; exit 1; }

text=$(nix26 nix-instantiate --eval --strict --raw "$@" --expr \
    "{ nixpkgsLib, disko, nixosImages, wrapper }: ((import $repo/tests/nix/eval { inherit nixpkgsLib disko nixosImages; }).installer \"x86_64-linux\").config.system.build.nixosLiftNetwork.text")
script=$(sed -e "s|/run/|$root/run/|g" -e "s|/etc/|$root/etc/|g" <<<"$text")

# fresh: an empty scratch root with the systemctl double (TEST DOUBLE: records its arguments).
fresh() {
    rm -rf "$root"
    mkdir -p "$root/bin" "$handoff"
    cat > "$root/bin/systemctl" <<EOF
#!/bin/sh
echo "\$*" >> "$root/systemctl.calls"
EOF
    chmod +x "$root/bin/systemctl"
}
run() {
    PATH="$root/bin:$PATH" bash -euo pipefail -c "$script" > "$root/out" 2>&1 ||
        fail "failed"
}

# 1. The agent's own rendering as the handoff.
fresh
(cd "$repo" && NIXOS_LIFT_HANDOFF_OUT="$handoff" cargo test --quiet --test handoff_payload \
    the_handoff_carries_the_rendered_network >/dev/null 2>&1) ||
    fail "the agent did not write the handoff's network (tests/handoff_payload.rs)"
shopt -s nullglob
rendered=("$handoff"/networkd/*.network)
shopt -u nullglob
[ ${#rendered[@]} -gt 0 ] && [ -f "$handoff/resolved.conf" ] ||
    fail "the agent's handoff has no networkd units or no resolved.conf"
agent="$work/network-agent"
rm -rf "$agent"
cp -a "$handoff" "$agent"
run

units="$root/etc/systemd/network"
[ "$(cd "$units" && ls)" = "$(cd "$handoff/networkd" && ls)" ] ||
    fail "installed units $(ls "$units" | paste -sd' '), the handoff has $(ls "$handoff/networkd" | paste -sd' ')"
for f in "${rendered[@]}"; do
    cmp -s "$f" "$units/$(basename "$f")" || fail "$(basename "$f") differs from the handoff's:
$(diff "$f" "$units/$(basename "$f")")"
done
conf="$root/run/systemd/resolved.conf.d/50-nixos-lift.conf"
[ -f "$conf" ] || fail "no resolved drop-in"
cmp -s "$handoff/resolved.conf" "$conf" || fail "the resolved drop-in differs from the handoff's resolved.conf"
dns=$(sed -n 's/^DNS=//p' "$conf")
[ -n "$dns" ] || fail "the drop-in names no resolvers"
grep -qx 'try-reload-or-restart systemd-resolved.service' "$root/systemctl.calls" 2>/dev/null ||
    fail "systemd-resolved was not asked to re-read its configuration"
grep -qF "resolvers from the handoff: $dns" "$root/out" || fail "the resolvers are not reported"
for f in "${rendered[@]}"; do
    grep -qx "nixos-lift: networkd unit $(basename "$f")" "$root/out" || fail "$(basename "$f") is not reported"
done
echo "eval: installer network script: the agent's ${#rendered[@]} unit(s) installed as rendered, resolvers $dns, resolved reloaded"

# 2. No units and no resolvers (a plan with nothing static): nothing written, DHCP only.
fresh
run
[ -z "$(ls -A "$root/etc/systemd/network")" ] || fail "units without any in the handoff: $(ls "$root/etc/systemd/network")"
[ ! -e "$root/run/systemd/resolved.conf.d/50-nixos-lift.conf" ] || fail "a resolved drop-in without resolvers"
[ ! -e "$root/systemctl.calls" ] || fail "systemctl called without resolvers: $(cat "$root/systemctl.calls")"
grep -q "relying on DHCP" "$root/out" || fail "no word that DHCP is all there is"
echo "eval: installer network script: an empty handoff installs nothing and succeeds"

# 3. install-sample.json's `network` against the agent's rendering of the same sample: each
# unit as INI (booleans yes/no, the keys of a section in any order) and the resolvers.
# normalize: the sections in order, each followed by its sorted lines; comments dropped.
normalize() {
    awk '/^#/ || /^$/ { next } /^\[/ { n++; print n "\t0\t" $0; next } { print n "\t1\t" $0 }' "$1" |
        sort -t "$(printf '\t')" -k1,1n -k2,2n -k3 | cut -f3
}
sample="$repo/nix/tests/install-sample.json"
expected="$work/network-expected"
rm -rf "$expected"
mkdir -p "$expected"
jq -r '
  def val: if . == true then "yes" elif . == false then "no" else tostring end;
  def entries: to_entries[] | "\(.key)=\(.value | val)";
  def section($title; $lines): if ($lines | length) > 0 then "[\($title)]", $lines[] else empty end;
  .network.networks | to_entries[] | .key as $name | .value
  | "\($name)\t" + ([
      section("Match"; [.matchConfig // {} | entries]),
      section("Link"; [.linkConfig // {} | entries]),
      section("Network"; [(.networkConfig // {} | entries), ((.address // [])[] | "Address=\(.)")]),
      ((.routes // [])[] | section("Route"; [entries]))
    ] | join("\\n"))' "$sample" |
    while IFS="$(printf '\t')" read -r name unit; do
        printf '%b\n' "$unit" > "$expected/$name.network"
    done
[ "$(cd "$expected" && ls)" = "$(cd "$agent/networkd" && ls)" ] ||
    fail "install-sample.json has units $(ls "$expected" | paste -sd' '), the agent renders $(ls "$agent/networkd" | paste -sd' ')"
for f in "$agent"/networkd/*.network; do
    diff <(normalize "$expected/$(basename "$f")") <(normalize "$f") >/dev/null ||
        fail "install-sample.json's $(basename "$f" .network) is not what the agent renders:
$(diff <(normalize "$expected/$(basename "$f")") <(normalize "$f"))"
done
want_dns=$(jq -r '.network.nameservers | join(" ")' "$sample")
want_domains=$(jq -r '.network.search | join(" ")' "$sample")
[ "$(sed -n 's/^DNS=//p' "$agent/resolved.conf")" = "$want_dns" ] ||
    fail "install-sample.json's nameservers '$want_dns', the agent renders '$(sed -n 's/^DNS=//p' "$agent/resolved.conf")'"
[ "$(sed -n 's/^Domains=//p' "$agent/resolved.conf")" = "$want_domains" ] ||
    fail "install-sample.json's search '$want_domains' is not the agent's Domains="
echo "eval: nix/tests/install-sample.json's network is the agent's rendering of facts-sample.json"
