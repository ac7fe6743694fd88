//! Leaving the installer: unmount the target and reboot into it.

use std::path::Path;

use super::tools::Tools;
use crate::{Error, Result};

/// Unmounts `mnt`, turns swap off and reboots: through systemd when it runs (an orderly
/// shutdown), else with the reboot syscall.
pub fn reboot(tools: &Tools, mnt: &Path) -> Result<()> {
    let mnt = mnt.display().to_string();
    // Best effort: a busy mount must not keep a finished install from rebooting.
    let _ = tools.run("umount", &["-R", &mnt]);
    let _ = tools.run("swapoff", &["-a"]);
    nix::unistd::sync();
    if Path::new("/run/systemd/system").exists() {
        tools.run("systemctl", &["reboot"]).map(drop)
    } else {
        nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT)
            .map(drop)
            .map_err(|e| Error::io("rebooting", e.into()))
    }
}
