#!/bin/sh
# TEST DOUBLE for `nixos-install`, which needs a Nix store, a built system and a real target
# filesystem. It records argv and environment, checks the flags stage 2 must always pass,
# and leaves the marker a real install leaves (<root>/etc/NIXOS) so later phases see a
# populated root. It writes nothing outside --root.
# With --system and the real Nix in the installer (the fleet scenarios' /opt/nix), it sets the
# system profile as nixos-install itself does, with the real nix-env:
#   nix-env --store ROOT -p ROOT/nix/var/nix/profiles/system --set SYSTEM
# Only the bootloader step stays a double: nixos-install's
#   NIXOS_INSTALL_BOOTLOADER=1 nixos-enter --root ROOT -c '.../bin/switch-to-configuration boot'
# is recorded, not run (no bootloader or NixOS activation exists in the fixture).
set -eu
. "$(dirname "$(readlink -f "$0")")/double-lib.sh"
double_record nixos-install "$@"
# The swap in use while it runs (stage 2 adds a swap file on the target when RAM is tight).
double_file /proc/swaps
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
system=""
prev=""
for arg in "$@"; do
    [ "$prev" = "--system" ] && system=$arg
    prev=$arg
done
if [ -n "$system" ] && [ -x /opt/nix/bin/nix-env ] && [ ! -f "$double_control/fail-nixos-install" ]; then
    /opt/nix/bin/nix-env --store "$root" -p "$root/nix/var/nix/profiles/system" --set "$system"
    echo "nixos-install (test double): bootloader step not run: NIXOS_INSTALL_BOOTLOADER=1 nixos-enter --root $root -c '/nix/var/nix/profiles/system/bin/switch-to-configuration boot'" |
        tee -a "$double_prefix.files"
fi
if [ ! -f "$double_control/fail-nixos-install" ]; then
    mkdir -p "$root/etc"
    : >"$root/etc/NIXOS"
fi
double_finish nixos-install
