//! Where stage 1 keeps the installer between the download and the kexec load, and the watch on
//! MemAvailable while it does. The plan decides ([`crate::plan::memory`]); this module makes
//! the directory, removes it on every failure, and empties it once the kernel holds its copy.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::host::{mem_available, SysRoot};
use crate::plan::memory::{RootFsSpace, Staging};
use crate::refusal::{Guard, Refusal};
use crate::{Error, Result};

/// Stage 1's own tmpfs mount point (RAM staging).
pub const TMPFS_DIR: &str = "/run/nixos-lift/work";
/// The run marker's directory: the one place stage 1 writes on the root filesystem.
pub const MARKER_DIR: &str = "/var/lib/nixos-lift";
/// Root-filesystem staging, next to the run marker.
pub const ROOTFS_DIR: &str = "/var/lib/nixos-lift/staging";

const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The staging directory of one run. Dropping it removes what it holds (and unmounts stage 1's
/// tmpfs), unless [`StagingDir::keep`] was called.
pub struct StagingDir {
    dir: PathBuf,
    mounted: bool,
    keep: bool,
}

impl StagingDir {
    /// Makes the staging the plan chose: a fresh tmpfs of the planned size on [`TMPFS_DIR`], or
    /// an emptied [`ROOTFS_DIR`].
    pub fn prepare(staging: Staging) -> Result<Self> {
        match staging {
            Staging::Tmpfs { size_bytes } => Self::tmpfs(size_bytes),
            Staging::RootFs => Self::rootfs(),
        }
    }

    fn tmpfs(size_bytes: u64) -> Result<Self> {
        let dir = PathBuf::from(TMPFS_DIR);
        let ctx = || format!("mounting stage 1's tmpfs on {TMPFS_DIR}");
        // A run that died before cleaning up may have left its mount.
        let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(ctx(), e))?;
        let size_kib = size_bytes.div_ceil(1024);
        let data = format!("size={size_kib}k,mode=0700");
        nix::mount::mount(
            Some("nixos-lift"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(|e| Error::io(ctx(), e.into()))?;
        tracing::info!(
            "staging: tmpfs of {} MiB at {TMPFS_DIR}",
            size_bytes.div_ceil(1 << 20)
        );
        Ok(Self {
            dir,
            mounted: true,
            keep: false,
        })
    }

    fn rootfs() -> Result<Self> {
        let dir = PathBuf::from(ROOTFS_DIR);
        let ctx = || format!("creating the staging directory {ROOTFS_DIR}");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(ctx(), e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(ctx(), e))?;
        // The plan saw a disk; refuse rather than fill RAM if that changed under us.
        if is_ram_fs(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::refused(
                "download",
                Refusal::new(
                    Guard::Memory,
                    format!("{ROOTFS_DIR} on a RAM-backed filesystem"),
                    "the root filesystem for staging (RAM is short)",
                    "choose an instance type with more RAM",
                ),
            ));
        }
        let free = root_fs_space(&SysRoot::new("/")).map_or(0, |s| s.free_bytes);
        tracing::info!(
            "staging: root filesystem at {ROOTFS_DIR} ({} MiB free)",
            free >> 20
        );
        Ok(Self {
            dir,
            mounted: false,
            keep: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Leaves the staged files in place (a rehearsal, which stops before the kexec load).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        clear_dir(&self.dir);
        if self.mounted {
            let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn clear_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}

pub fn is_ram_fs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| {
            // The field's C type differs between targets.
            #[allow(clippy::unnecessary_cast)]
            let t = s.filesystem_type().0 as i64;
            t == TMPFS_MAGIC || t == RAMFS_MAGIC
        })
        .unwrap_or(false)
}

/// The filesystem [`ROOTFS_DIR`] would live on (its nearest existing ancestor), for the plan.
/// `None` for a fixture root, which is not this machine.
pub fn root_fs_space(root: &SysRoot) -> Option<RootFsSpace> {
    if !root.is_host() {
        return None;
    }
    let mut dir = Path::new(ROOTFS_DIR);
    while !dir.exists() {
        dir = dir.parent()?;
    }
    let vfs = nix::sys::statvfs::statvfs(dir).ok()?;
    // The field types differ between targets.
    #[allow(clippy::unnecessary_cast)]
    let free_bytes = vfs.blocks_available() as u64 * vfs.fragment_size() as u64;
    Some(RootFsSpace {
        free_bytes,
        ram_backed: is_ram_fs(dir),
        read_only: vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
    })
}

/// A thread that samples MemAvailable until dropped, so stage 1 can log the lowest it saw,
/// including during the kexec load (a blocking syscall).
pub struct MemWatch {
    root: SysRoot,
    lowest: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl MemWatch {
    const INTERVAL: Duration = Duration::from_millis(100);

    pub fn start(root: SysRoot) -> Self {
        let lowest = Arc::new(AtomicU64::new(mem_available(&root).unwrap_or(u64::MAX)));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s, r) = (lowest.clone(), stop.clone(), root.clone());
        // Without the thread the log line says less; stage 1 goes on either way.
        let _ = std::thread::Builder::new()
            .name("memwatch".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    if let Some(now) = mem_available(&r) {
                        l.fetch_min(now, Ordering::Relaxed);
                    }
                    std::thread::sleep(Self::INTERVAL);
                }
            });
        Self { root, lowest, stop }
    }

    /// The lowest MemAvailable seen so far, in bytes.
    pub fn lowest(&self) -> Option<u64> {
        let now = mem_available(&self.root).unwrap_or(u64::MAX);
        let low = self.lowest.fetch_min(now, Ordering::Relaxed).min(now);
        (low != u64::MAX).then_some(low)
    }
}

impl Drop for MemWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
