#!/usr/bin/env bash
# RAM floor of a takeover: for installer stores of 100, 200, 300 and 430 MiB (the last is
# nixos-images' real x86_64 size), the smallest `-m` at which stage 1 downloads, stages and
# kexecs the installer and the installer fixture boots with the handoff present and the whole
# store image in its initramfs; beside it, the smallest `-m` the memory guard accepts. Prints a
# Markdown table. Not a test and not part of CI: a measurement to rerun by hand (as root).
#
#   bash tests/bench/ram-floor.sh [--sizes "100 200 300 430"] [--step 32] [--no-guard] [--keep]
#
# The VM: tests/vm's busybox stock VM (tests/vm/guest/init: PID 1 runs `nixos-lift run`, 1 vCPU,
# QEMU TCG), not the Debian image of tests/debian. It boots in seconds where Debian with systemd
# and cloud-init takes minutes, so a bisection per size fits in an hour. Its `/` is read-only and
# /var/lib/nixos-lift a tmpfs, so stage 1 can only stage in RAM (its own tmpfs): the floor
# measured is the RAM-staging floor, the strictest case. On a stock image with a writable root
# filesystem stage 1 stages there when RAM is short and needs about one initrd less (the
# Debian scenarios big-2g and big-1536 show both choices). The busybox VM's own processes take
# next to nothing, where a stock distribution's take ~100-250 MiB; MemAvailable is what the
# guard compares, so the "guard need" column carries over to any image, the -m columns do not.
#
# Per size:
#   guard floor  bisection with `nixos-lift plan` (no min_memory: the guard computes the need
#                from the installer's size, asked by HEAD, against MemAvailable); the need is
#                read from the refusal just below the floor (`needed N MiB`: in this VM, whose
#                root filesystem cannot take the staging, the figure for staging in RAM);
#   measured     bisection with `nixos-lift run` and `min_memory: 64MiB` in the config: with
#                min_memory written the guard compares MemTotal only, so stage 1 goes ahead
#                below its own estimate and the real failure shows (OOM kill, a refused kexec
#                load, an installer that cannot unpack its initramfs, ...). A probe passes when
#                the fixture prints `handoff check exit 0` and `store image S MiB`. It starts at
#                the guard floor and halves its way down in STEP MiB units.
# Stage 2 runs in fleet mode with the fixture's recording doubles (seconds; not judged).
#
# Scratch: $RAMFLOOR_DIR (default /tmp/ram-floor): every probe's console in
# runs/SIZE-guard-M/ and runs/SIZE-run-M/, and the table in table.md; removed at the start of a
# run, kept at the end. The sized installers are cached in $SIMCLOUD_STORE_CACHE (tests/vm/lib.sh).
# A probe that times out (RAMFLOOR_TIMEOUT, default 600 s) counts as a failure.
# Under TCG the times are not a machine's; see the table's notes for what else TCG cannot show.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"

sizes="100 200 300 430"
step=32
guard=yes
while [ $# -gt 0 ]; do
    case $1 in
        --sizes) sizes=$2; shift ;;
        --step) step=$2; shift ;;
        --no-guard) guard=no ;;
        --keep) ;; # the scratch directory is always kept; accepted for symmetry with fetch.sh
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "usage: bash tests/bench/ram-floor.sh [--sizes \"100 200 300 430\"] [--step 32] [--no-guard]" >&2; exit 2 ;;
    esac
    shift
done
for s in $sizes $step; do [[ $s =~ ^[1-9][0-9]*$ ]] || { echo "ram-floor: '$s' is not a number of MiB" >&2; exit 2; }; done

WORK=${RAMFLOOR_DIR:-/tmp/ram-floor}
rm -rf "$WORK" && mkdir -p "$WORK"
# Its own simulated-cloud cache: never the one tests/vm/takeover.sh runs in.
export SIMCLOUD_CACHE=$WORK/cache
source "$REPO_ROOT/tests/vm/lib.sh"
source "$REPO_ROOT/tests/vm/scenarios.sh" # scenario_defaults, write_config
quiet=yes
PROBE_TIMEOUT=${RAMFLOOR_TIMEOUT:-600}

start_all=$(date +%s)
bash "$REPO_ROOT/tests/vm/setup.sh"
mkdir -p "$CACHE/www"
prepare_simcloud
echo "probe-ok ram-floor" >"$CACHE/www/probe.txt"
PROBE_TOKEN=ram-floor
log "prepared in $(($(date +%s) - start_all)) s"

