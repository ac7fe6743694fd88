//! How much RAM the takeover needs, and where stage 1 stages the installer: the `memory` guard.
//!
//! Everything scales with the installer's size, known before the download (the tarball's
//! `Content-Length`). Its members are already compressed, so the unpacked kernel + initrd is
//! about the tarball's size, and the initrd is nearly all of it (nixos-images' ~430 MB initrd
//! carries the installer's Nix store). The peak comes during the kexec load, which holds the
//! initrd twice: `kexec_file_load` reads it into a kernel buffer and then copies it into the
//! loaded segments; `kexec_load` (kexec-tools) reads it into user memory first. After the jump
//! the installer's kernel holds the compressed initrd and its unpacked contents at once: twice
//! again, with the whole RAM to itself.
//!
//! Staged in RAM (stage 1's own tmpfs), the staged files count on top of those two copies.
//! Staged on the root filesystem, they are page cache the kernel can reclaim during the load;
//! that is how nixos-anywhere gets by with the same tarball on small machines.

use serde::{Deserialize, Serialize};

use super::GuardResult;
use crate::facts::HostFacts;

const MIB: u64 = 1 << 20;
/// What the takeover needs besides the installer: the agent's own RSS (~25 MiB), the stock
/// image's processes that keep running until the jump, and the kernel's slack under pressure.
pub const HEADROOM: u64 = 160 * MIB;
/// The size assumed when the server does not say: above nixos-images' x86_64 tarball (~440 MB).
pub const ASSUMED_INSTALLER: u64 = 512 * MIB;
/// Room on a staging filesystem beyond the staged bytes (metadata, the kexec record).
const STAGING_SLACK: u64 = 32 * MIB;
/// The handoff archive besides the agent: JSON, keys, gzip'd (kilobytes in practice).
const HANDOFF_EXTRA: u64 = MIB;

/// The installer's size as stage 1 learned it before downloading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallerSize {
    pub bytes: u64,
    /// Where the number came from: `Content-Length`, `file size`, or `assumed: <why>`.
    pub source: String,
}

impl InstallerSize {
    /// [`ASSUMED_INSTALLER`], saying why the real size is unknown.
    pub fn assumed(why: &str) -> Self {
        Self {
            bytes: ASSUMED_INSTALLER,
            source: format!("assumed: {why}"),
        }
    }
}

/// The filesystem that holds the run marker (`/var/lib/nixos-lift`), the fallback staging area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFsSpace {
    pub free_bytes: u64,
    pub ram_backed: bool,
    pub read_only: bool,
}

impl RootFsSpace {
    /// Why `bytes` cannot be staged there, or `None` when they can.
    fn unusable(&self, bytes: u64) -> Option<String> {
        if self.ram_backed {
            Some("it is RAM-backed (tmpfs)".into())
        } else if self.read_only {
            Some("it is read-only".into())
        } else if self.free_bytes < bytes {
            Some(format!(
                "{} MiB free, {} MiB needed",
                self.free_bytes / MIB,
                bytes.div_ceil(MIB)
            ))
        } else {
            None
        }
    }
}

/// Where stage 1 puts the downloaded installer and the handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Staging {
    /// Stage 1's own tmpfs, of this size.
    Tmpfs { size_bytes: u64 },
    /// A directory on the root filesystem, next to the run marker.
    RootFs,
}

/// The memory figures of a plan (`plan.json`'s `memory`), each in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryPlan {
    pub installer: InstallerSize,
    /// The unpacked installer plus the handoff.
    pub staged_bytes: u64,
    /// The initrd twice, at the kexec load's peak.
    pub load_bytes: u64,
    pub headroom_bytes: u64,
    /// What the chosen staging needs free (MemAvailable), or the smaller option when refused.
    pub needed_bytes: u64,
    pub available_bytes: u64,
    pub total_bytes: u64,
    /// `None` when neither RAM nor the root filesystem can take it (the guard refuses).
    pub staging: Option<Staging>,
    /// `min_memory` from the config, which replaces the computed need in the guard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_memory_override: Option<u64>,
}

impl MemoryPlan {
    /// What the kexec load needs free once the installer is staged, for an initrd of `bytes`.
    pub fn load_need(initrd_bytes: u64) -> u64 {
        2 * initrd_bytes + HEADROOM
    }
}

