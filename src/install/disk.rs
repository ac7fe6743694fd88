//! Finding the target disk again after kexec, by the stable identity stage 1 recorded.
//!
//! Kernel names (`/dev/sda`, `/dev/nvme0n1`) can change between boots; WWN, serial and
//! `/dev/disk/by-id` links don't. The match must be unique, the size must be the same, and
//! nothing may be using the disk: only then may disko wipe it.

use crate::facts::Disk;
use crate::plan::TargetDisk;
use crate::refusal::{Guard, Refusal};
use crate::{Error, Result};

/// The disk stage 2 may wipe, and how it was recognised.
#[derive(Debug, Clone)]
pub struct Cleared {
    pub disk: Disk,
    /// `wwn`, `serial`, `by-id` or `size`, for the log.
    pub matched_by: &'static str,
}

impl Cleared {
    /// The device path disko gets: a by-id link when there is one, so the installed
    /// system's `fileSystems` and bootloader don't depend on the kernel name either.
    pub fn device(&self) -> &str {
        self.disk.by_id.first().unwrap_or(&self.disk.path)
    }
}

/// Finds `target` among `disks` (the installer's view) and checks it is safe to wipe.
pub fn find_target(target: &TargetDisk, disks: &[Disk]) -> Result<Cleared> {
    let (candidates, matched_by) = candidates(target, disks);
    let disk = match candidates.as_slice() {
        [] => {
            return Err(refused(
                Guard::TargetDiskMissing,
                format!("no disk with {} among [{}]", identity(target), names(disks)),
                "exactly one",
                "attach the disk stage 1 planned for, or rerun stage 1 to plan again",
            ))
        }
        [one] => *one,
        many => {
            return Err(refused(
                Guard::TargetDiskAmbiguous,
                format!(
                    "{} disks matching {}: {}",
                    many.len(),
                    identity(target),
                    many.iter()
                        .map(|d| d.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "exactly one",
                "detach the duplicates or set a serial/WWN on the target disk",
            ))
        }
    };
    if disk.size_bytes != target.size_bytes {
        return Err(refused(
            Guard::TargetDiskSize,
            format!(
                "{} (matched by {matched_by}) with {} bytes",
                disk.path, disk.size_bytes
            ),
            format!("the {} bytes stage 1 recorded", target.size_bytes),
            "this is not the planned disk, rerun stage 1",
        ));
    }
    check_unused(disk)?;
    Ok(Cleared {
        disk: disk.clone(),
        matched_by,
    })
}

/// The strongest identity stage 1 recorded decides; a weaker one is tried only when a
/// stronger one matches nothing (a kernel may not expose WWN for every transport).
fn candidates<'a>(target: &TargetDisk, disks: &'a [Disk]) -> (Vec<&'a Disk>, &'static str) {
    type Matcher = fn(&TargetDisk, &Disk) -> Option<bool>;
    let matchers: [(&'static str, Matcher); 3] = [
        ("wwn", |t, d| {
            t.wwn.as_ref().map(|w| d.wwn.as_deref() == Some(w.as_str()))
        }),
        ("serial", |t, d| {
            t.serial
                .as_ref()
                .map(|s| d.serial.as_deref() == Some(s.as_str()))
        }),
        ("by-id", |t, d| {
            t.by_id.as_ref().map(|id| d.by_id.iter().any(|l| l == id))
        }),
    ];
    for (name, matcher) in matchers {
        let found: Vec<&Disk> = disks
            .iter()
            .filter(|d| matcher(target, d) == Some(true))
            .collect();
        if !found.is_empty() {
            return (found, name);
        }
    }
    if target.wwn.is_some() || target.serial.is_some() || target.by_id.is_some() {
        return (Vec::new(), "none");
    }
    // virtio-blk without a serial has no stable identity: accept a unique disk of the same
    // size and transport, and let the ambiguity refusal catch the rest.
    let found = disks
        .iter()
        .filter(|d| d.size_bytes == target.size_bytes && d.transport == target.transport)
        .filter(|d| !d.read_only && !d.removable)
        .collect();
    (found, "size")
}

#[cfg(test)]
fn placeholder() -> Disk {
    Disk {
        name: String::new(),
        path: String::new(),
        size_bytes: 0,
        logical_sector_size: None,
        model: None,
        vendor: None,
        serial: None,
        wwn: None,
        transport: crate::facts::Transport::Unknown,
        rotational: None,
        removable: false,
        read_only: false,
        by_id: Vec::new(),
        fs_label: None,
        partitions: Vec::new(),
        holders: Vec::new(),
        mountpoints: Vec::new(),
        swap: false,
        holds_root: false,
    }
}

/// Mounted, swap, held by dm/md/LVM, read-only: any of these and disko must not run.
fn check_unused(disk: &Disk) -> Result<()> {
    let mut busy: Vec<String> = Vec::new();
    if disk.read_only {
        busy.push(format!("{} is read-only", disk.path));
    }
    let whole = std::iter::once((
        disk.path.as_str(),
        &disk.mountpoints,
        disk.swap,
        &disk.holders,
    ));
    let parts = disk
        .partitions
        .iter()
        .map(|p| (p.path.as_str(), &p.mountpoints, p.swap, &p.holders));
    for (path, mounts, swap, holders) in whole.chain(parts) {
        if !mounts.is_empty() {
            busy.push(format!("{path} is mounted on {}", mounts.join(", ")));
        }
        if swap {
            busy.push(format!("{path} is in use as swap"));
        }
        if !holders.is_empty() {
            busy.push(format!("{path} is held by {}", holders.join(", ")));
        }
    }
    if busy.is_empty() {
        return Ok(());
    }
    Err(refused(
        Guard::TargetDiskBusy,
        busy.join("; "),
        "a disk nothing uses",
        "unmount, swapoff or remove the holders (dmsetup remove, mdadm --stop, vgchange -an), \
         then rerun `nixos-lift install`",
    ))
}

fn identity(t: &TargetDisk) -> String {
    let mut parts = Vec::new();
    if let Some(w) = &t.wwn {
        parts.push(format!("wwn={w}"));
    }
    if let Some(s) = &t.serial {
        parts.push(format!("serial={s}"));
    }
    if let Some(id) = &t.by_id {
        parts.push(format!("by-id={id}"));
    }
    if parts.is_empty() {
        parts.push(format!("size={} transport={:?}", t.size_bytes, t.transport).to_lowercase());
    }
    format!("{} (was {})", parts.join(" "), t.path)
}

fn names(disks: &[Disk]) -> String {
    disks
        .iter()
        .map(|d| {
            format!(
                "{} serial={} size={}",
                d.path,
                d.serial.as_deref().unwrap_or("-"),
                d.size_bytes
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn refused(
    guard: Guard,
    found: impl Into<String>,
    needed: impl Into<String>,
    way_out: &str,
) -> Error {
    Error::refused("partition", Refusal::new(guard, found, needed, way_out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::facts::{Partition, Transport};

    const GIB: u64 = 1 << 30;

    fn disk(name: &str, serial: Option<&str>, size: u64) -> Disk {
        Disk {
            name: name.into(),
            path: format!("/dev/{name}"),
            size_bytes: size,
            serial: serial.map(str::to_string),
            transport: Transport::Virtio,
            by_id: serial
                .map(|s| vec![format!("/dev/disk/by-id/virtio-{s}")])
                .unwrap_or_default(),
            ..placeholder()
        }
    }

    fn target(name: &str, serial: Option<&str>, size: u64) -> TargetDisk {
        TargetDisk {
            path: format!("/dev/{name}"),
            name: name.into(),
            by_id: serial.map(|s| format!("/dev/disk/by-id/virtio-{s}")),
            serial: serial.map(str::to_string),
            wwn: None,
            size_bytes: size,
            transport: Transport::Virtio,
        }
    }

    fn guard_of(err: Error) -> &'static str {
        match err {
            Error::Refused { refusal, .. } => refusal.guard.as_str(),
            other => panic!("expected a refusal, got {other}"),
        }
    }

    #[test]
    fn finds_the_disk_by_serial_under_a_new_name() {
        // Stage 1 saw vda; after kexec the disks enumerate the other way round.
        let disks = [
            disk("vda", Some("data"), 20 * GIB),
            disk("vdb", Some("root"), 10 * GIB),
        ];
        let found = find_target(&target("vda", Some("root"), 10 * GIB), &disks).unwrap();
        assert_eq!(found.disk.path, "/dev/vdb");
        assert_eq!(found.matched_by, "serial");
        assert_eq!(found.device(), "/dev/disk/by-id/virtio-root");
    }

    #[test]
    fn wwn_wins_over_a_serial() {
        let mut a = disk("sda", Some("same"), GIB);
        a.wwn = Some("0x5000".into());
        let b = disk("sdb", Some("same"), GIB);
        let mut t = target("sdb", Some("same"), GIB);
        t.wwn = Some("0x5000".into());
        let found = find_target(&t, &[b, a]).unwrap();
        assert_eq!(
            (found.disk.path.as_str(), found.matched_by),
            ("/dev/sda", "wwn")
        );
    }

    #[test]
    fn refuses_when_the_identity_matches_nothing() {
        let disks = [disk("vda", Some("other"), 10 * GIB)];
        let err = find_target(&target("vda", Some("root"), 10 * GIB), &disks).unwrap_err();
        assert!(err.to_string().contains("serial=root"), "{err}");
        assert_eq!(guard_of(err), "target-disk-missing");
    }

    #[test]
    fn never_falls_back_to_size_when_a_serial_was_recorded() {
        // Same size, same old name, but a different serial: a different disk.
        let disks = [disk("vda", None, 10 * GIB)];
        let err = find_target(&target("vda", Some("root"), 10 * GIB), &disks).unwrap_err();
        assert_eq!(guard_of(err), "target-disk-missing");
    }

    #[test]
    fn refuses_two_disks_with_the_same_serial() {
        let disks = [disk("vda", Some("dup"), GIB), disk("vdb", Some("dup"), GIB)];
        let err = find_target(&target("vda", Some("dup"), GIB), &disks).unwrap_err();
        assert!(err.to_string().contains("/dev/vda, /dev/vdb"), "{err}");
        assert_eq!(guard_of(err), "target-disk-ambiguous");
    }

    #[test]
    fn refuses_a_size_mismatch() {
        let disks = [disk("vda", Some("root"), 11 * GIB)];
        let err = find_target(&target("vda", Some("root"), 10 * GIB), &disks).unwrap_err();
        assert!(err.to_string().contains("11811160064 bytes"), "{err}");
        assert_eq!(guard_of(err), "target-disk-size");
    }

    #[test]
    fn without_any_identity_a_unique_size_matches_and_two_are_ambiguous() {
        let one = [disk("vda", None, 10 * GIB), disk("vdb", None, 20 * GIB)];
        let found = find_target(&target("vda", None, 10 * GIB), &one).unwrap();
        assert_eq!(
            (found.disk.path.as_str(), found.matched_by),
            ("/dev/vda", "size")
        );
        let two = [disk("vda", None, 10 * GIB), disk("vdb", None, 10 * GIB)];
        let err = find_target(&target("vda", None, 10 * GIB), &two).unwrap_err();
        assert_eq!(guard_of(err), "target-disk-ambiguous");
    }

    #[test]
    fn refuses_a_mounted_swapped_or_held_disk() {
        let t = target("vda", Some("root"), GIB);
        let part = |mounts: Vec<String>, swap: bool, holders: Vec<String>| Partition {
            name: "vda1".into(),
            path: "/dev/vda1".into(),
            number: Some(1),
            size_bytes: GIB / 2,
            partlabel: None,
            fs_label: None,
            holders,
            mountpoints: mounts,
            swap,
        };
        for (p, expect) in [
            (
                part(vec!["/mnt".into()], false, vec![]),
                "/dev/vda1 is mounted on /mnt",
            ),
            (part(vec![], true, vec![]), "/dev/vda1 is in use as swap"),
            (
                part(vec![], false, vec!["dm-0".into()]),
                "/dev/vda1 is held by dm-0",
            ),
        ] {
            let mut d = disk("vda", Some("root"), GIB);
            d.partitions.push(p);
            let err = find_target(&t, &[d]).unwrap_err();
            assert!(err.to_string().contains(expect), "{err}");
            assert_eq!(guard_of(err), "target-disk-busy");
        }
    }
}
