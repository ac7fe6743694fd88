#!/usr/bin/env bash
# Evaluates nix/lib's fromFacts on one facts.json and checks the result against the same file
# read independently with jq. Usage: check-helpers.sh FACTS.json LABEL (nix26 exported).
set -euo pipefail
facts=$(realpath "$1")
label=$2
repo=$(git rev-parse --show-toplevel)

out=$(nix26 nix eval --offline --impure --json --expr \
    "let h = import $repo/nix/lib; in h.fromFacts (h.readFacts $facts)") ||
    { echo "helpers: fromFacts failed on $label" >&2; exit 1; }

check() {
    local what=$1 filter=$2
    if ! jq -e --argjson out "$out" "$filter" "$facts" >/dev/null; then
        echo "helpers: $label: $what does not match the facts" >&2
        echo "nix: $out" >&2
        exit 1
    fi
}

check system '$out.system == (.host.arch + "-linux")'
check firmware '$out.firmware == .host.firmware'
check provider '$out.provider == (.cloud.provider // null)'
check sshKeys '$out.sshKeys == (.cloud.ssh_keys // [])'
check hostName '
  (.cloud.hostname // null | if . == null then null else (split(".")[0] | ascii_downcase) end) as $h
  | if $h != null and ($h | test("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")) and ($h | length) <= 63
    then $out.hostName == $h else $out.hostName == null end'
check disk '
  ([.disks[] | select(.holds_root)] | first) as $root
  | ([.disks[] | select((.removable | not) and (.read_only | not))]) as $eligible
  | (if $root != null then $root elif ($eligible | length) == 1 then $eligible[0] else null end) as $d
  | if $d == null then $out.disk == null
    else $out.disk.device == ($d.by_id[0] // $d.path) and $out.disk.path == $d.path end'
check nameservers '([.network.dns[] | select(startswith("127.") or . == "::1" | not)] - $out.nameservers) == [] and ($out.nameservers | all(startswith("127.") or . == "::1" | not))'
check networks '
  [.network.interfaces[] | select(.link_type == "ether" and .mac != null and .physical)] as $ifs
  | ($out.networks | length) == ($ifs | length)
    and all($ifs[];
      . as $iface
      | $out.networks["10-nixos-lift-" + $iface.name] as $n
      | ([$ifs[] | select((.mac | ascii_downcase) == ($iface.mac | ascii_downcase))] | length > 1) as $shared
      | $n != null
        and $n.matchConfig.MACAddress == ($iface.mac | ascii_downcase)
        and (if $shared and $iface.driver != null then $n.matchConfig.Driver == $iface.driver else $n.matchConfig.Driver == null end)
      | if $shared and ($iface.driver | IN("mlx4_core", "mlx5_core", "mana"))
        then $n.linkConfig.Unmanaged == true and $n.networkConfig == null
        else $n.networkConfig.DHCP == "yes"
        and ([$iface.addresses[] | select((.dynamic | not) and .scope == "global") | "\(.address)/\(.prefix_len)"]
             - ($n.address // [])) == []
        and (if $iface.mtu != 1500 then $n.linkConfig.MTUBytes == ($iface.mtu | tostring) else true end)
        end)'
check staticRoutes '
  [.network.interfaces[] | select(.link_type == "ether" and .mac != null and .physical) | .name] as $devs
  | all(.network.routes[] | select(.dev != null and (.dev | IN($devs[])) and (.protocol | IN("dhcp","kernel","ra") | not));
    . as $r
    | ($out.networks["10-nixos-lift-" + $r.dev].routes // [])
    | any(.Gateway == $r.gateway and ((.Destination // "default") == $r.dst or ($r.dst == "default" and .Destination == "0.0.0.0/0"))))'
echo "helpers: $label ok ($(jq -r '.disks | length' "$facts") disks, $(jq -r '.network.interfaces | length' "$facts") interfaces)"
