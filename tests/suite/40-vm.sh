#!/usr/bin/env bash
# The simulated cloud (tests/vm): issue 4's scenarios in QEMU under TCG, each a real kernel
# running `nixos-lift run` from a disk, through a real kexec into the installer fixture.
# A scenario whose agent side has not landed yet is reported as SKIPPED, by name and reason.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
rc=0
bash "$REPO_ROOT/tests/vm/takeover.sh" -q all || rc=$?
if [ "$rc" = 77 ]; then
    echo "40-vm: every scenario SKIPPED (see the reasons above); the harness itself was built"
    exit 0
fi
exit "$rc"
