//! Leaving the installer: release the target (mounts, swap) and reboot into it.

use std::path::Path;

use nix::mount::{umount2, MntFlags};

use super::memory;
use super::tools::Tools;
use crate::{Error, Result};

/// Unmounts everything at or under `mnt`, deepest first, turns swap off and syncs. Best
/// effort: a busy mount must not keep a finished install from rebooting. Returns what it
/// did, for the console. `proc` is the `/proc` to read mounts and swaps from.
pub fn release(tools: &Tools, proc: &Path, mnt: &Path) -> Vec<String> {
    let mnt = mnt.display().to_string();
    let read = |name: &str| std::fs::read_to_string(proc.join(name)).unwrap_or_default();
    let mut lines = Vec::new();
    // The syscall, not `umount -R`: busybox's umount has no -R, and this needs no tool.
    let mounted = mounts_under(&read("self/mounts"), &mnt);
    let mut lazy = Vec::new();
    for point in mounted.iter().rev() {
        if umount2(point.as_str(), MntFlags::empty()).is_err()
            && umount2(point.as_str(), MntFlags::MNT_DETACH).is_ok()
        {
            lazy.push(point.as_str());
        }
    }
    let left = mounts_under(&read("self/mounts"), &mnt);
    lines.push(if mounted.is_empty() {
        format!("nothing was mounted under {mnt}")
    } else if left.is_empty() {
        let rev: Vec<&str> = mounted.iter().rev().map(String::as_str).collect();
        format!("unmounted {}", rev.join(" "))
    } else {
        format!("still mounted, rebooting anyway: {}", left.join(" "))
    });
    if !lazy.is_empty() {
        lines.push(format!("busy, detached lazily: {}", lazy.join(" ")));
    }
    if memory::swap_active(&read("swaps")) {
        let _ = tools.run("swapoff", &["-a"]);
        lines.push(if memory::swap_active(&read("swaps")) {
            "swap still on after swapoff -a".to_string()
        } else {
            "swap off".to_string()
        });
    }
    nix::unistd::sync();
    lines.push("synced".to_string());
    lines
        .into_iter()
        .map(|l| format!("nixos-lift: reboot: {l}"))
        .collect()
}

/// Reboots: through systemd when it runs (an orderly shutdown), else with the reboot syscall.
pub fn restart(tools: &Tools) -> Result<()> {
    if Path::new("/run/systemd/system").exists() {
        tools.run("systemctl", &["reboot"]).map(drop)
    } else {
        nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT)
            .map(drop)
            .map_err(|e| Error::io("rebooting", e.into()))
    }
}

/// The mount points at or under `mnt` in a mounts table (`/proc/self/mounts`), in mount
/// order; the kernel's octal escapes (`\040` for a space) decoded.
fn mounts_under(mounts: &str, mnt: &str) -> Vec<String> {
    let mnt = mnt.trim_end_matches('/');
    mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(crate::host::unescape_octal)
        .filter(|p| {
            p == mnt
                || p.strip_prefix(mnt)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mounts_under_the_target_in_mount_order() {
        let table = "rootfs / rootfs rw 0 0\n\
                     tmpfs /run tmpfs rw 0 0\n\
                     /dev/vda2 /mnt ext4 rw 0 0\n\
                     /dev/vda1 /mnt/boot vfat rw 0 0\n\
                     tmpfs /mnt2 tmpfs rw 0 0\n\
                     tmpfs /mnt/my\\040data tmpfs rw 0 0\n";
        assert_eq!(
            mounts_under(table, "/mnt/"),
            vec!["/mnt", "/mnt/boot", "/mnt/my data"]
        );
        assert!(mounts_under(table, "/srv").is_empty());
    }
}
