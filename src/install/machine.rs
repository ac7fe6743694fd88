//! This machine's own files on the target, written before `nixos-install` switches the system:
//!
//! - with `keep_host_keys`, the stock image's SSH host keys in `/etc/ssh` (private halves
//!   0600), so `known_hosts` entries stay valid; NixOS's sshd uses keys it finds there;
//! - in fleet mode, root's authorized keys and the host name, which a prebuilt system cannot
//!   hold: `nixos-lift.fleet.enable` (nix/modules/facts.nix) makes the system read them at boot.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::write_file;
use crate::handoff::Handoff;
use crate::{Error, Result};

/// Root's keys in fleet mode: `<dir>/root`, the directory root-only. nix/lib/contract.nix
/// `fleetAuthorizedKeysDir` names it for sshd's `AuthorizedKeysFile`.
pub const AUTHORIZED_KEYS_DIR: &str = "/etc/nixos-lift/authorized_keys.d";
/// Read by systemd at boot when the system sets no host name (`networking.hostName = ""`).
pub const HOSTNAME_FILE: &str = "/etc/hostname";
const SSH_DIR: &str = "/etc/ssh";

/// Writes this machine's files under the mounted target `mnt`; returns what to log (names,
/// never key bytes).
pub fn write(mnt: &Path, handoff: &Handoff) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    if handoff.plan.keep_host_keys {
        let keys = handoff.kept_host_keys()?;
        let ssh = on(mnt, SSH_DIR);
        mkdir(&ssh, 0o755)?;
        for (name, data) in &keys {
            let mode = if name.ends_with(".pub") { 0o644 } else { 0o600 };
            write_file(&ssh.join(name), mode, data.expose())?;
        }
        let names: Vec<&str> = keys.iter().map(|(name, _)| name.as_str()).collect();
        lines.push(if names.is_empty() {
            "keep_host_keys: the stock image had no SSH host keys; NixOS makes its own".to_string()
        } else {
            format!(
                "kept the stock image's SSH host keys in {SSH_DIR}: {}",
                names.join(" ")
            )
        });
    }
    if handoff.plan.system.is_some() {
        let dir = on(mnt, AUTHORIZED_KEYS_DIR);
        mkdir(&dir, 0o700)?;
        let keys: String = handoff
            .authorized_keys
            .iter()
            .map(|k| format!("{k}\n"))
            .collect();
        write_file(&dir.join("root"), 0o600, keys.as_bytes())?;
        let hostname = &handoff.plan.hostname;
        write_file(
            &on(mnt, HOSTNAME_FILE),
            0o644,
            format!("{hostname}\n").as_bytes(),
        )?;
        lines.push(format!(
            "fleet mode: {} SSH key(s) for root in {AUTHORIZED_KEYS_DIR}/root, host name \
             {hostname} in {HOSTNAME_FILE}",
            handoff.authorized_keys.len()
        ));
    }
    Ok(lines)
}

fn on(mnt: &Path, path: &str) -> PathBuf {
    mnt.join(path.trim_start_matches('/'))
}

fn mkdir(dir: &Path, mode: u32) -> Result<()> {
    let ctx = || format!("creating {}", dir.display());
    // Parents get the usual 0755: only the leaf is `mode`.
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(ctx(), e))?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(Error::io(ctx(), e)),
        _ => {}
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(ctx(), e))
}
