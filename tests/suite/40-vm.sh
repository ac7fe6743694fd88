#!/usr/bin/env bash
# The simulated cloud (tests/vm): issue 4's scenarios in QEMU under TCG, each a real kernel
# running `nixos-lift run` from a disk, through a real kexec into the installer fixture.
# Nothing is skipped: a broken agent fails its scenarios, and a run where no scenario ran fails.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
exec bash "$REPO_ROOT/tests/vm/takeover.sh" -q all
