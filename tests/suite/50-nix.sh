#!/usr/bin/env bash
# The Nix half, as far as it can be checked without nixpkgs (see the README's Nix section):
#   1. every .nix file parses (nix-instantiate --parse)
#   2. nixpkgs-fmt --check and deadnix --fail
#   3. the plain-Nix helpers (nix/lib) evaluated on facts.json files that the Rust agent writes
#      from tests/fixtures/hosts/*, cross-checked against the same files with jq
#   4. wiring checks of flake.nix and the template with stand-in inputs (tests/nix/standins):
#      input names, follows, module files; NOT an evaluation of NixOS
#   5. the Rust/Nix contract test with Nix's own reading of nix/lib/contract.nix
#   6. the modules, both layouts (x86_64/aarch64, with/without facts), the installer module and
#      stage 2's generated module evaluated with the REAL nixpkgs lib, disko and nixos-images
#      from ../shared/upstream over stand-in NixOS options (tests/nix/eval); NOT all of NixOS
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"

need_apt nix-bin mmdebstrap jq git
need_cargo_tool nixpkgs-fmt nixpkgs-fmt 1.3.0
need_cargo_tool deadnix deadnix 1.3.1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mapfile -t nix_files < <(git ls-files --cached --others --exclude-standard -- '*.nix')
[ ${#nix_files[@]} -gt 0 ] || { echo "no .nix files found" >&2; exit 1; }

echo "--- parse (${#nix_files[@]} files)"
for f in "${nix_files[@]}"; do
    NIX_CONFIG="build-users-group =" nix-instantiate --parse "$f" >/dev/null ||
        { echo "parse error: $f" >&2; exit 1; }
done

echo "--- nixpkgs-fmt --check"
nixpkgs-fmt --check "${nix_files[@]}"

echo "--- deadnix --fail"
deadnix --fail "${nix_files[@]}"

ensure_nix26_tree
export -f nix26
# A throwaway store and state: the checks only evaluate, and the host's /nix stays untouched.
export NIX_STORE_DIR="$work/store" NIX_STATE_DIR="$work/state" NIX_LOG_DIR="$work/log"
export NIX_CONF_DIR="$work/etc" XDG_CACHE_HOME="$work/cache" NIX26_HOME="$work/home"
mkdir -p "$NIX_CONF_DIR" "$NIX26_HOME"
export NIX_CONFIG=$'experimental-features = nix-command flakes\nsandbox = false\nbuild-users-group =\nwarn-dirty = false'
nix26 nix --version

echo "--- plain-Nix helpers on facts.json written by the agent"
cargo build --quiet
agent=$(agent_bin)
shopt -s nullglob
fixtures=(tests/fixtures/hosts/*/)
shopt -u nullglob
[ ${#fixtures[@]} -gt 0 ] || { echo "no host fixtures under tests/fixtures/hosts: nothing to check the helpers on" >&2; exit 1; }
for fixture in "${fixtures[@]}"; do
    name=$(basename "$fixture")
    facts="$work/$name.facts.json"
    "$agent" detect --root "$fixture" --format json > "$facts"
    bash tests/nix/check-helpers.sh "$facts" "$name"
done
# The sample the flake's eval checks use (it has a `cloud` part, which detect on a fixture
# lacks); nix_contract.rs proves it round-trips through the Rust schema.
bash tests/nix/check-helpers.sh nix/tests/facts-sample.json facts-sample

echo "--- helper unit checks (LVM sizing, consoles, manifest)"
nix26 nix eval --offline --json --file tests/nix/lib-checks.nix >/dev/null

echo "--- wiring checks (stand-in inputs, not an evaluation of NixOS)"
bash tests/nix/wiring.sh "$work"

echo "--- Rust/Nix contract (Nix's reading of nix/lib/contract.nix)"
nix26 nix eval --offline --json --file nix/lib/contract.nix > "$work/contract.json"
NIXOS_LIFT_NIX_CONTRACT_JSON="$work/contract.json" cargo test --quiet --test nix_contract 2>&1

echo "--- evaluation with the real nixpkgs lib, disko and nixos-images (stand-in NixOS options)"
bash tests/nix/eval/run.sh "$work"
