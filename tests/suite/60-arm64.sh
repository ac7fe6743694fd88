#!/usr/bin/env bash
# arm64 (issue 9): the static aarch64 agent cross-builds from this checkout's Cargo.lock, the
# arm64 guest pieces of the simulated cloud (kernel, busybox, static kexec, QEMU) are prepared,
# and the arm64 scenarios run it on an emulated arm64 VM (`tests/vm/takeover.sh --arch aarch64
# all`).
#
# The cross build uses the `cross-check` profile (release without LTO) to fit CI's time budget;
# `packaging/build-aarch64.sh` with no option builds the shipped (LTO) binary from the same code.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"
need_apt file

fails=0
ok() { echo "60-arm64: ok   $*"; }
bad() {
    echo "60-arm64: FAIL $*"
    fails=$((fails + 1))
}

start=$(date +%s)
bin=$(bash packaging/build-aarch64.sh --profile "${ARM64_PROFILE:-cross-check}")
echo "60-arm64: cross build took $(( $(date +%s) - start )) s: $bin ($(stat -c %s "$bin") bytes)"
desc=$(file -b "$bin")
echo "60-arm64: file: $desc"
case $desc in *"ELF 64-bit LSB"*"ARM aarch64"*) ok "the binary is a 64-bit aarch64 ELF" ;; *) bad "not an aarch64 ELF" ;; esac
case $desc in *"statically linked"*) ok "the binary is statically linked" ;; *) bad "not statically linked" ;; esac
# A static glibc binary has no program interpreter; a dynamic one names ld-linux-aarch64.
if aarch64-linux-gnu-readelf -l "$bin" | grep -q 'INTERP'; then bad "the binary asks for a dynamic loader"; else ok "no dynamic loader (no PT_INTERP)"; fi
if aarch64-linux-gnu-readelf -d "$bin" 2>/dev/null | grep -q 'NEEDED'; then bad "the binary needs shared libraries"; else ok "no shared libraries needed"; fi

start=$(date +%s)
env_file=$(bash tests/vm/aarch64-assets.sh)
echo "60-arm64: arm64 guest assets ready in $(( $(date +%s) - start )) s ($env_file)"
# shellcheck source=/dev/null
. "$env_file"
case $(file -b "$AARCH64_KEXEC") in *"ARM aarch64"*"statically linked"*) ok "static arm64 kexec built from Debian's kexec-tools" ;; *) bad "kexec is not a static arm64 binary" ;; esac
case $(file -b "$AARCH64_IMAGE") in *"ARM64"*"boot executable Image"*) ok "the arm64 kernel is an uncompressed Image ($AARCH64_KVER)" ;; *) bad "the arm64 kernel is not an uncompressed Image" ;; esac

if version=$("$AARCH64_QEMU_USER" "$bin" --version 2>&1); then ok "the aarch64 binary runs (qemu-user): $version"; else bad "the aarch64 binary does not run under qemu-user: $version"; fi

[ "$fails" = 0 ] || { echo "60-arm64: $fails check(s) failed"; exit 1; }

start=$(date +%s)
rc=0
bash tests/vm/takeover.sh --arch aarch64 -q all || rc=$?
echo "60-arm64: arm64 scenarios took $(( $(date +%s) - start )) s (exit $rc)"
exit "$rc"
