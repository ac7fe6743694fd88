#!/usr/bin/env bash
# Benchmark of stage 1's installer fetch: download + sha256 + unpack of a gzip'd tarball in
# nixos-images' kexec layout, served from loopback, by the static release agent
# (`nixos-lift fetch-installer`) against `curl -s URL | tee >(sha256sum) | tar -xz`.
# Prints the throughput ratio (target >= 0.95) and nixos-lift's peak RSS (target <= 64 MiB),
# the static binary's size, and what the last simulated-cloud run logged about stage 1
# (handoff build time, CPU time without the download, peak RSS). Not a test: run it by hand.
#
#   bash tests/bench/fetch.sh [SIZE_MB] [--keep]     default 450; as root on Debian/Ubuntu
#
# Scratch space: the tarball (~SIZE_MB) in $NIXOS_LIFT_BENCH_DIR (default
# /tmp/nixos-lift-bench), unpacked copies in /dev/shm/nixos-lift-bench (RAM, as in stage 1);
# both are removed on exit unless --keep (then the tarball is reused by the next run).
set -euo pipefail
# shellcheck source=tests/lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"

size_mb=450
keep=""
for arg in "$@"; do
    case "$arg" in
        --keep) keep=1 ;;
        *[!0-9]* | "") echo "usage: bash tests/bench/fetch.sh [SIZE_MB] [--keep]" >&2; exit 2 ;;
        *) size_mb=$arg ;;
    esac
done
[ "$size_mb" -ge 20 ] || { echo "SIZE_MB must be at least 20" >&2; exit 2; }
runs=${BENCH_RUNS:-3}
cache=${NIXOS_LIFT_BENCH_DIR:-/tmp/nixos-lift-bench}
shm=/dev/shm/nixos-lift-bench

need_apt curl time python3 tar gzip coreutils bc
server_pid=""
cleanup() {
    [ -z "$server_pid" ] || kill "$server_pid" 2>/dev/null || true
    rm -rf "$shm"
    [ -n "$keep" ] || rm -rf "$cache"
}
trap cleanup EXIT

# NIXOS_LIFT_BIN: measure this agent instead of building the static release one.
if [ -n "${NIXOS_LIFT_BIN:-}" ]; then
    bin=$NIXOS_LIFT_BIN
else
    echo "building the static release agent (packaging/build-static.sh --release)" >&2
    bin=$(packaging/build-static.sh --release)
fi

# The tarball: nixos-images' members, random (incompressible) so that gzip's output is as
# large as its input, like the real initrd's squashfs.
tarball=$cache/www/installer.tar.gz
if [ ! -s "$tarball" ] || [ "$(cat "$cache/size" 2>/dev/null)" != "$size_mb" ]; then
    rm -rf "$cache"
    mkdir -p "$cache/src/kexec" "$cache/www"
    echo "generating a ${size_mb} MB installer tarball in $cache" >&2
    head -c 12M /dev/urandom >"$cache/src/kexec/bzImage"
    head -c 1M /dev/urandom >"$cache/src/kexec/kexec"
    head -c 1M /dev/urandom >"$cache/src/kexec/ip"
    head -c "$((size_mb - 14))M" /dev/urandom >"$cache/src/kexec/initrd"
    # shellcheck disable=SC2016 # kexec/run's own variables, written literally
    printf '#!/bin/sh\n"$SCRIPT_DIR"/kexec --load "$SCRIPT_DIR"/bzImage --initrd="$SCRIPT_DIR"/initrd --command-line "init=/nix/store/bench-system/init console=ttyS0,115200"\n' \
        >"$cache/src/kexec/run"
    tar -C "$cache/src" -cf - kexec | gzip -1 >"$tarball"
    rm -rf "$cache/src"
    echo "$size_mb" >"$cache/size"
fi
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
bytes=$(stat -c %s "$tarball")

python3 tests/vm/release_server.py --dir "$cache/www" --log "$cache/server.log" \
    --port-file "$cache/port" &
server_pid=$!
for _ in $(seq 50); do [ -s "$cache/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$cache/port")/installer.tar.gz"
curl -sf "$url" >/dev/null # warm the page cache

