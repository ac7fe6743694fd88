#!/usr/bin/env bash
# The whole path with the real cloud-init (issue 8): a stock Debian 12 cloud-style image, built
# once per machine by tests/debian/build-image.sh and cached by its recipe, taken over in the
# simulated cloud. Scenarios: hetzner-bios, ec2-uefi, wrong-agent-sha256 (tests/debian/takeover.sh).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
bash "$REPO_ROOT/tests/debian/takeover.sh" -q all
