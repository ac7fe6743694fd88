#!/usr/bin/env bash
# Builds the static nixos-lift binary (glibc crt-static, rustls: no shared libraries needed)
# and prints its path on stdout.
#
#   packaging/build-static.sh [--release|--debug]     default: --release
#
# The explicit --target keeps RUSTFLAGS away from build scripts and proc macros, and gives
# the static build its own directory next to the ordinary debug build.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
case "${1:-}" in
    "" | --release) profile=release ;;
    --debug) profile=debug ;;
    *)
        echo "usage: packaging/build-static.sh [--release|--debug]" >&2
        exit 2
        ;;
esac

target=x86_64-unknown-linux-gnu
args=(build --quiet --locked --target "$target")
[ "$profile" = release ] && args+=(--release)
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo "${args[@]}" >&2

bin="${CARGO_TARGET_DIR:-$PWD/target}/$target/$profile/nixos-lift"
[ -x "$bin" ] || { echo "packaging/build-static.sh: $bin was not built" >&2; exit 1; }
echo "$bin"