/// Plans the staging and judges the memory. `min_memory` (the config's override) replaces the
/// computed need: then MemTotal is compared with it, as the user asked, whatever the estimate.
pub fn plan_memory(
    host: &HostFacts,
    installer: InstallerSize,
    agent_bytes: u64,
    rootfs: Option<&RootFsSpace>,
    min_memory: Option<u64>,
) -> (MemoryPlan, GuardResult) {
    let staged = installer.bytes + agent_bytes + HANDOFF_EXTRA;
    let load = 2 * installer.bytes;
    let in_ram = staged + load + HEADROOM;
    let on_disk = load + HEADROOM;
    let available = host.memory_available_bytes;
    let rootfs_problem = match rootfs {
        Some(fs) => fs.unusable(staged + STAGING_SLACK),
        None => Some("not inspected".into()),
    };
    let tmpfs = Staging::Tmpfs {
        size_bytes: staged + STAGING_SLACK,
    };
    let rootfs_usable = rootfs_problem.is_none();
    let (staging, needed) = if available >= in_ram {
        (Some(tmpfs), in_ram)
    } else if available >= on_disk && rootfs_usable {
        (Some(Staging::RootFs), on_disk)
    } else if min_memory.is_some() {
        // The user overrode the estimate and takes the risk: the root filesystem still spares
        // RAM one copy of the installer when it can take it.
        if rootfs_usable {
            (Some(Staging::RootFs), on_disk)
        } else {
            (Some(tmpfs), in_ram)
        }
    } else if rootfs_usable {
        (None, on_disk)
    } else {
        // Only RAM staging is possible here: that is the need to name.
        (None, in_ram)
    };
    let plan = MemoryPlan {
        installer,
        staged_bytes: staged,
        load_bytes: load,
        headroom_bytes: HEADROOM,
        needed_bytes: needed,
        available_bytes: available,
        total_bytes: host.memory_bytes,
        staging,
        min_memory_override: min_memory,
    };
    let guard = match min_memory {
        Some(min) => override_guard(host, min),
        None => computed_guard(&plan, in_ram, rootfs_problem.as_deref()),
    };
    (plan, guard)
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(MIB)
}

fn computed_guard(plan: &MemoryPlan, in_ram: u64, rootfs_problem: Option<&str>) -> GuardResult {
    let found = format!(
        "MemAvailable {} MiB (MemTotal {} MiB)",
        plan.available_bytes / MIB,
        plan.total_bytes / MIB
    );
    let size = format!(
        "the installer's {} MiB ({})",
        mib(plan.installer.bytes),
        plan.installer.source
    );
    let needed = match (plan.staging, rootfs_problem) {
        (Some(Staging::RootFs), _) | (None, None) => format!(
            "{} MiB: {size} twice during the kexec load + {} MiB headroom (staged on the root \
             filesystem; {} MiB to stage it in RAM)",
            mib(plan.needed_bytes),
            mib(plan.headroom_bytes),
            mib(in_ram)
        ),
        (_, why) => format!(
            "{} MiB: {size} staged in RAM + twice during the kexec load + {} MiB headroom{}",
            mib(in_ram),
            mib(plan.headroom_bytes),
            why.map(|w| format!(" (the root filesystem cannot take it: {w})"))
                .unwrap_or_default()
        ),
    };
    GuardResult {
        name: crate::refusal::Guard::Memory,
        ok: plan.staging.is_some(),
        found,
        needed,
        way_out: if plan.staging.is_some() {
            String::new()
        } else {
            "choose an instance type with more RAM, free space on the root filesystem for \
             staging, or use a smaller installer; min_memory overrides this estimate at the \
             risk of the OOM killer during the kexec load"
                .into()
        },
    }
}

