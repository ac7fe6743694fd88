#!/usr/bin/env bash
# The whole path with the real cloud-init: a stock cloud-style image (built by
# tests/debian/build-image.sh: Debian 12, or the ubuntu-shaped Debian 13 with netplan,
# systemd-networkd and systemd-resolved) boots in the simulated cloud from its own disk with its
# own systemd.
# cloud-init's own datasource, chosen by its ds-identify from the SMBIOS strings, reads the fake
# metadata service (tests/fakecloud/server.py) and the user-data `nixos-lift user-data` rendered;
# runcmd downloads the agent from the loopback release server and checks its pinned sha256; the
# agent detaches into a systemd unit (systemd-run), plans, fetches the installer fixture and
# hands over with `systemctl kexec`.
#
#   bash tests/debian/takeover.sh SCENARIO...|all|list
#
# On the Debian 12 image: hetzner-bios, ec2-uefi, wrong-agent-sha256, big-2g, big-1536. On the
# ubuntu-shaped image: ubuntu-hetzner-ipv6 (DHCP plus the metadata's static IPv6 and MTU,
# rendered to netplan, restored by stage 2 with resolved's upstream resolvers), ubuntu-ec2-uefi,
# ubuntu-wrong-agent-sha256. Each image is built (or found in its cache) when a scenario first
# needs it.
#
# big-2g and big-1536 take over with a realistic-size installer (a 430 MiB store image in its
# initrd, nixos-images' x86_64 size; tests/vm/lib.sh's build_sized_installer, cached in
# SIMCLOUD_STORE_CACHE): at 2 GiB stage 1 stages it on its own tmpfs, at 1.5 GiB on the root
# filesystem cloud-init's growpart grew to the disk.
#
# Options: --no-setup (skip tests/vm/setup.sh), -q (console only in the log file).
# Environment: DEBIMG_TIMEOUT (seconds per VM, default 600; 720 for big-*), DEBIMG_CACHE (image
# cache, see build-image.sh), DEBIMG_KEEP=1 (keep the run directory with consoles and logs).
# Boot: QEMU's direct kernel boot with the image's own /boot/vmlinuz and initrd and
# root=/dev/vda1; there is no boot loader in the image. Everything from the initramfs on (mounting
# the root disk, systemd, cloud-init's four stages, the shutdown for kexec) is the image's own.
# Only GRUB/the firmware's disk boot is skipped, which nixos-lift never touches in stage 1.
# The scenario's qcow2 overlay takes every write, so the cached base image is never modified.
# Exit status: 0 every scenario passed, 1 a scenario failed, 2 usage.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/debimg-run.XXXXXX")
export SIMCLOUD_CACHE=$SCRATCH
source "$REPO_ROOT/tests/vm/lib.sh"
source "$REPO_ROOT/tests/vm/scenarios.sh" # write_config, scenario_defaults: one config shape
source "$REPO_ROOT/tests/debian/scenarios.sh"
_debimg_cleanup() {
    _cleanup
    if [ "${DEBIMG_KEEP:-}" = 1 ]; then
        echo "[debimg] kept $SCRATCH" >&2
    else
        rm -rf "$SCRATCH"
    fi
}
trap _debimg_cleanup EXIT

parse_takeover_args "$DEBIAN_SCENARIOS" "$@"

start_all=$(date +%s)
[ "$setup" = yes ] && bash "$REPO_ROOT/tests/vm/setup.sh"
mkdir -p "$CACHE/www"
pick_kernel # the installer fixture's kernel (the host's); the stock image boots its own
build_agent
build_tls # the installer fixture trusts the test CA (stage 2 reports over HTTPS)
build_installer
cp "$AGENT" "$CACHE/www/nixos-lift-x86_64-linux"
AGENT_SHA256=$(sha256sum "$AGENT" | cut -d' ' -f1)
AGENT_URL="http://$RELEASE_ADDR/nixos-lift-{arch}-linux"
log "prepared in $(($(date +%s) - start_all)) s; agent sha256 $AGENT_SHA256"
declare -A IMAGES=() # recipe -> its cache directory, built once per run (use_image)

RESULTS=()
for name in "${wanted[@]}"; do run_debian_scenario "$name"; done
log "summary ($(($(date +%s) - start_all)) s):"
printf '[simcloud]   %s\n' "${RESULTS[@]}"
[ "$FAILS" = 0 ]