# probe SIZE KIND MIB: one boot of the busybox stock VM with -m MIB against the SIZE MiB store
# installer; KIND guard runs `nixos-lift plan` (no min_memory), run the takeover with
# min_memory: 64MiB. Returns 0 when it passed; sets PROBE_NOTE (what happened) and RUN.
probe() {
    local size=$1 kind=$2 mib=$3 t
    SCENARIO=ram-floor-$size-$kind-$mib
    RUN=$WORK/runs/$size-$kind-$mib
    mkdir -p "$RUN"
    scenario_defaults
    VM_MEMORY=$mib
    VM_TIMEOUT=$PROBE_TIMEOUT
    INSTALLER_FILE=installer-manifest-$ARCH-store$size.tar.gz
    CONFIG_SHA256=$(cat "$WORK/sha256-$size")
    CONFIG_SYSTEM=$FLEET_SYSTEM
    if [ "$kind" = guard ]; then
        VM_COMMAND="nixos-lift plan --config /etc/nixos-lift/config.yaml"
        VM_TIMEOUT=300
    else
        CONFIG_MIN_MEMORY=64MiB
    fi
    build_stock_disks
    start_metadata "$PROVIDER"
    start_release
    start_webhook
    t=$(date +%s)
    boot_vm >/dev/null
    PROBE_SECONDS=$(($(date +%s) - t))
    local pid
    for pid in "${_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    _pids=()
    WEBHOOK_PORT=""
    rm -f "$RUN/root.img"
    probe_verdict "$size" "$kind"
}

# probe_verdict SIZE KIND: reads $RUN/console.log; sets PROBE_NOTE, returns 0 for a pass.
probe_verdict() {
    local size=$1 kind=$2 c=$RUN/console.log exit
    exit=$(console_value "fresh-vm: nixos-lift exited ")
    if [ "$kind" = guard ]; then
        PROBE_NOTE="exit ${exit:-none}"
        [ "$exit" = 0 ]
        return
    fi
    if grep -q '^installer-fixture: handoff check exit 0$' "$c" && grep -q "^installer-fixture: store image $size MiB\$" "$c"; then
        PROBE_NOTE="ok"
        return 0
    fi
    if grep -q '^installer-fixture: booted ' "$c"; then
        PROBE_NOTE="the installer booted without the handoff or the store image"
    elif grep -Eq 'Initramfs unpacking failed|initramfs unpacking failed' "$c"; then
        PROBE_NOTE="the installer kernel could not unpack its initramfs ($(grep -Eom1 '[Ii]nitramfs unpacking failed: .*' "$c"))"
    elif grep -q 'Kernel panic' "$c" && grep -Eq 'kexec loaded|jumping into the installer' "$c"; then
        PROBE_NOTE="the installer kernel panicked: $(grep -m1 -o 'Kernel panic.*' "$c")"
    elif grep -Eq 'Out of memory: Killed process [0-9]+ \(nixos-lift\)|oom-kill.*nixos-lift' "$c"; then
        PROBE_NOTE="the OOM killer killed stage 1 (exit ${exit:-none})"
    elif [ -n "$exit" ]; then
        PROBE_NOTE="stage 1 exited $exit: $(grep -Em1 'failed at \[|refused by guard|error' "$c" | cut -c1-160)"
    elif [ "$VM_STATUS" = 124 ]; then
        PROBE_NOTE="timeout after ${VM_TIMEOUT}s (last: $(tail -n1 "$c" | cut -c1-120))"
    else
        PROBE_NOTE="QEMU exited $VM_STATUS (last: $(tail -n1 "$c" | cut -c1-120))"
    fi
    return 1
}

# bisect SIZE KIND START: sets FLOOR to the smallest multiple of STEP MiB at which probes
# pass, taking passing as monotonic in -m: from START it doubles the stride down while probes
# pass (or up while they fail), then halves the gap. The probes go to $WORK/probes.log.
bisect() {
    local size=$1 kind=$2 m ok="" bad="" stride=$step mid
    m=$((($3 + step - 1) / step * step))
    while :; do
        if run_probe "$size" "$kind" "$m"; then
            ok=$m
            [ -n "$bad" ] && break
            m=$((m - stride))
            [ "$m" -ge "$step" ] || { bad=0; break; }
        else
            bad=$m
            [ -n "$ok" ] && break
            m=$((m + stride))
            [ "$m" -le 16384 ] || { FLOOR="none up to 16384"; return; }
        fi
        stride=$((stride * 2))
    done
    while [ $((ok - bad)) -gt "$step" ]; do
        mid=$(((ok + bad) / 2 / step * step))
        if run_probe "$size" "$kind" "$mid"; then ok=$mid; else bad=$mid; fi
    done
    FLOOR=$ok
}

