#!/usr/bin/env bash
# Evaluates nix/lib's fromFacts on one facts.json and checks the result against the same file
# read independently with jq. The file may be one `nixos-lift detect` wrote or one stage 2
# wrote (with `install`). Usage: check-helpers.sh FACTS.json LABEL (nix26 exported).
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
# Stage 2's `install` record, when the file has one, wins over what the facts observed.
check sshKeys '$out.sshKeys == (.install.authorized_keys // .cloud.ssh_keys // [])'
check hostName '
  (.cloud.hostname // null | if . == null then null else (split(".")[0] | ascii_downcase) end) as $h
  | if .install != null then $out.hostName == .install.hostname
    elif $h != null and ($h | test("^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")) and ($h | length) <= 63
    then $out.hostName == $h else $out.hostName == null end'
check disk '
  ([.disks[] | select(.holds_root)] | first) as $root
  | ([.disks[] | select((.removable | not) and (.read_only | not))]) as $eligible
  | (if $root != null then $root elif ($eligible | length) == 1 then $eligible[0] else null end) as $d
  | if .install != null then $out.disk == { device: .install.disk_device, path: .install.disk_path }
    elif $d == null then $out.disk == null
    else $out.disk.device == ($d.by_id[0] // $d.path) and $out.disk.path == $d.path end'
# The network is the agent's plan (install.network) passed through unchanged; facts from
# `nixos-lift detect` carry none, whatever interfaces, routes and resolvers they observed.
if jq -e '.install.network != null' "$facts" >/dev/null; then
    check networks '$out.networks == .install.network.networks and ($out.networks | length) > 0'
    check nameservers '$out.nameservers == .install.network.nameservers'
    check search '$out.search == .install.network.search'
else
    check networks '$out.networks == {}'
    check nameservers '$out.nameservers == []'
    check search '$out.search == []'
fi
echo "helpers: $label ok ($(jq -r '.disks | length' "$facts") disks, $(jq -r '.network.interfaces | length' "$facts") interfaces)"
