#!/usr/bin/env bash
# Wiring checks: flake.nix and the template evaluated against stand-in inputs (standins/), with
# Nix 2.26 offline. They prove input names and follows line up, every output exists, every
# module file the outputs reach exists and parses, and nix/package.nix finds Cargo.toml and
# Cargo.lock. They do NOT evaluate NixOS: no option, type or nixpkgs attribute is checked.
# Usage: wiring.sh WORKDIR (with nix26 exported by tests/suite/50-nix.sh)
set -euo pipefail
work=$1
repo=$(git rev-parse --show-toplevel)
standins="$repo/tests/nix/standins"
log="$work/wiring.log"

# The stand-ins must be flakes in their own right: copy them out of the repository's git tree.
cp -r "$standins" "$work/standins"
overrides=(
    --override-input nixpkgs "path:$work/standins/nixpkgs"
    --override-input disko "path:$work/standins/disko"
    --override-input nixos-images "path:$work/standins/nixos-images"
)
flake="git+file://$repo"

# fnix flake metadata|eval ARGS...: Nix offline, never writing a lock file into the repository.
fnix() {
    local cmd=("$1")
    shift
    if [ "${cmd[0]}" = flake ]; then
        cmd+=("$1")
        shift
    fi
    nix26 nix --offline "${cmd[@]}" --no-write-lock-file "$@" 2>>"$log"
}
fail() {
    echo "wiring check failed: $*" >&2
    tail -n 30 "$log" >&2
    exit 1
}

fnix flake metadata "${overrides[@]}" "$flake" >/dev/null || fail "flake metadata"
# Nix only warns when a follows names an input the dependency does not have.
if grep -qi "non-existent input" "$log"; then fail "a follows names an input that does not exist"; fi

expect_json() {
    local what=$1 apply=$2 want=$3 got
    got=$(fnix eval --json "${overrides[@]}" "$flake#$what" --apply "$apply") || fail "$what"
    [ "$got" = "$want" ] || fail "$what: got $got, want $want"
    echo "wiring: $what ok"
}
names='x: builtins.attrNames x'
expect_json packages "$names" '["aarch64-linux","x86_64-linux"]'
for system in x86_64-linux aarch64-linux; do
    expect_json "packages.$system" "$names" '["default","installer","nixos-lift"]'
    expect_json "packages.$system.nixos-lift" 'p: [p.pname p.version p.standin]' \
        "[\"nixos-lift\",\"$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -1)\",\"buildRustPackage\"]"
    expect_json "packages.$system.installer" 'i: map baseNameOf i.moduleFiles' \
        '["kexec-installer.nix","noninteractive.nix","installer","lean.nix"]'
    expect_json "checks.$system" 'c: builtins.length (builtins.attrNames c) > 3' 'true'
    # The size check measures this system's installer against nix/installer/budget.nix.
    expect_json "checks.$system.installer-size" \
        'c: [c.name c.env.installer.standin (c.env.budgetBytes == c.env.initrdMiB * 1048576)]' \
        '["installer-size","nixosLiftInstaller",true]'
    expect_json "devShells.$system" "$names" '["default"]'
done
expect_json nixosModules "$names" '["cloud","default","disk-basic","disk-lvm","facts","update"]'
expect_json nixosConfigurations "$names" '["cloud-aarch64","cloud-lvm-aarch64","cloud-lvm-x86_64","cloud-x86_64"]'
# Module files reached from each configuration, relative to the flake's root (stand-in files
# keep their stand-in names).
modules_of() {
    fnix eval --json "${overrides[@]}" "$flake#nixosConfigurations.$1" \
        --apply 'c: map baseNameOf c.standin.moduleFiles' || fail "nixosConfigurations.$1"
}
for name in cloud-x86_64 cloud-aarch64; do
    [ "$(modules_of "$name")" = '["modules","cloud.nix","facts.nix","options.nix","update.nix","module.nix","basic.nix","boot.nix"]' ] ||
        fail "$name reaches $(modules_of "$name")"
    echo "wiring: nixosConfigurations.$name modules ok"
done
for name in cloud-lvm-x86_64 cloud-lvm-aarch64; do
    [ "$(modules_of "$name")" = '["modules","cloud.nix","facts.nix","options.nix","update.nix","module.nix","lvm.nix","boot.nix"]' ] ||
        fail "$name reaches $(modules_of "$name")"
    echo "wiring: nixosConfigurations.$name modules ok"
done
path=$(fnix eval --raw "${overrides[@]}" "$flake#templates.default.path") || fail "templates.default.path"
[ -f "$path/flake.nix" ] && [ -f "$path/README.md" ] || fail "templates.default.path has no flake.nix or README.md"
echo "wiring: templates.default ok"

# The template, with nixos-lift itself as its input.
cp -r "$repo/nix/templates/default" "$work/template"
template_overrides=(
    --override-input nixpkgs "path:$work/standins/nixpkgs"
    --override-input nixos-lift "$flake"
    --override-input nixos-lift/disko "path:$work/standins/disko"
    --override-input nixos-lift/nixos-images "path:$work/standins/nixos-images"
)
fnix flake metadata "${template_overrides[@]}" "path:$work/template" >/dev/null || fail "template flake metadata"
if grep -qi "non-existent input" "$log"; then fail "the template's follows names an input that does not exist"; fi
got=$(fnix eval --json "${template_overrides[@]}" "path:$work/template#nixosConfigurations.web" \
    --apply 'c: map baseNameOf c.standin.moduleFiles') || fail "template nixosConfigurations.web"
[ "$got" = '["modules","cloud.nix","facts.nix","options.nix","update.nix","module.nix","basic.nix","boot.nix","configuration.nix"]' ] ||
    fail "template reaches $got"
echo "wiring: template nixosConfigurations.web modules ok"