# run_probe SIZE KIND MIB: probe, logged, memoised (the bisection may ask twice).
run_probe() {
    local key="$1-$2-$3" line
    line=$(grep -m1 "^$key " "$WORK/probes.log" 2>/dev/null || true)
    if [ -n "$line" ]; then
        [[ $line == *" PASS "* ]]
        return
    fi
    local verdict=FAIL
    if probe "$1" "$2" "$3"; then verdict=PASS; fi
    printf '%s %s %s s %s\n' "$key" "$verdict" "$PROBE_SECONDS" "$PROBE_NOTE" >>"$WORK/probes.log"
    log "probe store $1 MiB, $2, -m $3: $verdict in $PROBE_SECONDS s ($PROBE_NOTE)" >&2
    [ "$verdict" = PASS ]
}

# figure RUN ERE: the first number in the first console text of that probe matching ERE.
figure() { { grep -Eom1 -- "$2" "$WORK/runs/$1/console.log" 2>/dev/null | grep -Eo '[0-9]+' | head -n1; } || true; }
# plan_mib RUN FIELD: a byte figure of the plan's memory section, in MiB, from the plan the
# installer fixture printed in that probe.
plan_mib() {
    { grep -m1 '^installer-fixture: plan-compact: ' "$WORK/runs/$1/console.log" 2>/dev/null |
        cut -d' ' -f3- | python3 -c 'import json, sys; print(json.load(sys.stdin)["memory"][sys.argv[1]] >> 20)' "$2" 2>/dev/null; } || true
}

: >"$WORK/probes.log"
rows=()
for size in $sizes; do
    t=$(date +%s)
    build_sized_installer "$size"
    echo "$SIZED_INSTALLER_SHA256" >"$WORK/sha256-$size"
    tar_mib=$(($(stat -L -c %s "$CACHE/www/$SIZED_INSTALLER_FILE") >> 20))
    # A first guess from the shape of the need: the store staged, twice in the kexec load.
    guess=$((3 * size + 256))
    gfloor="-" need="-"
    if [ "$guard" = yes ]; then
        bisect "$size" guard "$guess"
        gfloor=$FLOOR
        # The need, from the refusal just below the floor: with the root filesystem unusable
        # (this VM) the guard names the need for staging in RAM.
        need=$(figure "$size-guard-$((gfloor - step))" 'needed [0-9]+ MiB')
        guess=$gfloor
    fi
    bisect "$size" run "$guess"
    floor=$FLOOR
    total=$(plan_mib "$size-run-$floor" total_bytes)
    avail=$(plan_mib "$size-run-$floor" available_bytes)
    low=$(figure "$size-run-$floor" 'lowest MemAvailable [0-9]+')
    below=$(grep -m1 "^$size-run-$((floor - step)) " "$WORK/probes.log" | cut -d' ' -f5- || true)
    rows+=("| $size | $tar_mib | ${need:--} | $gfloor | $floor | ${total:--} | ${avail:--} | ${low:--} | ${below:-not probed} |")
    log "store $size MiB: guard floor -m $gfloor (need ${need:-?} MiB), measured -m $floor, in $(($(date +%s) - t)) s" >&2
done

{
    echo "RAM floor of a takeover (tests/bench/ram-floor.sh, $(date -u +%F), agent $(agent_host --version 2>/dev/null | head -n1), kernel $KVER, QEMU TCG, busybox stock VM, tmpfs staging, bisection in $step MiB steps):"
    echo
    echo "| store image (MiB) | installer tarball (MiB) | guard's need (MemAvailable, MiB) | guard floor (-m, MiB) | measured floor (-m, MiB) | at the floor: MemTotal (MiB) | MemAvailable at the plan (MiB) | lowest MemAvailable in stage 1 (MiB) | $step MiB below the measured floor |"
    echo "|---|---|---|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
} | tee "$WORK/table.md"
log "probes: $WORK/probes.log; consoles: $WORK/runs; total $(($(date +%s) - start_all)) s" >&2
