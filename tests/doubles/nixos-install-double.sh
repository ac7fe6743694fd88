#!/bin/sh
# TEST DOUBLE for `nixos-install`, which needs a Nix store, a built system and a real target
# filesystem. It records argv and environment, checks the flags stage 2 must always pass,
# and leaves the marker a real install leaves (<root>/etc/NIXOS) so later phases see a
# populated root. It writes nothing outside --root.
set -eu
. "$(dirname "$(readlink -f "$0")")/double-lib.sh"
double_record nixos-install "$@"
root=/mnt
prev=""
for arg in "$@"; do
    [ "$prev" = "--root" ] && root=$arg
    prev=$arg
done
case " $* " in
*" --no-root-passwd "*) ;;
*) echo "nixos-install (test double): --no-root-passwd missing: the real one would prompt" >&2 && exit 2 ;;
esac
if [ ! -f "$double_control/fail-nixos-install" ]; then
    mkdir -p "$root/etc"
    : >"$root/etc/NIXOS"
fi
double_finish nixos-install
