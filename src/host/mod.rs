//! Host inspection: everything read from /sys, /proc, /dev and /etc, through one root.
//!
//! Each concern has its module; every read goes through [`SysRoot`] and is tolerant, so a
//! fixture tree, a normal user and a half-broken sysfs all give facts, never a panic.

mod container;
mod disk;
mod dmi;
mod dns;
mod firmware;
mod mounts;
mod net;
mod netlink;
mod stack;
mod summary;
pub mod sysroot;
mod system;

pub use mounts::unescape_octal;
pub use net::NETWORK_STATE_FILE;
pub use summary::summary;
pub use sysroot::SysRoot;
pub use system::{mem_available, meminfo_bytes, pid1_is_systemd, started_by_cloud_init};

use crate::facts::{Facts, HostFacts, FACTS_VERSION};
use crate::Result;

/// Gathers the local facts (everything but `cloud`).
pub fn inspect(root: &SysRoot) -> Result<Facts> {
    if !root.join("/").is_dir() {
        return Err(crate::Error::Other(format!(
            "inspecting the host under {}: not a directory",
            root.join("/").display()
        )));
    }
    let _span = tracing::info_span!("inspect").entered();
    let container = container::detect(root);
    let fw = firmware::inspect(root, container.as_deref());
    let (memory_bytes, memory_available_bytes) = system::memory(root);
    let host = HostFacts {
        arch: system::arch(root),
        kernel_release: system::kernel_release(root),
        firmware: fw.firmware,
        secure_boot: fw.secure_boot,
        lockdown: fw.lockdown,
        kexec_load_disabled: fw.kexec_load_disabled,
        kexec_allowed: fw.kexec_allowed,
        kexec_blockers: fw.kexec_blockers,
        container,
        hypervisor: system::hypervisor(root),
        memory_bytes,
        memory_available_bytes,
        cpu_count: system::cpu_count(root),
        os: system::os_release(root),
        systemd: system::pid1_is_systemd(root),
    };
    tracing::info!(
        arch = %host.arch,
        firmware = ?host.firmware,
        container = host.container.as_deref().unwrap_or("none"),
        "kexec {}{}",
        if host.kexec_allowed { "allowed" } else { "blocked: " },
        host.kexec_blockers.join("; ")
    );
    Ok(Facts {
        version: FACTS_VERSION,
        host,
        dmi: dmi::inspect(root),
        disks: disk::inspect(root),
        network: net::inspect(root),
        cloud: None,
    })
}
