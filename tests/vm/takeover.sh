#!/usr/bin/env bash
# The simulated cloud: boots a stock-image-like VM under QEMU (TCG) that runs `nixos-lift run`,
# with the cloud's SMBIOS strings and its metadata service, and follows it through a real kexec
# into the installer fixture. The serial console streams to the terminal and to
# tests/vm/.cache/runs/SCENARIO/console.log; the assertions read it.
#
#   bash tests/vm/takeover.sh hetzner            one scenario (the README's main-job command)
#   bash tests/vm/takeover.sh all                every scenario
#   bash tests/vm/takeover.sh list               the scenario names
#   bash tests/vm/takeover.sh --arch aarch64 all every arm64 scenario (tests/vm/scenarios-arm64.sh)
#
# Options: --arch x86_64|aarch64 (the guest architecture; default x86_64, or aarch64 when every
# scenario named is an arm64 one; aarch64 runs its own scenario list on qemu-system-aarch64 with
# the assets of tests/vm/aarch64-assets.sh), --no-setup (skip tests/vm/setup.sh and the asset
# script), -q (console only in the log file).
# Environment: SIMCLOUD_TIMEOUT (seconds per VM, default 300), SIMCLOUD_CACHE (work dir),
# SIMCLOUD_FAKECLOUD (the metadata server script), SIMCLOUD_GUEST_COMMAND (run this in the
# stock VM instead of `nixos-lift run`, to debug a VM setup; the checks then fail).
# Exit status: 0 every scenario passed, 1 a scenario failed (or none ran), 2 usage.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
source "$REPO_ROOT/tests/vm/lib.sh"
source "$REPO_ROOT/tests/vm/fleet.sh"
source "$REPO_ROOT/tests/vm/scenarios.sh"
source "$REPO_ROOT/tests/vm/scenarios-arm64.sh"

# --arch picks the scenario list; without it, naming an arm64 scenario selects aarch64.
arch=""
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --arch)
            [ $# -ge 2 ] || { echo "takeover.sh: --arch needs x86_64 or aarch64" >&2; exit 2; }
            arch=$2
            shift
            ;;
        --arch=*) arch=${1#--arch=} ;;
        *) args+=("$1") ;;
    esac
    shift
done
if [ -z "$arch" ]; then
    arch=x86_64
    for name in "${args[@]+"${args[@]}"}"; do
        if [[ " $SCENARIOS_AARCH64 " == *" $name "* ]]; then arch=aarch64; fi
    done
fi
case $arch in
    x86_64) scenarios=$SCENARIOS others=$SCENARIOS_AARCH64 ;;
    aarch64) scenarios=$SCENARIOS_AARCH64 others=$SCENARIOS ;;
    *) echo "takeover.sh: unknown arch '$arch' (x86_64 or aarch64)" >&2; exit 2 ;;
esac
for name in "${args[@]+"${args[@]}"}"; do
    if [[ " $others " == *" $name "* ]]; then
        echo "takeover.sh: '$name' is not an $arch scenario; run the two arches separately" >&2
        exit 2
    fi
done
parse_takeover_args "$scenarios" "${args[@]+"${args[@]}"}"

start_all=$(date +%s)
[ "$setup" = yes ] && bash "$REPO_ROOT/tests/vm/setup.sh"
[ "$setup" = yes ] && [ "$arch" = aarch64 ] && bash "$REPO_ROOT/tests/vm/aarch64-assets.sh" >/dev/null
select_arch "$arch"
mkdir -p "$CACHE"
prepare_simcloud
log "prepared $ARCH in $(( $(date +%s) - start_all )) s: kernel $KVER, installer sha256 $INSTALLER_SHA256"

# run_scenario NAME: one VM boot with its servers, then its checks. Adds to FAILS and RESULTS.
run_scenario() {
    begin_scenario "$1" scenario_defaults scenario
    [ "$VM_BOOT" = disk ] && build_stock_disks

    PROBE_TOKEN=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
    echo "probe-ok $PROBE_TOKEN" >"$CACHE/www/probe.txt"
    start_metadata "$PROVIDER"
    start_release
    start_webhook
    log "scenario $SCENARIO: provider $PROVIDER, metadata and release servers on 127.0.0.1:$METADATA_PORT/$RELEASE_PORT"
    if [ -f "$RUN/config.yaml" ]; then
        log "config:"
        # Without this run's tokens (the checks look for them in everything the VM printed).
        sed -n '2,$p' "$RUN/config.yaml" | sed -E 's/^( *("[^"]+"|webhook_token): ).*/\1<redacted>/; s/^/      /'
    fi

    local start before
    start=$(date +%s)
    if [ "$quiet" = yes ]; then boot_vm >/dev/null; else boot_vm; fi
    log "scenario $SCENARIO: VM ran $(($(date +%s) - start)) s; checks:"
    before=$FAILS
    run_checks "check_$SCENARIO"
    case $VM_STATUS in
        0) ;;
        124) fail "the VM finished within ${VM_TIMEOUT}s" ;;
        *) fail "QEMU exited with status $VM_STATUS" ;;
    esac
    end_scenario "$before" 60 "" " (transcript: $RUN/console.log)"
}

[ -f "$FAKECLOUD" ] || die "the fake metadata server $FAKECLOUD is missing"
RESULTS=()
ran=0
for name in "${wanted[@]}"; do
    run_scenario "$name"
    ran=$((ran + 1))
done

log "summary ($(( $(date +%s) - start_all )) s):"
printf '[simcloud]   %s\n' "${RESULTS[@]}"
[ "$FAILS" = 0 ] || exit 1
[ "$ran" -gt 0 ] || die "no scenario ran"
