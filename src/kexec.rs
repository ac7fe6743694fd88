//! Loading the installer kernel and jumping into it. Only `stage1::run` reaches this module's
//! `load_and_jump`; no test on the host calls it (real kexec happens only inside QEMU).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use crate::fetch::extract::Installer;
use crate::handoff::payload::{KexecMethod, KexecRecord};
use crate::{Error, Result};

/// Errors of `kexec_file_load` after which `kexec_load` may still work: the syscall is missing,
/// the kernel format or signature is not accepted by the file loader. EPERM (lockdown) is not
/// among them: `kexec_load` is refused too.
fn file_load_fallback(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENOSYS | libc::ENOEXEC | libc::EKEYREJECTED | libc::EBADMSG | libc::EINVAL
    )
}

/// Loads with `kexec_file_load`, else with the tarball's static `kexec` (`kexec_load`).
/// `append_override` is called before the fallback so the handoff records the method used.
pub fn load(
    installer: &Installer,
    initrd: &Path,
    append_override: &dyn Fn(&KexecRecord) -> Result<()>,
) -> Result<KexecMethod> {
    let errno = match kexec_file_load(&installer.kernel, initrd, &installer.cmdline) {
        Ok(()) => {
            tracing::info!(method = "kexec_file_load", "installer kernel loaded");
            return Ok(KexecMethod::KexecFileLoad);
        }
        Err(errno) => errno,
    };
    let why = std::io::Error::from_raw_os_error(errno).to_string();
    let Some(tool) = installer
        .kexec_tool
        .as_ref()
        .filter(|_| file_load_fallback(errno))
    else {
        log_dmesg_tail();
        return Err(Error::Kexec {
            call: "loading the installer kernel with kexec_file_load",
            errno: Some(errno),
            detail: format!("{why}; nothing changed"),
        });
    };
    tracing::warn!(
        "kexec_file_load refused ({why}); falling back to kexec_load via {}",
        tool.display()
    );
    append_override(&KexecRecord {
        method: KexecMethod::KexecLoad,
        fallback_reason: Some(format!("kexec_file_load: {why}")),
    })?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(tool, std::fs::Permissions::from_mode(0o755));
    // --kexec-syscall: kexec_load whatever this kexec-tools' default, so the record is true.
    let status = Command::new(tool)
        .arg("--kexec-syscall")
        .arg("--load")
        .arg(&installer.kernel)
        .arg(format!("--initrd={}", initrd.display()))
        .arg("--no-checks")
        .arg(format!("--command-line={}", installer.cmdline))
        .status()
        .map_err(|e| Error::io(format!("running {}", tool.display()), e))?;
    if !status.success() {
        log_dmesg_tail();
        return Err(Error::Kexec {
            call: "loading the installer kernel with kexec_load",
            errno: None,
            detail: format!("{} {status}; nothing changed", tool.display()),
        });
    }
    tracing::info!(method = "kexec_load", "installer kernel loaded");
    Ok(KexecMethod::KexecLoad)
}

fn kexec_file_load(kernel: &Path, initrd: &Path, cmdline: &str) -> std::result::Result<(), i32> {
    let kernel = File::open(kernel).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let initrd = File::open(initrd).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let cmdline = CString::new(cmdline).map_err(|_| libc::EINVAL)?;
    let len = cmdline.as_bytes_with_nul().len();
    // SAFETY: both fds are open for the call, the command line is NUL-terminated and `len`
    // counts the NUL as the syscall requires; flags 0 = load for `kexec -e`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd.as_raw_fd(),
            len,
            cmdline.as_ptr(),
            0 as libc::c_ulong,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

fn log_dmesg_tail() {
    match Command::new("dmesg").output() {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(20)..] {
                tracing::error!("dmesg: {line}");
            }
        }
        Err(e) => tracing::error!("could not read dmesg: {e}"),
    }
}

/// Jumps into the loaded kernel: `systemctl kexec` under systemd (an orderly shutdown), else
/// sync + reboot(LINUX_REBOOT_CMD_KEXEC). Returns only on failure.
pub fn jump(systemd: bool) -> Result<()> {
    tracing::info!("jumping into the installer now");
    if systemd {
        let status = Command::new("systemctl")
            .arg("kexec")
            .status()
            .map_err(|e| Error::io("running systemctl kexec", e))?;
        if !status.success() {
            return Err(Error::Subprocess {
                program: "systemctl kexec".into(),
                status,
            });
        }
        // systemd stops us as part of the shutdown.
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
    nix::unistd::sync();
    let Err(err) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_KEXEC);
    Err(Error::Kexec {
        call: "reboot(LINUX_REBOOT_CMD_KEXEC)",
        errno: Some(err as i32),
        detail: err.desc().to_string(),
    })
}
