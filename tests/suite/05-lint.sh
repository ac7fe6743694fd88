#!/usr/bin/env bash
# Lint of the test harness and the packaging scripts: shellcheck (warnings and errors, following
# sourced files from each script's own directory) over every tracked shell script, by name (*.sh)
# or by shebang (the guests' /init scripts, .ci/run), and pyflakes over every tracked Python file.
# A check whose code is right says so where it is: `# shellcheck disable=SCxxxx # why`.
set -euo pipefail
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
cd "$REPO_ROOT"
need_apt shellcheck python3-pyflakes

# Libraries (no shebang: only ever sourced) set variables their callers read and read ones the
# callers set, which shellcheck cannot see from the library alone: SC2034 and SC2154 are left
# to the checks of the scripts that source them.
scripts=() libraries=()
while IFS= read -r f; do
    [ -f "$f" ] || continue
    if head -n1 "$f" | grep -qE '^#!.*(/|env )(ba|da)?sh\b'; then
        scripts+=("$f")
    elif [[ $f == *.sh ]]; then
        libraries+=("$f")
    fi
done < <(git ls-files)
check() { shellcheck --external-sources --source-path=SCRIPTDIR --severity=warning "$@"; }
check "${scripts[@]}"
check --exclude=SC2034,SC2154 "${libraries[@]}"
echo "ok   shellcheck: ${#scripts[@]} shell scripts and ${#libraries[@]} sourced libraries clean"

mapfile -t python < <(git ls-files '*.py')
# Debian's pyflakes belongs to the system python3, whatever python3 comes first on PATH.
/usr/bin/python3 -m pyflakes "${python[@]}"
echo "ok   pyflakes: ${#python[@]} Python files clean"
