//! Choosing the target disk: exactly one, by a stable identity, never "the first disk".

use super::{GuardResult, OtherDisk, TargetDisk};
use crate::config::DiskSelector;
use crate::facts::Disk;

/// Smallest target: ESP + a minimal NixOS system + room for one rebuild.
pub const MIN_TARGET_BYTES: u64 = 4 << 30;

/// Names of block devices that are never a target: virtual, optical, RAM-backed.
const VIRTUAL_PREFIXES: [&str; 8] = ["loop", "zram", "ram", "sr", "nbd", "md", "dm-", "fd"];
/// Filesystem labels of cloud config drives.
const CONFIG_DRIVE_LABELS: [&str; 2] = ["cidata", "config-2"];

pub struct TargetChoice {
    pub target: Option<TargetDisk>,
    pub other_disks: Vec<OtherDisk>,
    pub guard: GuardResult,
}

/// Why `disk` can never be a target, or `None` when it can.
pub fn ineligible(disk: &Disk) -> Option<String> {
    if VIRTUAL_PREFIXES.iter().any(|p| disk.name.starts_with(p)) {
        return Some(format!("{} is a virtual or optical device", disk.name));
    }
    let labels = std::iter::once(&disk.fs_label).chain(disk.partitions.iter().map(|p| &p.fs_label));
    if let Some(label) = labels
        .flatten()
        .find(|l| CONFIG_DRIVE_LABELS.contains(&l.to_ascii_lowercase().as_str()))
    {
        return Some(format!("cloud config drive (label {label})"));
    }
    if disk.read_only {
        return Some("read-only".into());
    }
    if disk.removable {
        return Some("removable".into());
    }
    if disk.size_bytes < MIN_TARGET_BYTES {
        return Some(format!(
            "too small: {} MiB, needed at least {} MiB",
            disk.size_bytes >> 20,
            MIN_TARGET_BYTES >> 20
        ));
    }
    None
}

/// Picks the target for `selector` among `disks`; the guard `target-disk` says why not.
pub fn choose_target(disks: &[Disk], selector: &DiskSelector) -> TargetChoice {
    let needed = match selector {
        DiskSelector::Auto => "exactly one eligible disk holding the root filesystem".to_string(),
        other => format!("exactly one eligible disk matching {other}"),
    };
    let matches: Vec<&Disk> = disks
        .iter()
        .filter(|d| match selector {
            DiskSelector::Auto => d.holds_root,
            DiskSelector::ById(id) => d.by_id.iter().any(|l| l == id),
            DiskSelector::Path(path) => &d.path == path || d.by_id.iter().any(|l| l == path),
        })
        .collect();
    let refuse = |found: String, way_out: &str| TargetChoice {
        target: None,
        other_disks: disks.iter().map(|d| left_alone(d, None)).collect(),
        guard: GuardResult {
            name: crate::refusal::Guard::TargetDisk,
            ok: false,
            found,
            needed: needed.clone(),
            way_out: way_out.into(),
        },
    };
    let way_out = "set `disk:` in the config to the /dev/disk/by-id/... link of the disk to wipe";
    let disk = match matches.as_slice() {
        [] if disks.is_empty() => return refuse("no disks".into(), way_out),
        [] => {
            let names: Vec<&str> = disks.iter().map(|d| d.path.as_str()).collect();
            let what = match selector {
                DiskSelector::Auto => "no disk holds the root filesystem".to_string(),
                other => format!("no disk matches {other}"),
            };
            return refuse(format!("{what} (disks: {})", names.join(", ")), way_out);
        }
        [one] => *one,
        many => {
            let names: Vec<&str> = many.iter().map(|d| d.path.as_str()).collect();
            return refuse(format!("ambiguous: {}", names.join(", ")), way_out);
        }
    };
    if let Some(reason) = ineligible(disk) {
        return refuse(
            format!("{}: {reason}", disk.path),
            "choose another disk with `disk:`, or a larger instance disk",
        );
    }
    let why = match selector {
        DiskSelector::Auto => "holds the root filesystem".to_string(),
        other => format!("matches {other}"),
    };
    TargetChoice {
        target: Some(stable_identity(disk)),
        other_disks: disks
            .iter()
            .filter(|d| d.path != disk.path)
            .map(|d| left_alone(d, Some(selector)))
            .collect(),
        guard: GuardResult {
            name: crate::refusal::Guard::TargetDisk,
            ok: true,
            found: format!("{} ({why}, {} MiB)", disk.path, disk.size_bytes >> 20),
            needed,
            way_out: String::new(),
        },
    }
}

fn stable_identity(disk: &Disk) -> TargetDisk {
    // Prefer a link built from the serial over wwn-/eui- links: it is what people recognise.
    let by_id = disk
        .by_id
        .iter()
        .find(|l| !l.contains("/wwn-") && !l.contains("-eui."))
        .or(disk.by_id.first())
        .cloned();
    TargetDisk {
        path: disk.path.clone(),
        name: disk.name.clone(),
        by_id,
        serial: disk.serial.clone(),
        wwn: disk.wwn.clone(),
        size_bytes: disk.size_bytes,
        transport: disk.transport,
    }
}

