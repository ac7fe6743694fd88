#!/bin/sh
# TEST DOUBLE for the disko script that `nix build ...diskoScript` produces (destroy, format
# and mount the layout's disks). It records that it ran, with which environment, so tests can
# check stage 2 ran it once, after every guard and before nixos-install. By default it never
# touches a device (at most it mounts tmpfs, below); the fleet scenarios tell it to do what a
# one-partition disko layout does (control/disko-format, below).
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
# control/disko-format DEVICE (the fleet scenarios): a GPT with one Linux partition from 1 MiB,
# 256 MiB (or control/disko-size-mib) of ext4 on it, mounted on /mnt, with the real sfdisk and
# mke2fs (/opt/host).
if [ -f "$double_control/disko-format" ]; then
    dev=$(cat "$double_control/disko-format")
    mib=256
    [ -f "$double_control/disko-size-mib" ] && mib=$(cat "$double_control/disko-size-mib")
    case $dev in *nvme*) part=${dev}p1 ;; *) part=${dev}1 ;; esac
    printf 'label: gpt\nstart=2048, size=%s, type=0FC63DAF-8483-4772-B47D-6983DE4798E4, name="nixos"\n' $((mib * 2048)) |
        /opt/host/bin/sfdisk -q --wipe always "$dev"
    mdev -s 2>/dev/null || true
    i=0
    while [ ! -b "$part" ] && [ $i -lt 20 ]; do sleep 0.2; i=$((i + 1)); done
    MKE2FS_CONFIG=/etc/mke2fs.conf /opt/host/bin/mke2fs -q -F -t ext4 -L nixos "$part"
    mkdir -p /mnt
    mount -t ext4 "$part" /mnt
    echo "disko-script (test double): $dev partitioned, ext4 on $part mounted on /mnt"
fi
double_finish disko-script