fn override_guard(host: &HostFacts, min: u64) -> GuardResult {
    let ok = host.memory_bytes >= min;
    GuardResult {
        name: crate::refusal::Guard::Memory,
        ok,
        found: format!("{} MiB", host.memory_bytes / MIB),
        needed: format!("at least {} MiB (min_memory)", mib(min)),
        way_out: if ok {
            String::new()
        } else {
            "choose an instance type with more RAM, or lower min_memory (or remove it: stage 1 \
             then computes the need from the installer's size)"
                .into()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(total_mib: u64, available_mib: u64) -> HostFacts {
        HostFacts {
            memory_bytes: total_mib * MIB,
            memory_available_bytes: available_mib * MIB,
            ..Default::default()
        }
    }

    fn size(mb: u64) -> InstallerSize {
        InstallerSize {
            bytes: mb * 1_000_000,
            source: "Content-Length".into(),
        }
    }

    fn disk(free_mib: u64) -> RootFsSpace {
        RootFsSpace {
            free_bytes: free_mib * MIB,
            ram_backed: false,
            read_only: false,
        }
    }

    const AGENT: u64 = 12 * MIB;

    #[test]
    fn a_small_installer_is_staged_in_ram() {
        // "1 GiB" instance: MemTotal ~ 960 MiB; a 200 MB installer.
        let (plan, guard) = plan_memory(&host(960, 900), size(200), AGENT, Some(&disk(50)), None);
        assert!(guard.ok, "{guard:?}");
        let Some(Staging::Tmpfs { size_bytes }) = plan.staging else {
            panic!("{plan:?}")
        };
        assert!(size_bytes >= 200_000_000 + AGENT, "{size_bytes}");
        assert_eq!(
            plan.needed_bytes,
            plan.staged_bytes + plan.load_bytes + HEADROOM
        );
        assert!(guard
            .found
            .contains("MemAvailable 900 MiB (MemTotal 960 MiB)"));
    }

    #[test]
    fn short_ram_stages_on_the_root_filesystem() {
        // 1.5 GiB with nixos-images' 430 MB initrd: three copies do not fit, two do.
        let (plan, guard) =
            plan_memory(&host(1450, 1200), size(440), AGENT, Some(&disk(5000)), None);
        assert!(guard.ok, "{guard:?}");
        assert_eq!(plan.staging, Some(Staging::RootFs));
        assert_eq!(plan.needed_bytes, 2 * 440_000_000 + HEADROOM);
        assert!(
            guard.needed.contains("staged on the root filesystem"),
            "{}",
            guard.needed
        );
    }

    #[test]
    fn too_little_ram_is_refused_with_every_figure() {
        let (plan, guard) = plan_memory(&host(979, 912), size(440), AGENT, Some(&disk(5000)), None);
        assert!(!guard.ok);
        assert_eq!(plan.staging, None);
        assert_eq!(guard.found, "MemAvailable 912 MiB (MemTotal 979 MiB)");
        // 2 x 440 MB + 160 MiB headroom.
        let need = mib(880_000_000 + HEADROOM);
        assert!(
            guard.needed.starts_with(&format!("{need} MiB: ")),
            "{}",
            guard.needed
        );
        assert!(
            guard
                .needed
                .contains("the installer's 420 MiB (Content-Length)"),
            "{}",
            guard.needed
        );
        assert!(
            guard.needed.contains("160 MiB headroom"),
            "{}",
            guard.needed
        );
        assert!(guard.way_out.contains("min_memory"), "{}", guard.way_out);
    }

    #[test]
    fn an_unusable_root_filesystem_is_named() {
        let ram = RootFsSpace {
            ram_backed: true,
            ..disk(5000)
        };
        let (plan, guard) = plan_memory(&host(1450, 1200), size(440), AGENT, Some(&ram), None);
        assert!(!guard.ok);
        assert!(guard.needed.contains("RAM-backed"), "{}", guard.needed);
        // Only RAM staging is possible: the need named is RAM's, above what was found.
        assert_eq!(
            plan.needed_bytes,
            plan.staged_bytes + plan.load_bytes + HEADROOM
        );
        assert!(guard
            .needed
            .starts_with(&format!("{} MiB: ", mib(plan.needed_bytes))));
        assert!(guard.needed.contains("staged in RAM"), "{}", guard.needed);
        let (_, guard) = plan_memory(&host(1450, 1200), size(440), AGENT, Some(&disk(100)), None);
        assert!(guard.needed.contains("100 MiB free"), "{}", guard.needed);
        let ro = RootFsSpace {
            read_only: true,
            ..disk(5000)
        };
        let (_, guard) = plan_memory(&host(1450, 1200), size(440), AGENT, Some(&ro), None);
        assert!(guard.needed.contains("read-only"), "{}", guard.needed);
    }

    #[test]
    fn min_memory_overrides_the_estimate_both_ways() {
        // Accepted against the estimate, staged in RAM at the user's risk.
        let (plan, guard) = plan_memory(&host(979, 912), size(440), AGENT, None, Some(512 * MIB));
        assert!(guard.ok, "{guard:?}");
        assert!(matches!(plan.staging, Some(Staging::Tmpfs { .. })));
        assert_eq!(plan.min_memory_override, Some(512 * MIB));
        // With too little RAM even for the load, the override still stages on a usable root
        // filesystem, which spares RAM one copy.
        let (plan, guard) = plan_memory(
            &host(979, 700),
            size(440),
            AGENT,
            Some(&disk(5000)),
            Some(512 * MIB),
        );
        assert!(guard.ok, "{guard:?}");
        assert_eq!(plan.staging, Some(Staging::RootFs));
        // Refused although the estimate fits.
        let (_, guard) = plan_memory(&host(4000, 3800), size(100), AGENT, None, Some(8 << 30));
        assert!(!guard.ok);
        assert_eq!(guard.found, "4000 MiB");
        assert_eq!(guard.needed, "at least 8192 MiB (min_memory)");
    }

    #[test]
    fn an_unknown_size_is_assumed_and_says_so() {
        let (plan, guard) = plan_memory(
            &host(4000, 3800),
            InstallerSize::assumed("HEAD failed"),
            AGENT,
            None,
            None,
        );
        assert!(guard.ok);
        assert_eq!(plan.installer.bytes, ASSUMED_INSTALLER);
        assert!(
            guard.needed.contains("assumed: HEAD failed"),
            "{}",
            guard.needed
        );
    }
}