now() { date +%s.%N; }
best_curl="" best_lift="" rss_kib=0
for run in $(seq "$runs"); do
    rm -rf "$shm" && mkdir -p "$shm/curl"
    t0=$(now)
    bash -c 'curl -s "$1" | tee >(sha256sum >"$2/sum") | tar -xz -C "$2/curl"' _ "$url" "$shm"
    t1=$(now)
    grep -q "^$sum " "$shm/sum" || { echo "curl pipeline: wrong digest" >&2; exit 1; }
    rm -rf "$shm" && mkdir -p "$shm"
    t2=$(now)
    /usr/bin/time -v -o "$cache/time.txt" "$bin" -q fetch-installer --url "$url" --sha256 "$sum" \
        --dest "$shm/lift" >/dev/null
    t3=$(now)
    curl_s=$(echo "$t1 - $t0" | bc -l)
    lift_s=$(echo "$t3 - $t2" | bc -l)
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$cache/time.txt")
    [ "$rss" -gt "$rss_kib" ] && rss_kib=$rss
    printf 'run %d: curl|tee|tar %.2f s, nixos-lift %.2f s, peak RSS %d KiB\n' "$run" "$curl_s" "$lift_s" "$rss" >&2
    if [ -z "$best_curl" ] || [ "$(echo "$curl_s < $best_curl" | bc -l)" = 1 ]; then best_curl=$curl_s; fi
    if [ -z "$best_lift" ] || [ "$(echo "$lift_s < $best_lift" | bc -l)" = 1 ]; then best_lift=$lift_s; fi
done
rm -rf "$shm"

ratio=$(echo "$best_curl / $best_lift" | bc -l)
mib() { echo "$1 / 1048576" | bc -l; }
verdict() { if [ "$1" = 1 ]; then echo "met"; else echo "MISSED"; fi; }
ratio_ok=$(echo "$ratio >= 0.95" | bc -l)
rss_ok=$([ "$rss_kib" -le $((64 * 1024)) ] && echo 1 || echo 0)

echo
echo "nixos-lift fetch benchmark ($(nproc) CPUs, $(printf '%.0f' "$(mib "$bytes")") MiB tarball, best of $runs)"
printf '  download+verify+unpack:  nixos-lift %.2f s (%.0f MiB/s), curl|tee sha256sum|tar -xz %.2f s (%.0f MiB/s)\n' \
    "$best_lift" "$(echo "$(mib "$bytes") / $best_lift" | bc -l)" \
    "$best_curl" "$(echo "$(mib "$bytes") / $best_curl" | bc -l)"
printf '  throughput ratio:        %.2f (target >= 0.95: %s)\n' "$ratio" "$(verdict "$ratio_ok")"
printf '  peak RSS:                %.1f MiB (target <= 64 MiB: %s)\n' "$(echo "$rss_kib / 1024" | bc -l)" "$(verdict "$rss_ok")"
printf '  static binary:           %.2f MiB (%s bytes, %s)\n' "$(mib "$(stat -c %s "$bin")")" "$(stat -c %s "$bin")" "${bin#"$REPO_ROOT"/}"

# Stage 1 inside the simulated cloud, from the last hetzner run's console (QEMU TCG: slower
# than a real VM). Its installer fixture is small, so the handoff figure is for a ~30 MB initrd.
console=tests/vm/.cache/runs/hetzner/console.log
if [ -s "$console" ] && grep -q "stage 1 resources" "$console"; then
    echo "  simulated cloud (last 'bash tests/vm/takeover.sh hetzner', TCG):"
    grep -o 'handoff appended to a new initrd.*' "$console" | tail -1 | sed 's/^/    /'
    grep -o 'stage 1 resources.*' "$console" | tail -1 | sed 's/^/    /'
else
    echo "  stage 1 in the simulated cloud: not measured (run 'bash tests/vm/takeover.sh hetzner' first)"
fi
[ "$ratio_ok" = 1 ] && [ "$rss_ok" = 1 ]
