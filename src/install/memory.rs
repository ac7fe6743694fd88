//! Making room: NixOS evaluation alone takes 1.5-2 GiB, and the installer's store lives in
//! RAM. Below [`TIGHT_BYTES`] stage 2 adds zram swap before it evaluates, and, once disko has
//! made the target's filesystem, a swap file there for the install phase ([`TargetSwap`]),
//! with the builds' temporary files next to it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::tools::Tools;
use crate::{Error, Result};

/// Below this much RAM, evaluation risks the OOM killer.
pub const TIGHT_BYTES: u64 = 2 << 30;

/// `MemTotal` from a meminfo file, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    crate::host::meminfo_bytes(meminfo, "MemTotal")
}

/// Whether any swap is active (`/proc/swaps` has more than its header).
pub fn swap_active(swaps: &str) -> bool {
    swaps.lines().count() > 1
}

/// Adds a zram swap device of half the RAM when memory is tight and no swap is on.
/// Returns what it did, for the log; a failure is a warning, not a stop.
pub fn ensure_swap(root: &Path, tools: &Tools) -> Option<String> {
    let meminfo = std::fs::read_to_string(root.join("proc/meminfo")).ok()?;
    let total = mem_total(&meminfo)?;
    let swaps = std::fs::read_to_string(root.join("proc/swaps")).unwrap_or_default();
    if total >= TIGHT_BYTES || swap_active(&swaps) {
        return None;
    }
    let size = format!("{}M", total / 2 / (1 << 20));
    let result = (|| {
        let dev = tools.run(
            "zramctl",
            &["--find", "--size", &size, "--algorithm", "zstd"],
        )?;
        let dev = dev.trim().to_string();
        tools.run("mkswap", &[&dev])?;
        tools.run("swapon", &["--priority", "100", &dev])?;
        Ok::<_, crate::Error>(dev)
    })();
    Some(match result {
        Ok(dev) => format!(
            "memory is tight ({} MiB): zram swap of {size} on {dev}",
            total >> 20
        ),
        Err(e) => format!(
            "memory is tight ({} MiB) and zram swap failed: {e}",
            total >> 20
        ),
    })
}

/// The swap file on the target, relative to its root; removed again after the install phase.
pub const TARGET_SWAP_FILE: &str = ".nixos-lift-swap";
/// The builds' temporary files on the target while the swap file is on (`TMPDIR`).
pub const TARGET_TMP_DIR: &str = ".nixos-lift-tmp";
/// At most this much swap on the target: with the RAM, enough to evaluate and build NixOS.
const TARGET_SWAP_MAX: u64 = 1 << 30;
/// A quarter of the target's free space at most, and no swap file below this size.
const TARGET_SWAP_MIN: u64 = 128 << 20;
/// Filesystems where a plain file of written zeros is a valid swap file (btrfs needs NOCOW).
const SWAP_FILESYSTEMS: [&str; 3] = ["ext4", "ext3", "xfs"];

/// How much swap to put on a target filesystem of `fstype` with `free` bytes, or why none.
pub fn target_swap_bytes(fstype: Option<&str>, free: u64) -> std::result::Result<u64, String> {
    let Some(fstype) = fstype else {
        return Err("nothing is mounted there".into());
    };
    if !SWAP_FILESYSTEMS.contains(&fstype) {
        return Err(format!(
            "the target is {fstype}, not one of {}",
            SWAP_FILESYSTEMS.join(", ")
        ));
    }
    // Whole MiB, so mkswap's page-sized header never leaves a partial page.
    let size = (free / 4).min(TARGET_SWAP_MAX) & !((1 << 20) - 1);
    if size < TARGET_SWAP_MIN {
        return Err(format!(
            "a quarter of its {} MiB free is below {} MiB",
            free >> 20,
            TARGET_SWAP_MIN >> 20
        ));
    }
    Ok(size)
}

/// The filesystem type mounted at `point` in a mounts table (the last mount wins).
fn fstype_at(mounts: &str, point: &Path) -> Option<String> {
    let point = point.to_str()?.trim_end_matches('/');
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
            (crate::host::unescape_octal(mnt) == point).then(|| fstype.to_string())
        })
        .next_back()
}

/// A swap file on the target's filesystem, on while `nixos-install` evaluates and builds.
/// [`TargetSwap::release`] turns it off and deletes it; the installed system never sees it.
pub struct TargetSwap {
    file: PathBuf,
    tmp: PathBuf,
}

