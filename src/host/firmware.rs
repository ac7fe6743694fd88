//! Firmware, Secure Boot, kernel lockdown, and whether this kernel will let us kexec.

use super::SysRoot;
use crate::facts::Firmware;

/// The UEFI global-variable GUID; the SecureBoot variable's last byte is 1 when enforcing.
const SECURE_BOOT_VAR: &str =
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e0fe42e33030";

/// Everything the kexec gate needs, read once.
#[derive(Debug, Clone, PartialEq)]
pub struct FirmwareFacts {
    pub firmware: Firmware,
    pub secure_boot: Option<bool>,
    pub lockdown: Option<String>,
    pub kexec_load_disabled: Option<bool>,
    pub kexec_allowed: bool,
    pub kexec_blockers: Vec<String>,
}

pub fn inspect(root: &SysRoot, container: Option<&str>) -> FirmwareFacts {
    let firmware = if root.exists("/sys/firmware/efi") {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    let secure_boot = match firmware {
        Firmware::Uefi => secure_boot(root),
        Firmware::Bios => None,
    };
    let lockdown = root
        .read_string("/sys/kernel/security/lockdown")
        .and_then(|s| bracketed(&s));
    let kexec_load_disabled = root.read_flag("/proc/sys/kernel/kexec_load_disabled");
    let kexec_blockers = kexec_blockers(root, lockdown.as_deref(), kexec_load_disabled, container);
    FirmwareFacts {
        firmware,
        secure_boot,
        lockdown,
        kexec_load_disabled,
        kexec_allowed: kexec_blockers.is_empty(),
        kexec_blockers,
    }
}

/// efivarfs files are 4 attribute bytes followed by the value. A missing variable means the
/// firmware has no Secure Boot (off); an unreadable or truncated one is unknown.
fn secure_boot(root: &SysRoot) -> Option<bool> {
    let path = root.join(SECURE_BOOT_VAR);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(false),
        _ => {}
    }
    let bytes = super::sysroot::read_bytes(&path)?;
    match bytes.as_slice() {
        [_, _, _, _, .., last] => Some(*last == 1),
        _ => None,
    }
}

/// `none [integrity] confidentiality` → `integrity`.
fn bracketed(line: &str) -> Option<String> {
    let start = line.find('[')? + 1;
    let end = start + line[start..].find(']')?;
    let mode = line[start..end].trim();
    (!mode.is_empty()).then(|| mode.to_string())
}

/// One human reason per thing that stops `kexec_load`/`kexec_file_load` of our unsigned
/// installer kernel. Unknown values block nothing: the load itself reports those.
fn kexec_blockers(
    root: &SysRoot,
    lockdown: Option<&str>,
    kexec_load_disabled: Option<bool>,
    container: Option<&str>,
) -> Vec<String> {
    let mut blockers = Vec::new();
    if let Some(kind) = container {
        blockers.push(format!(
            "running in a container ({kind}): kexec replaces the host's kernel, not ours"
        ));
    }
    if kexec_load_disabled == Some(true) {
        blockers.push(
            "kernel.kexec_load_disabled=1: kexec is disabled until the next reboot".to_string(),
        );
    }
    if let Some(mode @ ("integrity" | "confidentiality")) = lockdown {
        blockers.push(format!(
            "kernel lockdown is {mode}: only signed kernels may be kexec'd (disable Secure Boot or lockdown)"
        ));
    }
    // Linux 6.7+: a counter of loads left; 0 means none until reboot.
    if root.read_parse::<i64>("/proc/sys/kernel/kexec_load_limit_reboot") == Some(0) {
        blockers.push("kernel.kexec_load_limit_reboot=0: no kexec loads are left".to_string());
    }
    if root.exists("/sys/kernel") && !root.exists("/sys/kernel/kexec_loaded") {
        blockers.push(
            "the kernel was built without kexec support (no /sys/kernel/kexec_loaded)".into(),
        );
    }
    blockers
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs;

    fn root_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, SysRoot) {
        let dir = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let p = dir.path().join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        let root = SysRoot::new(dir.path());
        (dir, root)
    }

    #[test]
    fn lockdown_mode_is_the_bracketed_word() {
        assert_eq!(
            bracketed("none [integrity] confidentiality").as_deref(),
            Some("integrity")
        );
        assert_eq!(
            bracketed("[none] integrity confidentiality").as_deref(),
            Some("none")
        );
        assert_eq!(bracketed("garbage"), None);
        assert_eq!(bracketed("broken [ none"), None);
    }

    #[test]
    fn secure_boot_reads_the_last_byte() {
        let var = &SECURE_BOOT_VAR[1..];
        let (_d, on) = root_with(&[(var, &[6, 0, 0, 0, 1])]);
        assert_eq!(inspect(&on, None).secure_boot, Some(true));
        let (_d, off) = root_with(&[(var, &[6, 0, 0, 0, 0])]);
        assert_eq!(inspect(&off, None).secure_boot, Some(false));
        let (_d, short) = root_with(&[(var, &[6, 0])]);
        assert_eq!(inspect(&short, None).secure_boot, None);
        let (_d, absent) = root_with(&[("sys/firmware/efi/efivars/Other", b"x")]);
        assert_eq!(inspect(&absent, None).secure_boot, Some(false));
        let (_d, bios) = root_with(&[("sys/kernel/kexec_loaded", b"0")]);
        let facts = inspect(&bios, None);
        assert_eq!((facts.firmware, facts.secure_boot), (Firmware::Bios, None));
        assert!(facts.kexec_allowed, "{:?}", facts.kexec_blockers);
    }

    #[test]
    fn each_blocker_is_named() {
        let (_d, root) = root_with(&[
            (
                "sys/kernel/security/lockdown",
                b"none [integrity] confidentiality\n",
            ),
            ("proc/sys/kernel/kexec_load_disabled", b"1\n"),
        ]);
        let facts = inspect(&root, Some("lxc"));
        assert!(!facts.kexec_allowed);
        let all = facts.kexec_blockers.join("\n");
        for needle in [
            "container (lxc)",
            "kexec_load_disabled=1",
            "lockdown is integrity",
            "without kexec",
        ] {
            assert!(all.contains(needle), "{needle} missing from {all}");
        }
    }
}
