//! Disks from `/sys/block`, with their identities, partitions, users and the root disk.

use std::collections::{BTreeMap, BTreeSet};

use super::mounts::MountTable;
use super::{stack, SysRoot};
use crate::facts::{Disk, Partition, Transport};

/// Block devices that are never install targets. They are still listed when they hold root
/// (a live system on a loop device), so the answer to "where is root" is never hidden.
const SKIPPED_PREFIXES: &[&str] = &["loop", "ram", "zram", "sr", "fd", "nbd"];
/// Stacked devices: reported as holders of the disks under them, not as disks.
const STACKED_PREFIXES: &[&str] = &["dm-", "md"];

pub fn inspect(root: &SysRoot) -> Vec<Disk> {
    let mounts = MountTable::read(root);
    let links = DevLinks::read(root);
    let root_disks = stack::root_disks(root, &mounts);
    let ctx = Context {
        root,
        mounts: &mounts,
        links: &links,
        root_disks: &root_disks,
    };
    root.list_dir("/sys/block")
        .into_iter()
        .filter(|name| !STACKED_PREFIXES.iter().any(|p| name.starts_with(p)))
        .filter(|name| {
            root_disks.contains(name) || !SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p))
        })
        // A disk that vanished after the listing has no size and is left out.
        .filter_map(|name| ctx.disk(&name))
        .collect()
}

struct Context<'a> {
    root: &'a SysRoot,
    mounts: &'a MountTable,
    links: &'a DevLinks,
    root_disks: &'a BTreeSet<String>,
}

impl Context<'_> {
    fn disk(&self, name: &str) -> Option<Disk> {
        let root = self.root;
        let dir = format!("/sys/block/{name}");
        // NVMe multipath's per-path devices (nvme0c0n1) are hidden; the namespace is the disk.
        if root.read_flag(format!("{dir}/hidden")) == Some(true) {
            return None;
        }
        let size_bytes = sectors_to_bytes(root.read_parse(format!("{dir}/size"))?);
        let dev = root.read_string(format!("{dir}/dev"));
        let transport = transport(root, name, &dir);
        let partitions = root
            .list_dir(&dir)
            .into_iter()
            .filter(|entry| entry.starts_with(name))
            .filter_map(|entry| self.partition(&format!("{dir}/{entry}"), &entry))
            .collect::<Vec<_>>();
        Some(Disk {
            name: name.to_string(),
            path: format!("/dev/{name}"),
            size_bytes,
            logical_sector_size: root.read_parse(format!("{dir}/queue/logical_block_size")),
            model: device_string(root, &dir, "model"),
            vendor: device_string(root, &dir, "vendor"),
            serial: serial(root, &dir),
            wwn: root
                .read_string(format!("{dir}/wwid"))
                .or_else(|| root.read_string(format!("{dir}/device/wwid"))),
            transport,
            rotational: root.read_flag(format!("{dir}/queue/rotational")),
            removable: root.read_flag(format!("{dir}/removable")).unwrap_or(false),
            read_only: root.read_flag(format!("{dir}/ro")).unwrap_or(false),
            by_id: self.links.get(LinkDir::Id, name),
            fs_label: self.links.get(LinkDir::Label, name).into_iter().next(),
            partitions: sorted_by_number(partitions),
            holders: root.list_dir(format!("{dir}/holders")),
            mountpoints: self.mounts.mountpoints(name, dev.as_deref()),
            swap: self.mounts.is_swap(name),
            holds_root: self.root_disks.contains(name),
        })
    }

    fn partition(&self, dir: &str, name: &str) -> Option<Partition> {
        let root = self.root;
        let number = root.read_string(format!("{dir}/partition"))?;
        let dev = root.read_string(format!("{dir}/dev"));
        Some(Partition {
            name: name.to_string(),
            path: format!("/dev/{name}"),
            number: number.parse().ok(),
            size_bytes: sectors_to_bytes(root.read_parse(format!("{dir}/size")).unwrap_or(0)),
            partlabel: self.links.get(LinkDir::Partlabel, name).into_iter().next(),
            fs_label: self.links.get(LinkDir::Label, name).into_iter().next(),
            holders: root.list_dir(format!("{dir}/holders")),
            mountpoints: self.mounts.mountpoints(name, dev.as_deref()),
            swap: self.mounts.is_swap(name),
        })
    }
}

/// sysfs `size` is always in 512-byte sectors, whatever the logical block size.
fn sectors_to_bytes(sectors: u64) -> u64 {
    sectors.saturating_mul(512)
}

fn sorted_by_number(mut parts: Vec<Partition>) -> Vec<Partition> {
    parts.sort_by_key(|p| (p.number.unwrap_or(u32::MAX), p.name.clone()));
    parts
}

