#!/bin/sh
# TEST DOUBLE for the disko script that `nix build ...diskoScript` produces (destroy, format
# and mount the layout's disks). It never touches a device (at most it mounts tmpfs, below):
# it records that it ran, with which environment, so tests can check stage 2 ran it once,
# after every guard and before nixos-install.
set -eu
. "$(dirname "$(readlink -f "$0")")/double-lib.sh"
double_record disko-script "$@"
echo "disko-script (test double): would destroy, format and mount the layout's disks"
# control/mount-target DIR (the installer fixture, as root): mount tmpfs on DIR and DIR/boot
# as disko mounts the layout there, so stage 2's unmount before rebooting has work to do.
if [ -f "$double_control/mount-target" ]; then
    target=$(cat "$double_control/mount-target")
    mkdir -p "$target"
    mount -t tmpfs disko-double "$target"
    mkdir -p "$target/boot"
    mount -t tmpfs disko-double-boot "$target/boot"
    echo "disko-script (test double): mounted tmpfs on $target and $target/boot"
fi
double_finish disko-script
