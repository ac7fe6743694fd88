#!/usr/bin/env bash
# Cross-builds the static aarch64 nixos-lift (glibc crt-static, rustls) on a Debian 12 x86_64
# machine, from the same Cargo.lock as the x86_64 build, and prints its path on stdout:
#   ${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/<profile>/nixos-lift
# next to packaging/build-static.sh's target/x86_64-unknown-linux-gnu/<profile>/nixos-lift.
#
#   packaging/build-aarch64.sh [--release|--profile NAME]     default: --release
#
# --release is the shipped binary. `--profile cross-check` (Cargo.toml: release without LTO)
# compiles the same code for CI in a fraction of the time.
#
# rustup here has only the x86_64 standard library, so this uses Debian's rustc-web 1.96 and its
# arm64 standard library (libstd-rust-web-dev:arm64) with the cross gcc as linker; ring and
# aws-lc-sys find the cross gcc through CC_aarch64_unknown_linux_gnu. Prerequisites are
# installed when missing (as root; adds the arm64 dpkg architecture only if it is not there).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: packaging/build-aarch64.sh [--release|--profile NAME]" >&2
    exit 2
}
profile=release
while [ $# -gt 0 ]; do
    case "$1" in
        --release) profile=release ;;
        --profile)
            [ $# -ge 2 ] || usage
            profile=$2
            shift
            ;;
        *) usage ;;
    esac
    shift
done

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
packages=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
missing=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "packaging/build-aarch64.sh: missing ${missing[*]}; run as root to install them" >&2; exit 2; }
    apt=(apt-get -o DPkg::Lock::Timeout=600 -qq)
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    echo "packaging/build-aarch64.sh: installing ${missing[*]}" >&2
    "${apt[@]}" update >/dev/null
    DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's compiler for every crate (its arm64 std must match the rustc exactly); cargo may be
# rustup's or Debian's, whichever is first on PATH.
target=aarch64-unknown-linux-gnu
export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
echo "packaging/build-aarch64.sh: $($RUSTC --version), profile $profile" >&2
cargo build --quiet --locked --target "$target" --profile "$profile" >&2

bin="${CARGO_TARGET_DIR:-$PWD/target}/$target/$profile/nixos-lift"
[ -x "$bin" ] || { echo "packaging/build-aarch64.sh: $bin was not built" >&2; exit 1; }
echo "$bin"