/// From the kernel name first (it encodes the driver), then the device path in sysfs.
fn transport(root: &SysRoot, name: &str, dir: &str) -> Transport {
    let by_name = [
        ("nvme", Transport::Nvme),
        ("vd", Transport::Virtio),
        ("xvd", Transport::Xen),
        ("mmcblk", Transport::Mmc),
    ];
    if let Some((_, t)) = by_name.iter().find(|(p, _)| name.starts_with(p)) {
        return *t;
    }
    let base = root.canonical("/");
    let path = root
        .canonical(dir)
        .and_then(|p| Some(p.strip_prefix(base?).ok()?.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if path.contains("/ata") {
        Transport::Ata
    } else if name.starts_with("sd") || path.contains("/host") {
        Transport::Scsi
    } else if path.contains("/virtio") {
        Transport::Virtio
    } else {
        Transport::Unknown
    }
}

/// `device/model` and `device/vendor`; virtio's `vendor` is a PCI id (`0x1af4`), not a name.
fn device_string(root: &SysRoot, dir: &str, attr: &str) -> Option<String> {
    root.read_string(format!("{dir}/device/{attr}"))
        .filter(|v| !v.starts_with("0x"))
}

/// virtio-blk has `serial` on the disk, NVMe and MMC on the device, SCSI only in VPD page 0x80.
fn serial(root: &SysRoot, dir: &str) -> Option<String> {
    root.read_string(format!("{dir}/serial"))
        .or_else(|| root.read_string(format!("{dir}/device/serial")))
        .or_else(|| vpd_serial(&root.read_bytes(format!("{dir}/device/vpd_pg80"))?))
}

/// VPD page 0x80: a 4-byte header whose byte 3 is the length of the serial that follows.
fn vpd_serial(page: &[u8]) -> Option<String> {
    let len = usize::from(*page.get(3)?);
    let raw = page.get(4..4 + len)?;
    let serial = String::from_utf8_lossy(raw).trim().to_string();
    (!serial.is_empty()).then_some(serial)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
/// The `/dev/disk/by-*` directory a link lives in.
enum LinkDir {
    Id,
    Label,
    Partlabel,
}

/// udev's `/dev/disk/by-*` links, indexed by the kernel name they point at.
#[derive(Debug, Default)]
struct DevLinks(BTreeMap<(LinkDir, String), Vec<String>>);

impl DevLinks {
    fn read(root: &SysRoot) -> Self {
        let mut map: BTreeMap<(LinkDir, String), Vec<String>> = BTreeMap::new();
        for (kind, dir) in [
            (LinkDir::Id, "/dev/disk/by-id"),
            (LinkDir::Label, "/dev/disk/by-label"),
            (LinkDir::Partlabel, "/dev/disk/by-partlabel"),
        ] {
            for link in root.list_dir(dir) {
                let Some(target) = root.link_name(format!("{dir}/{link}")) else {
                    continue;
                };
                let value = match kind {
                    LinkDir::Id => format!("{dir}/{link}"),
                    _ => super::sysroot::unescape_udev(&link),
                };
                map.entry((kind, target)).or_default().push(value);
            }
        }
        Self(map)
    }

    fn get(&self, kind: LinkDir, name: &str) -> Vec<String> {
        self.0
            .get(&(kind, name.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn transport_from_name_then_sysfs_path() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "sda",
                "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda",
                Transport::Ata,
            ),
            (
                "sdb",
                "pci0000:00/0000:00:03.0/virtio1/host2/target2:0:0/2:0:0:0/block/sdb",
                Transport::Scsi,
            ),
            (
                "vda",
                "pci0000:00/0000:00:05.0/virtio2/block/vda",
                Transport::Virtio,
            ),
            ("xvda", "vbd-768/block/xvda", Transport::Xen),
            (
                "mmcblk0",
                "platform/mmc0/mmc0:0001/block/mmcblk0",
                Transport::Mmc,
            ),
            (
                "nvme0n1",
                "pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1",
                Transport::Nvme,
            ),
            ("zd0", "virtual/block/zd0", Transport::Unknown),
        ];
        std::fs::create_dir_all(dir.path().join("sys/block")).unwrap();
        for (name, path, _) in cases {
            let target = dir.path().join("sys/devices").join(path);
            std::fs::create_dir_all(&target).unwrap();
            std::os::unix::fs::symlink(&target, dir.path().join("sys/block").join(name)).unwrap();
        }
        let root = SysRoot::new(dir.path());
        for (name, _, expected) in cases {
            assert_eq!(
                transport(&root, name, &format!("/sys/block/{name}")),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn vpd_page_serials() {
        assert_eq!(vpd_serial(b"\0\x80\0\x05ab12 ").as_deref(), Some("ab12"));
        assert_eq!(vpd_serial(b"\0\x80\0\x40short"), None);
        assert_eq!(vpd_serial(b"\0"), None);
    }
}
