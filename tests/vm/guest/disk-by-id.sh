# shellcheck shell=sh
# Sourced by the stock image's /sbin/init and the installer fixture's /init (busybox sh): what
# udev's 60-persistent-storage rules do, /dev/disk/by-id links for each disk and its partitions:
#   virtio-<serial>                    virtio-blk disks (vda, ...)
#   nvme-<model>_<serial>              NVMe namespaces (Graviton and other Nitro machines)
mkdir -p /dev/disk/by-id
# by_id_link DEV ID: links the disk /sys/block/DEV as ID and its partitions as ID-partN.
by_id_link() {
    ln -s "../../$1" "/dev/disk/by-id/$2"
    for part in /sys/block/"$1"/"$1"*; do
        [ -r "$part/partition" ] || continue
        ln -s "../../${part##*/}" "/dev/disk/by-id/$2-part$(cat "$part/partition")"
    done
}
for dev in /sys/block/vd*; do
    [ -r "$dev/serial" ] || continue
    serial=$(cat "$dev/serial")
    [ -n "$serial" ] && by_id_link "${dev##*/}" "virtio-$serial"
done
for dev in /sys/block/nvme*; do
    [ -r "$dev/device/serial" ] || continue
    # Multipath's per-path nodes (nvme0c0n1) are hidden; udev links the namespace only.
    [ "$(cat "$dev/hidden" 2>/dev/null)" = 1 ] && continue
    by_id_link "${dev##*/}" "nvme-$(sed 's/ *$//; s/ /_/g' "$dev/device/model")_$(sed 's/ *$//' "$dev/device/serial")"
done
