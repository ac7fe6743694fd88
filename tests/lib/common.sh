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
