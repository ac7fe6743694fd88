# Shared by the installer-tool test doubles (nix-double.sh, nixos-install-double.sh,
# disko-script-double.sh). POSIX sh, so the busybox installer fixture can run them too.
#
# The doubles are put on PATH as symlinks named like the real tools (`nix`,
# `nixos-install`) in one bin directory. Stage 2 clears its children's environment, so the
# doubles find their state next to those symlinks, not through variables:
#   <bin>/records/NNN-<tool>.argv   one argument per line
#   <bin>/records/NNN-<tool>.env    the environment they were given (`env`, sorted)
#   <bin>/records/NNN-<tool>.files  files they were handed (paths, modes, contents)
#   <bin>/control/fail-<tool>       if present: exit with the status it holds
#   <bin>/control/<tool>.out        if present: print it instead of the default answer
# shellcheck shell=sh

double_bin=$(cd "$(dirname "$0")" && pwd)
double_records=$double_bin/records
double_control=$double_bin/control
mkdir -p "$double_records"

# double_record TOOL ARGS...: writes the argv and env records; sets $double_prefix.
double_record() {
    tool=$1
    shift
    # shellcheck disable=SC2010 # the directory holds only our own NNN-tool.* names
    n=$(ls "$double_records" | grep -c '\.argv$' || true)
    double_prefix=$double_records/$(printf '%03d' "$n")-$tool
    : >"$double_prefix.argv"
    for arg in "$@"; do
        printf '%s\n' "$arg" >>"$double_prefix.argv"
    done
    env | sort >"$double_prefix.env"
    : >"$double_prefix.files"
}

# double_file PATH: appends a file the tool was handed (mode and content) to the record.
double_file() {
    if [ -f "$1" ]; then
        printf '=== %s mode=%s\n' "$1" "$(stat -c %a "$1")" >>"$double_prefix.files"
        cat "$1" >>"$double_prefix.files"
        # The next record starts on a line of its own.
        [ -z "$(tail -c 1 "$1")" ] || echo >>"$double_prefix.files"
    else
        printf '=== %s missing\n' "$1" >>"$double_prefix.files"
    fi
}

# double_finish TOOL: exits as control/fail-TOOL says (0 without it).
double_finish() {
    if [ -f "$double_control/fail-$1" ]; then
        echo "$1 (test double): failing as told by control/fail-$1" >&2
        exit "$(cat "$double_control/fail-$1")"
    fi
    exit 0
}
