#!/usr/bin/env bash
# Builds a stock cloud-style disk image for the real-image scenarios, with mmdebstrap from
# Debian's archive, and caches it keyed by a hash of this recipe (this file, the test hook and
# the recipe's name).
#
#   bash tests/debian/build-image.sh [debian-12|ubuntu-shaped]   prints the cache directory
#
# Recipes:
#   debian-12 (default)  Debian 12 (bookworm) as Debian's genericcloud image: cloud-init 22.4,
#                        its ENI renderer, ifupdown and isc-dhcp-client.
#   ubuntu-shaped        Debian 13 (trixie) set up as Ubuntu's cloud images are: cloud-init 25
#                        with Ubuntu's system_info.network (netplan renderer first, dhcpcd as
#                        the ephemeral DHCP client), netplan.io, systemd-networkd,
#                        systemd-resolved with /etc/resolv.conf the stub (127.0.0.53); no
#                        ifupdown, no isc-dhcp-client. Ubuntu's archive is not reachable here;
#                        trixie ships the same stack (systemd 257, netplan 1.1).
#
# The cache directory (DEBIMG_CACHE, default /var/cache/nixos-lift-tests/RECIPE-image/KEY; the
# debian-12 recipe keeps its old debian-image/) holds:
#   disk.qcow2        a GPT disk, partition 1 = ext4 root (label cloudimg-rootfs); never written
#                     to by the scenarios, which boot a qcow2 overlay on top of it
#   vmlinuz, initrd   the image's own /boot kernel and initramfs, for QEMU's direct kernel boot
#   manifest.txt      kernel version and installed package versions
# The two newest keys of a recipe are kept (a branch and main each find theirs); older ones go,
# so an edited recipe does not leave old images behind.
#
# What is in both, and why:
#   - what a distribution's cloud image boots with: systemd, udev, dbus, cloud-init,
#     openssh-server, the distribution kernel (initramfs-tools), a DHCP client for cloud-init's
#     ephemeral DHCP (the Hetzner and EC2 datasources), curl, ca-certificates, sudo;
#   - cloud-guest-utils (growpart), as debian-cloud-images' GENERIC and CLOUD classes and
#     Ubuntu's images install it: cloud-init runs its growpart and resizefs modules at every
#     boot (cloud.cfg's cloud_init_modules; growpart's default is mode auto on `/`), so on first
#     boot the root partition and its ext4 grow to the disk, as on a real cloud VM. The image
#     itself stays small (its files + 50 % + 256 MiB); the scenarios' 8 GiB overlay is the disk
#     it grows to, and stage 1's root-filesystem staging of a ~440 MB installer has the room it
#     has on a real VM;
#   - no kexec-tools (neither has the real image): stage 1 must load the installer itself;
#   - no docs, man pages or locales, and no kernel modules for hardware a cloud VM lacks (GPU,
#     sound, wireless, media, infiniband, ...), to keep the image small;
#   - one test hook, tests/debian/simcloud-alive.service, that only acts when the kernel command
#     line says `simcloud.after=alive`: after cloud-init it prints what an operator logging in
#     would check, then powers off. It stands in for a person at the serial console.
set -euo pipefail
source "$(dirname "$0")/../lib/common.sh"
HERE=$REPO_ROOT/tests/debian

RECIPE=${1:-debian-12}
COMMON=(systemd systemd-sysv udev dbus cloud-init openssh-server linux-image-amd64 initramfs-tools
    iproute2 netbase curl ca-certificates sudo e2fsprogs kmod procps cloud-guest-utils)
case $RECIPE in
    debian-12)
        SUITE=bookworm
        PACKAGES=("${COMMON[@]}" ifupdown isc-dhcp-client)
        ABSENT=()
        BASE=${DEBIMG_CACHE:-/var/cache/nixos-lift-tests/debian-image}
        ;;
    ubuntu-shaped)
        SUITE=trixie
        # Ubuntu's cloud images: netplan.io renders for systemd-networkd, systemd-resolved owns
        # DNS, dhcpcd-base is cloud-init's ephemeral DHCP client (noble's cloud-init depends on it).
        PACKAGES=("${COMMON[@]}" netplan.io systemd-resolved dhcpcd-base)
        # What Ubuntu's images do not have and this one must not pull in by a dependency.
        ABSENT=(ifupdown isc-dhcp-client)
        BASE=${DEBIMG_CACHE:-/var/cache/nixos-lift-tests/ubuntu-shaped-image}
        ;;
    *)
        printf '[debimg] error: unknown recipe %s (debian-12 or ubuntu-shaped)\n' "$RECIPE" >&2
        exit 2
        ;;
