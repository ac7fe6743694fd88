#!/usr/bin/env bash
# The whole path with the real cloud-init (issue 8): a stock Debian 12 cloud-style image, built
# once per machine by tests/debian/build-image.sh and cached by its recipe, taken over in the
# simulated cloud. Scenarios (tests/debian/takeover.sh): hetzner-bios, ec2-uefi,
# wrong-agent-sha256 (which also shows cloud-init's growpart and the 10 % /run), and, with a
# 430 MiB store image in the installer's initrd (issue 19), big-2g (tmpfs staging) and
# big-1536 (root-filesystem staging). Then the ubuntu-shaped image (issue 15: Debian 13 with
# netplan, systemd-networkd and systemd-resolved as Ubuntu's cloud images have them):
# ubuntu-hetzner-ipv6, ubuntu-ec2-uefi, ubuntu-wrong-agent-sha256. Each image is built once per
# machine and cached by its recipe.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
bash "$REPO_ROOT/tests/debian/takeover.sh" -q all
