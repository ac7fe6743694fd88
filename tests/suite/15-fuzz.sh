#!/usr/bin/env bash
# Fuzz smoke run of every metadata parser (tests/provider_fuzz.rs): mutated fixture documents
# and random bytes must never panic. Longer: FUZZ_ITERATIONS=200000 bash tests/suite/15-fuzz.sh
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"
FUZZ_ITERATIONS=${FUZZ_ITERATIONS:-3000} cargo test --quiet --test provider_fuzz 2>&1