esac
# Module directories a cloud VM never needs (relative to /lib/modules/VERSION/kernel).
DROP_MODULES=(drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet drivers/infiniband
    drivers/staging drivers/iio drivers/isdn drivers/bluetooth drivers/input/touchscreen
    drivers/hid drivers/usb drivers/scsi/qla2xxx drivers/scsi/lpfc drivers/scsi/mpt3sas
    drivers/mtd drivers/nfc drivers/thunderbolt drivers/net/can sound net/wireless net/mac80211
    net/bluetooth fs/ocfs2 fs/gfs2 fs/btrfs fs/xfs fs/nfs fs/nfsd fs/ceph fs/smb fs/f2fs)

log() { printf '[debimg] %s\n' "$*" >&2; }
die() {
    printf '[debimg] error: %s\n' "$*" >&2
    exit 1
}

KEY=$( (echo "recipe $RECIPE" && cat "$0" "$HERE/simcloud-alive.service") | sha256sum | cut -c1-16)
OUT=$BASE/$KEY
if [ -s "$OUT/disk.qcow2" ] && [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd" ]; then
    log "cached $RECIPE image $OUT (recipe $KEY)"
    echo "$OUT"
    exit 0
fi

[ "$(id -u)" = 0 ] || die "building the image needs root (mmdebstrap in root mode); run as root"
need_apt mmdebstrap qemu-utils fdisk e2fsprogs
start=$(date +%s)
# Same archive host as the machine's own Debian sources.
mirror=$(grep -rhs -E '^(URIs:|deb) ' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
    grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 | tr -d ' ' || true)
mirror=${mirror:-http://deb.debian.org/debian}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/debimg-build.XXXXXX")
# mmdebstrap mounts /proc, /sys and /dev inside the tree while it runs: never follow a mount.
cleanup() {
    if grep -q " $WORK/" /proc/mounts; then
        log "left $WORK in place: something is still mounted below it"
    else
        rm -rf --one-file-system "$WORK"
    fi
}
trap cleanup EXIT
ROOT=$WORK/root

log "mmdebstrap $SUITE from $mirror (${#PACKAGES[@]} packages and their dependencies)"
mmdebstrap --quiet --variant=minbase --mode=root --format=directory \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --setup-hook='mkdir -p "$1/etc/initramfs-tools/conf.d" && echo "COMPRESS=zstd" >"$1/etc/initramfs-tools/conf.d/compress"' \
    "$SUITE" "$ROOT" "$mirror" "deb $mirror $SUITE-updates main" >&2

for p in "${ABSENT[@]}"; do
    if chroot "$ROOT" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        die "$p was pulled in, but the $RECIPE image must not have it"
    fi
done

log "making it a first-boot cloud image"
# What Debian's cloud images do: no host keys, machine id or hostname baked in (cloud-init and
# systemd create them on first boot), root found by label.
rm -f "$ROOT"/etc/ssh/ssh_host_* "$ROOT/etc/hostname"
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
# C.UTF-8 as the system locale, as Debian's cloud images set it: cloud-init's locale module then
# has nothing to generate (with no /etc/default/locale it tries en_US.UTF-8 and fails).
echo "LANG=C.UTF-8" >"$ROOT/etc/default/locale"
echo "LABEL=cloudimg-rootfs / ext4 rw,discard,errors=remount-ro 0 1" >"$ROOT/etc/fstab"
case $RECIPE in
    debian-12)
        cat >"$ROOT/etc/network/interfaces" <<'ENI'
# cloud-init writes the network configuration to interfaces.d.
auto lo
iface lo inet loopback
source /etc/network/interfaces.d/*
ENI
        ;;
    ubuntu-shaped)
        # Ubuntu's cloud.cfg (cloud-init's config/cloud.cfg.tmpl, variant ubuntu): netplan first,
        # and dhcpcd before dhclient for the ephemeral DHCP of the local datasources. Debian's own
        # variant lists netplan, eni, networkd and dhclient first.
        cat >"$ROOT/etc/cloud/cloud.cfg.d/05_ubuntu_shaped.cfg" <<'CFG'
# nixos-lift tests: cloud-init's system_info.network as Ubuntu's cloud.cfg sets it.
system_info:
  network:
    dhcp_client_priority: [dhcpcd, dhclient, udhcpc]
    renderers: ['netplan', 'eni', 'sysconfig']
    activators: ['netplan', 'eni', 'network-manager', 'networkd']
CFG
        # networkd runs the network netplan renders for it; resolved owns DNS, and resolv.conf is
        # its stub, as on Ubuntu (the upstream servers are in /run/systemd/resolve/resolv.conf).
        chroot "$ROOT" systemctl enable systemd-networkd.service systemd-resolved.service >&2
        ln -sfn ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
        ;;
esac
install -m 0644 "$HERE/simcloud-alive.service" "$ROOT/etc/systemd/system/simcloud-alive.service"
# The hook's report owns ttyS0: no serial login prompt when it runs (trixie's agetty hangs up the
# tty under a unit that writes to it).
mkdir -p "$ROOT/etc/systemd/system/serial-getty@ttyS0.service.d"
printf '[Unit]\nConditionKernelCommandLine=!simcloud.after=alive\n' \
    >"$ROOT/etc/systemd/system/serial-getty@ttyS0.service.d/simcloud-alive.conf"
ln -sf /etc/systemd/system/simcloud-alive.service "$ROOT/etc/systemd/system/multi-user.target.wants/simcloud-alive.service"
rm -rf "$ROOT"/var/cache/apt/* "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/*.log "$ROOT"/tmp/*

kver=$(ls "$ROOT/lib/modules")
[ "$(echo "$kver" | wc -w)" = 1 ] || die "expected one kernel in the image, found: $kver"
for d in "${DROP_MODULES[@]}"; do rm -rf "$ROOT/lib/modules/$kver/kernel/$d"; done
chroot "$ROOT" depmod "$kver"
mkdir -p "$WORK/out"
cp "$ROOT/boot/vmlinuz-$kver" "$WORK/out/vmlinuz"
cp "$ROOT/boot/initrd.img-$kver" "$WORK/out/initrd"
{
    echo "recipe $KEY, built $(date -u +%FT%TZ) from $mirror"
    echo "kernel $kver"
    chroot "$ROOT" dpkg-query -W -f='${Package} ${Version}\n'
} >"$WORK/out/manifest.txt"

# The disk: GPT, partition 1 = ext4 made from the tree (mke2fs -d: no loop devices), with room
# for first-boot writes (logs, host keys) and the agent before cloud-init's growpart and
# resizefs grow it to the disk the VM boots with.
used_mib=$(du -sm "$ROOT" | cut -f1)
part_mib=$((used_mib + used_mib / 2 + 256))
disk_mib=$((part_mib + 2))
log "root tree ${used_mib} MiB -> ${part_mib} MiB ext4 partition"
truncate -s "${disk_mib}M" "$WORK/disk.raw"
printf 'label: gpt\nstart=2048, size=%d, type=0FC63DAF-8483-4772-B47D-6983DE4798E4, name="cloudimg-rootfs"\n' \
    $((part_mib * 2048)) | sfdisk -q "$WORK/disk.raw" >/dev/null
mke2fs -q -F -t ext4 -L cloudimg-rootfs -d "$ROOT" "$WORK/root.ext4" "${part_mib}M" >&2
rm -rf "$ROOT"
dd if="$WORK/root.ext4" of="$WORK/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f "$WORK/root.ext4"
qemu-img convert -c -f raw -O qcow2 "$WORK/disk.raw" "$WORK/out/disk.qcow2"
rm -f "$WORK/disk.raw"

mkdir -p "$BASE"
rm -rf "$OUT"
mv "$WORK/out" "$OUT"
ls -1dt "$BASE"/*/ | tail -n +3 | while read -r old; do rm -rf "$old"; done
log "built the $RECIPE image $OUT in $(($(date +%s) - start)) s: $(du -sh "$OUT/disk.qcow2" | cut -f1) qcow2, kernel $kver"
echo "$OUT"
