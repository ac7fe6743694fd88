#!/usr/bin/env bash
# Unit, fixture and CLI tests of the crate (cargo test).
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"
cargo test --quiet --all-targets 2>&1
