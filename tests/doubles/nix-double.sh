#!/bin/sh
# TEST DOUBLE for `nix`, used where real Nix cannot run (CI hosts and the busybox installer
# fixture have no Nix store or network). It records argv, environment and the wrapper flake
# it is pointed at, and answers the few commands stage 2 sends:
#   nix eval --json <flake>#....disko.devices.disk --apply ...  -> the disk device the
#       generated facts module sets (or control/nix-eval-disko.out)
#   nix eval --raw <flake>#....toplevel.drvPath                 -> a fake .drv path
#   nix build --no-link --print-out-paths <flake>#....diskoScript -> the disko-script double
#   nix store ls --store <cache> --json <system>/disko-script   -> a symlink to a fake store
#       path of the disko-script double (fleet mode's prebuilt disko script)
#   nix copy --from <cache> <that path>                         -> makes that path (under the
#       doubles' root: BIN/../nix/store) a script running the disko-script double
#   nix copy ...                                                -> nothing (recorded)
# Of the private nix.conf it records only the mode and which settings it has, never values.
set -eu
. "$(dirname "$(readlink -f "$0")")/double-lib.sh"
double_record nix "$@"

flake_dir=""
for arg in "$@"; do
    case $arg in
    path:*#*) flake_dir=${arg#path:} && flake_dir=${flake_dir%%#*} ;;
    esac
done
if [ -n "$flake_dir" ]; then
    for f in flake.nix nixos-lift-facts.nix facts.json; do
        double_file "$flake_dir/$f"
    done
fi
conf=${NIX_USER_CONF_FILES:-}
if [ -n "$conf" ] && [ -f "$conf" ]; then
    printf '=== %s mode=%s settings=%s\n' "$conf" "$(stat -c %a "$conf")" \
        "$(sed -n 's/^\([a-z-]*\) =.*/\1/p' "$conf" | tr '\n' ' ')" >>"$double_prefix.files"
fi

fleet_disko=/nix/store/00000000000000000000000000000000-disko-script-double
answer() {
    if [ -f "$double_control/$1.out" ]; then
        cat "$double_control/$1.out"
    else
        printf '%s\n' "$2"
    fi
}
case "$1 $*" in
*"eval "*disko.devices.disk*)
    device=$(sed -n 's/^ *diskDevice = "\(.*\)";$/\1/p' "$flake_dir/nixos-lift-facts.nix")
    answer nix-eval-disko "{\"main\":\"$device\"}"
    ;;
*"eval "*toplevel.drvPath*)
    answer nix-eval-toplevel "/nix/store/00000000000000000000000000000000-nixos-system-double.drv"
    ;;
*"build "*diskoScript*)
    answer nix-build-disko "$double_bin/disko-script"
    ;;
*"store ls "*/disko-script)
    answer nix-store-ls-disko "{\"type\":\"symlink\",\"target\":\"$fleet_disko\"}"
    ;;
"copy "*" $fleet_disko")
    # The "store" is the doubles' root's nix/store (a rehearsal's --root; the installer fixture
    # links /nix there), never the host's /nix.
    store=$(dirname "$double_bin")/nix/store
    mkdir -p "$store"
    printf '#!/bin/sh\nexec %s "$@"\n' "$double_bin/disko-script" >"$store/${fleet_disko#/nix/store/}"
    chmod 0755 "$store/${fleet_disko#/nix/store/}"
    ;;
esac
double_finish nix
