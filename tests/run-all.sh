#!/usr/bin/env bash
# Runs every test suite under tests/suite/ in order and prints one summary line.
# This is the README's test command; .ci/run calls it.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

passed=0
failed=0
failed_names=()
for suite in tests/suite/*.sh; do
    name=$(basename "$suite" .sh)
    echo "=== suite $name"
    start=$(date +%s)
    if bash "$suite"; then
        passed=$((passed + 1))
        echo "=== suite $name: ok ($(( $(date +%s) - start )) s)"
    else
        failed=$((failed + 1))
        failed_names+=("$name")
        echo "=== suite $name: FAILED ($(( $(date +%s) - start )) s)"
    fi
done
[ $failed -eq 0 ] || echo "failed suites: ${failed_names[*]}"
echo "suites: $passed passed, $failed failed"
[ $failed -eq 0 ]
