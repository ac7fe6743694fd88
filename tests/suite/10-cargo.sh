#!/usr/bin/env bash
# Unit, fixture and CLI tests of the crate (cargo test).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"
# cpio: the handoff tests list and unpack the archive with GNU cpio.
need_apt cpio
cargo test --quiet --all-targets 2>&1
