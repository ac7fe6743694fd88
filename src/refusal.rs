//! Refusals: a guard that stops an irreversible step names itself, what it found, what it
//! needed and the way out. Plan guards (stage 1, before anything is downloaded) and runtime
//! checks (the kexec, stage 2 before partitioning) use the same type.

use serde::{Deserialize, Serialize};

/// Why a step was refused: stable names, used in `plan.json`, events, logs and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Guard {
    // Plan guards, stage 1.
    Root,
    Arch,
    NotContainer,
    NotNixos,
    KexecAllowed,
    InstallerPinned,
    InstallerUrl,
    Memory,
    TargetDisk,
    FlakeReference,
    // Stage 1 at run time.
    RunLock,
    RunMarker,
    InstallerStage2,
    Arm64Image,
    // Stage 2, before the disk is written.
    Handoff,
    HandoffVersion,
    InstallerEnvironment,
    TargetDiskMissing,
    TargetDiskAmbiguous,
    TargetDiskSize,
    TargetDiskBusy,
    DiskoLayout,
    DiskoDevices,
    FleetSubstituter,
    FleetDiskoScript,
}

impl Guard {
    /// The stable name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Arch => "arch",
            Self::NotContainer => "not-container",
            Self::NotNixos => "not-nixos",
            Self::KexecAllowed => "kexec-allowed",
            Self::InstallerPinned => "installer-pinned",
            Self::InstallerUrl => "installer-url",
            Self::Memory => "memory",
            Self::TargetDisk => "target-disk",
            Self::FlakeReference => "flake-reference",
            Self::RunLock => "run-lock",
            Self::RunMarker => "run-marker",
            Self::InstallerStage2 => "installer-stage2",
            Self::Arm64Image => "arm64-image",
            Self::Handoff => "handoff",
            Self::HandoffVersion => "handoff-version",
            Self::InstallerEnvironment => "installer-environment",
            Self::TargetDiskMissing => "target-disk-missing",
            Self::TargetDiskAmbiguous => "target-disk-ambiguous",
            Self::TargetDiskSize => "target-disk-size",
            Self::TargetDiskBusy => "target-disk-busy",
            Self::DiskoLayout => "disko-layout",
            Self::DiskoDevices => "disko-devices",
            Self::FleetSubstituter => "fleet-substituter",
            Self::FleetDiskoScript => "fleet-disko-script",
        }
    }
}

impl std::fmt::Display for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One refused guard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub guard: Guard,
    pub found: String,
    pub needed: String,
    /// What the user can do about it.
    pub way_out: String,
}

impl Refusal {
    pub fn new(
        guard: Guard,
        found: impl Into<String>,
        needed: impl Into<String>,
        way_out: impl Into<String>,
    ) -> Self {
        Self {
            guard,
            found: found.into(),
            needed: needed.into(),
            way_out: way_out.into(),
        }
    }
}

/// `guard: found X, needed Y; way out: Z`, the one shape of every refusal.
impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: found {}, needed {}; way out: {}",
            self.guard, self.found, self.needed, self.way_out
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_are_the_stable_names() {
        for guard in [
            Guard::KexecAllowed,
            Guard::InstallerStage2,
            Guard::TargetDiskBusy,
        ] {
            assert_eq!(
                serde_json::to_value(guard).ok(),
                Some(serde_json::Value::String(guard.as_str().into()))
            );
        }
        assert!(serde_json::from_str::<Guard>("\"no-such-guard\"").is_err());
    }

    #[test]
    fn a_refusal_reads_as_one_line() {
        let r = Refusal::new(Guard::Memory, "900 MiB", "1200 MiB", "more RAM");
        assert_eq!(
            r.to_string(),
            "memory: found 900 MiB, needed 1200 MiB; way out: more RAM"
        );
    }
}