impl TargetSwap {
    /// Adds the swap file when memory is tight (below [`TIGHT_BYTES`] of RAM) and `mnt` is a
    /// filesystem that can hold one. Returns it (if on) and, when memory is tight, what
    /// happened, for the log; a failure is a note, not a stop, as with zram.
    pub fn add(root: &Path, mnt: &Path, tools: &Tools) -> (Option<Self>, Option<String>) {
        let read = |name: &str| std::fs::read_to_string(root.join(name)).unwrap_or_default();
        let total = match mem_total(&read("proc/meminfo")) {
            Some(total) if total < TIGHT_BYTES => total,
            _ => return (None, None),
        };
        let fstype = fstype_at(&read("proc/self/mounts"), mnt);
        // The field types differ between targets.
        #[allow(clippy::unnecessary_cast)]
        let free = nix::sys::statvfs::statvfs(mnt)
            .map(|v| v.blocks_available() as u64 * v.fragment_size() as u64)
            .unwrap_or(0);
        let size = match target_swap_bytes(fstype.as_deref(), free) {
            Ok(size) => size,
            Err(why) => {
                return (
                    None,
                    Some(format!(
                        "memory is tight ({} MiB), no swap on the target ({}): {why}",
                        total >> 20,
                        mnt.display()
                    )),
                )
            }
        };
        let fstype = fstype.unwrap_or_default();
        let swap = Self {
            file: mnt.join(TARGET_SWAP_FILE),
            tmp: mnt.join(TARGET_TMP_DIR),
        };
        match swap.enable(size, tools) {
            Ok(()) => {
                let note = format!(
                    "memory is tight ({} MiB): {} MiB of swap on the target ({}, {fstype}) and \
                     the builds' temporary files in {}",
                    total >> 20,
                    size >> 20,
                    swap.file.display(),
                    swap.tmp.display()
                );
                (Some(swap), Some(note))
            }
            Err(e) => {
                let _ = swap.remove();
                (
                    None,
                    Some(format!(
                        "memory is tight ({} MiB) and swap on the target failed: {e}",
                        total >> 20
                    )),
                )
            }
        }
    }

    fn enable(&self, size: u64, tools: &Tools) -> Result<()> {
        let ctx = || format!("writing {}", self.file.display());
        // Written zeros, not fallocate: swapon refuses files with unwritten extents on some
        // filesystems. 0600: swapped pages may hold secrets.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.file)
            .map_err(|e| Error::io(ctx(), e))?;
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..size / chunk.len() as u64 {
            file.write_all(&chunk).map_err(|e| Error::io(ctx(), e))?;
        }
        file.sync_all().map_err(|e| Error::io(ctx(), e))?;
        drop(file);
        let path = self.file.display().to_string();
        tools.run("mkswap", &[&path])?;
        // The kernel's default priority (negative) is below zram's 100: compressed RAM first.
        tools.run("swapon", &[&path])?;
        std::fs::create_dir_all(&self.tmp)
            .map_err(|e| Error::io(format!("creating {}", self.tmp.display()), e))
    }

    /// `TMPDIR` for the tools of the install phase.
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// Turns the swap file off and deletes it with the temporary files. Returns what it did.
    pub fn release(self, tools: &Tools) -> String {
        let path = self.file.display().to_string();
        match tools.run("swapoff", &[&path]).and_then(|_| self.remove()) {
            Ok(()) => format!("swap on the target released ({path} removed)"),
            Err(e) => format!("releasing the swap on the target failed: {e}"),
        }
    }

    fn remove(&self) -> Result<()> {
        for (what, r) in [
            (&self.file, std::fs::remove_file(&self.file)),
            (&self.tmp, std::fs::remove_dir_all(&self.tmp)),
        ] {
            match r {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io(format!("removing {}", what.display()), e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_the_target_swap_by_filesystem_and_free_space() {
        const MIB: u64 = 1 << 20;
        assert_eq!(target_swap_bytes(Some("ext4"), 20 << 30), Ok(1 << 30));
        assert_eq!(
            target_swap_bytes(Some("xfs"), 1000 * MIB + 3),
            Ok(250 * MIB)
        );
        assert!(target_swap_bytes(Some("ext4"), 500 * MIB)
            .unwrap_err()
            .contains("below 128 MiB"));
        for fs in ["btrfs", "tmpfs"] {
            assert!(target_swap_bytes(Some(fs), 20 << 30)
                .unwrap_err()
                .contains(fs));
        }
        assert!(target_swap_bytes(None, 20 << 30)
            .unwrap_err()
            .contains("nothing is mounted"));
    }

    #[test]
    fn finds_the_filesystem_mounted_at_the_target() {
        let table = "tmpfs /mnt tmpfs rw 0 0\n/dev/vda1 /mnt ext4 rw 0 0\n/dev/vda2 /mnt/boot vfat rw 0 0\n";
        assert_eq!(
            fstype_at(table, Path::new("/mnt/")).as_deref(),
            Some("ext4")
        );
        assert_eq!(fstype_at(table, Path::new("/srv")), None);
    }

    #[test]
    fn reads_memtotal_and_swaps() {
        assert_eq!(
            mem_total("MemTotal:        1014560 kB\nMemFree: 1 kB\n"),
            Some(1014560 * 1024)
        );
        assert!(!swap_active("Filename\tType\tSize\tUsed\tPriority\n"));
        assert!(swap_active(
            "Filename\tType\n/dev/zram0 partition 1 0 100\n"
        ));
    }
}