fn left_alone(disk: &Disk, selector: Option<&DiskSelector>) -> OtherDisk {
    let mut reason = match (ineligible(disk), selector) {
        (Some(why), _) => why,
        (None, None) => "no target was chosen".into(),
        (None, Some(DiskSelector::Auto)) => {
            "not the target: `disk: auto` takes the disk holding the root filesystem".into()
        }
        (None, Some(sel)) => format!("not the target: `disk:` selects {sel}"),
    };
    let mounts: Vec<&str> = disk
        .mountpoints
        .iter()
        .chain(disk.partitions.iter().flat_map(|p| &p.mountpoints))
        .map(String::as_str)
        .collect();
    if !mounts.is_empty() {
        reason.push_str(&format!(" (mounted at {})", mounts.join(", ")));
    }
    OtherDisk {
        path: disk.path.clone(),
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::facts::Transport;

    fn disk(name: &str, gib: u64, holds_root: bool) -> Disk {
        Disk {
            name: name.into(),
            path: format!("/dev/{name}"),
            size_bytes: gib << 30,
            logical_sector_size: Some(512),
            model: None,
            vendor: None,
            serial: Some(format!("SER-{name}")),
            wwn: None,
            transport: Transport::Virtio,
            rotational: Some(false),
            removable: false,
            read_only: false,
            by_id: vec![format!("/dev/disk/by-id/virtio-SER-{name}")],
            fs_label: None,
            partitions: vec![],
            holders: vec![],
            mountpoints: vec![],
            swap: false,
            holds_root,
        }
    }

    #[test]
    fn auto_takes_the_root_disk_and_lists_the_rest() {
        let mut data = disk("vdb", 10, false);
        data.mountpoints = vec!["/mnt/data".into()];
        let choice = choose_target(&[disk("vda", 8, true), data], &DiskSelector::Auto);
        assert!(choice.guard.ok, "{:?}", choice.guard);
        let target = choice.target.unwrap();
        assert_eq!(target.path, "/dev/vda");
        assert_eq!(target.serial.as_deref(), Some("SER-vda"));
        assert_eq!(
            target.by_id.as_deref(),
            Some("/dev/disk/by-id/virtio-SER-vda")
        );
        assert_eq!(choice.other_disks.len(), 1);
        assert_eq!(choice.other_disks[0].path, "/dev/vdb");
        assert!(choice.other_disks[0].reason.contains("not the target"));
        assert!(choice.other_disks[0].reason.contains("/mnt/data"));
    }

    #[test]
    fn auto_refuses_root_on_two_disks() {
        let choice = choose_target(
            &[disk("sda", 8, true), disk("sdb", 8, true)],
            &DiskSelector::Auto,
        );
        assert!(!choice.guard.ok);
        assert!(choice.guard.found.contains("ambiguous: /dev/sda, /dev/sdb"));
        assert!(choice.target.is_none());
    }

    #[test]
    fn auto_refuses_without_a_root_disk() {
        let choice = choose_target(&[disk("vdb", 8, false)], &DiskSelector::Auto);
        assert!(!choice.guard.ok);
        assert!(choice
            .guard
            .found
            .contains("no disk holds the root filesystem"));
    }

    #[test]
    fn explicit_selectors_match_by_id_or_path() {
        let disks = [disk("vda", 8, true), disk("vdb", 20, false)];
        let by_id = DiskSelector::ById("/dev/disk/by-id/virtio-SER-vdb".into());
        assert_eq!(choose_target(&disks, &by_id).target.unwrap().name, "vdb");
        let path = DiskSelector::Path("/dev/vdb".into());
        let choice = choose_target(&disks, &path);
        assert_eq!(choice.target.unwrap().name, "vdb");
        assert!(choice.other_disks[0].reason.contains("/dev/vdb"));
        let missing = DiskSelector::ById("/dev/disk/by-id/nope".into());
        assert!(!choose_target(&disks, &missing).guard.ok);
    }

    #[test]
    fn ineligible_disks_are_refused_with_the_reason() {
        let mut ro = disk("vda", 8, true);
        ro.read_only = true;
        assert!(choose_target(&[ro], &DiskSelector::Auto)
            .guard
            .found
            .contains("read-only"));
        let small = disk("vda", 2, true);
        assert!(choose_target(&[small], &DiskSelector::Auto)
            .guard
            .found
            .contains("too small"));
        let mut cidata = disk("vdb", 8, false);
        cidata.fs_label = Some("CIDATA".into());
        assert!(ineligible(&cidata).unwrap().contains("config drive"));
        let mut usb = disk("sdc", 8, false);
        usb.removable = true;
        assert_eq!(ineligible(&usb).as_deref(), Some("removable"));
        assert!(ineligible(&disk("loop0", 8, false)).is_some());
    }
}
