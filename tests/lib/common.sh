# Shared helpers for the test suites: idempotent installs and small assertions.
# Source it; it does not change shell options of the caller.
# shellcheck shell=bash

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export REPO_ROOT

_apt_updated=""
# need_apt PKG...: install Debian packages that are missing (idempotent).
need_apt() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ -z "$_apt_updated" ]; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# need_cargo_tool BIN CRATE VERSION: `cargo install --locked` unless BIN is already that version.
need_cargo_tool() {
    local bin=$1 crate=$2 version=$3
    if command -v "$bin" >/dev/null 2>&1 && "$bin" --version 2>/dev/null | grep -q "$version"; then
        return 0
    fi
    cargo install --quiet --locked "$crate@$version"
}

# The debug build of the agent, built once per suite.
agent_bin() {
    echo "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/nixos-lift"
}

# ensure_nix26_tree: Nix 2.26 from Debian trixie in its own tree (bookworm's 2.8 has no usable
# flakes), bootstrapped with mmdebstrap (need_apt mmdebstrap first) and cached by recipe in
# NIXOS_LIFT_TEST_CACHE, so CI machines that keep /var/cache build it once. Sets NIX26_TREE.
ensure_nix26_tree() {
    local suite=trixie mirror=http://deb.debian.org/debian recipe cache tree
    recipe="mmdebstrap --variant=apt --include=nix-bin $suite TARGET $mirror"
    cache=${NIXOS_LIFT_TEST_CACHE:-/var/cache/nixos-lift-tests}
    tree="$cache/nix-trixie-$(printf '%s' "$recipe" | sha256sum | cut -c1-16)"
    if [ ! -x "$tree/usr/bin/nix" ]; then
        echo "--- bootstrapping Nix 2.26 into $tree"
        mkdir -p "$cache"
        rm -rf "$tree.tmp"
        mmdebstrap --quiet --variant=apt --include=nix-bin "$suite" "$tree.tmp" "$mirror" >/dev/null
        rm -rf "$tree"
        mv "$tree.tmp" "$tree"
    fi
    export NIX26_TREE=$tree
}

# nix26 PERSONALITY ARGS...: runs NIX26_TREE's Nix 2.26 (which picks nix, nix-env or
# nix-instantiate from argv[0]) with the tree's own libraries, HOME=$NIX26_HOME.
nix26() {
    local name=$1
    shift
    HOME="$NIX26_HOME" "$NIX26_TREE/lib64/ld-linux-x86-64.so.2" \
        --library-path "$NIX26_TREE/usr/lib/x86_64-linux-gnu:$NIX26_TREE/lib/x86_64-linux-gnu" \
        --argv0 "$name" "$NIX26_TREE/usr/bin/nix" "$@"
}
