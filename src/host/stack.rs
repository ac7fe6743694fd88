//! Following a block device down its stack (dm, LVM, md, partitions) to the whole disks under it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::mounts::MountTable;
use super::sysroot::list_dir;
use super::SysRoot;

/// Deeper than any real dm-crypt-on-LVM-on-md stack; stops a cyclic fixture.
const MAX_STACK_DEPTH: usize = 16;

/// Kernel names of the whole disks that hold the running root filesystem.
pub fn root_disks(root: &SysRoot, mounts: &MountTable) -> BTreeSet<String> {
    let Some(mount) = mounts.root_mount() else {
        return BTreeSet::new();
    };
    // btrfs reports an anonymous 0:N device; its source still names the real one.
    let start = if mount.dev.starts_with("0:") {
        source_sysfs_dir(root, &mount.source)
    } else {
        root.canonical(format!("/sys/dev/block/{}", mount.dev))
    };
    let disks = start.map(|dir| disks_under(root, dir)).unwrap_or_default();
    if disks.is_empty() {
        tracing::warn!(
            dev = %mount.dev, source = %mount.source,
            "no disk found under the root filesystem ({} on {})", mount.fs_type, mount.source
        );
    } else {
        tracing::info!(
            dev = %mount.dev, source = %mount.source,
            "root filesystem is on {}", disks.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    disks
}

/// `/dev/mapper/vg-root` → its `/sys/class/block/dm-N` directory.
fn source_sysfs_dir(root: &SysRoot, source: &str) -> Option<PathBuf> {
    let dev_path = Path::new(source).strip_prefix("/dev").ok()?;
    let name = root
        .link_name(Path::new("/dev").join(dev_path))
        .or_else(|| dev_path.file_name()?.to_str().map(str::to_string))?;
    root.canonical(format!("/sys/class/block/{name}"))
}

/// Whole disks under a canonical sysfs block directory: a partition's device is its parent
/// directory; a dm or md device's are those under its `slaves/`.
pub fn disks_under(root: &SysRoot, start: PathBuf) -> BTreeSet<String> {
    let mut disks = BTreeSet::new();
    let mut work = vec![(start, 0)];
    while let Some((dir, depth)) = work.pop() {
        if depth > MAX_STACK_DEPTH {
            continue;
        }
        if dir.join("partition").exists() {
            // The parent may itself be stacked (a partition on md RAID).
            if let Some(parent) = dir.parent() {
                work.push((parent.to_path_buf(), depth + 1));
            }
            continue;
        }
        let slaves = list_dir(&dir.join("slaves"));
        if slaves.is_empty() {
            disks.extend(file_name(&dir));
        }
        for slave in slaves {
            if let Some(next) = root.canonical(format!("/sys/class/block/{slave}")) {
                work.push((next, depth + 1));
            }
        }
    }
    disks
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    /// A partition on an md array on partitions of two disks: `md127p1` → `md127` →
    /// `vda2` + `vdb2` → `vda` + `vdb`.
    #[test]
    fn partitions_on_md_are_followed_to_the_member_disks() {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let md = sys.join("devices/virtual/block/md127");
        fs::create_dir_all(md.join("md127p1")).unwrap();
        fs::write(md.join("md127p1/partition"), "1\n").unwrap();
        fs::create_dir_all(md.join("slaves")).unwrap();
        fs::create_dir_all(sys.join("class/block")).unwrap();
        for disk in ["vda", "vdb"] {
            let part = sys.join(format!("devices/pci/{disk}/{disk}2"));
            fs::create_dir_all(&part).unwrap();
            fs::write(part.join("partition"), "2\n").unwrap();
            symlink(&part, md.join(format!("slaves/{disk}2"))).unwrap();
            symlink(&part, sys.join(format!("class/block/{disk}2"))).unwrap();
        }
        let root = SysRoot::new(dir.path());
        let disks = disks_under(&root, md.join("md127p1"));
        assert_eq!(disks.into_iter().collect::<Vec<_>>(), ["vda", "vdb"]);
    }
}
