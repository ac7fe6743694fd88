//! The install plan: facts plus config, decided up front in stage 1 and carried to stage 2.
//!
//! `plan.json` in the handoff is this struct. Stage 2 executes it and re-plans nothing: the
//! network it restores and the units the installed system gets come from `network`.

mod build;
pub mod guard;
pub mod memory;
pub mod network;
pub mod networkd;
pub mod target;

pub use build::{plan_install, PlanEnv};

use serde::{Deserialize, Serialize};

pub use crate::config::FlakeTarget;
use crate::config::{
    Arch, AuthorizedKey, HttpUrl, InstallerSource, Sha256, StorePath, TimeSpan, TrustedPublicKey,
};
use crate::facts::Firmware;
use crate::provider::ProviderKind;
use crate::refusal::{Guard, Refusal};

/// Schema version of `plan.json`; bump on any incompatible change.
pub const PLAN_VERSION: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub version: u32,
    /// Version of the agent that made the plan.
    pub agent_version: String,
    /// `None` when the machine's arch is not one nixos-lift installs (the `arch` guard refuses).
    pub arch: Option<Arch>,
    pub firmware: Firmware,
    pub provider: ProviderKind,
    pub instance_id: Option<String>,
    pub hostname: String,
    /// The disk stage 2 wipes, by stable identity; `None` when a guard refused.
    pub target: Option<TargetDisk>,
    /// Disks that are left alone, each with the reason.
    pub other_disks: Vec<OtherDisk>,
    pub flake: FlakeTarget,
    /// Prebuilt system store path (fleet mode): skip evaluation.
    pub system: Option<StorePath>,
    /// `None` when there is no installer for this machine (a guard on it refused).
    pub installer: Option<InstallerPlan>,
    /// The installer's size, the RAM the takeover needs and where stage 1 stages it.
    #[serde(default)]
    pub memory: Option<memory::MemoryPlan>,
    /// Kernel command line for the installer; filled once the installer is unpacked.
    pub kernel_cmdline: Option<String>,
    pub guards: Vec<GuardResult>,
    /// Interfaces, addresses, routes and resolvers, for stage 2 and the installed system.
    pub network: network::NetworkPlan,
    pub nix: NixPlan,
    pub report: ReportPlan,
    pub ssh_authorized_keys: Vec<AuthorizedKey>,
    pub reboot: bool,
    pub keep_host_keys: bool,
    /// Day 2 (`update` in the config); `None` when the installed system does not pull.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdatePlan>,
}

/// How the installed system keeps pulling; stage 2 puts it into facts.json as
/// `install.update`, where nix/modules/update.nix reads it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpdatePlan {
    pub interval: TimeSpan,
    pub reboot: bool,
    /// Fleet mode: a URL whose body names the system path to copy from the first substituter.
    pub system_url: Option<HttpUrl>,
}

/// A disk identified so stage 2 can find it again after kexec, when names may have changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetDisk {
    /// The path in stage 1, e.g. `/dev/vda`; may differ in stage 2.
    pub path: String,
    pub name: String,
    pub by_id: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub size_bytes: u64,
    pub transport: crate::facts::Transport,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OtherDisk {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstallerPlan {
    pub url: InstallerSource,
    pub sha256: Option<Sha256>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GuardResult {
    /// Stable name, e.g. `memory`, `kexec-allowed`.
    pub name: Guard,
    pub ok: bool,
    pub found: String,
    pub needed: String,
    /// What the user can do about a refusal; empty when ok.
    pub way_out: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NixPlan {
    pub substituters: Vec<HttpUrl>,
    pub trusted_public_keys: Vec<TrustedPublicKey>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReportPlan {
    /// The token travels in `secrets.json`, never here.
    pub webhook_url: Option<HttpUrl>,
}

impl GuardResult {
    /// The refusal this result stands for (meaningful when not `ok`).
    pub fn refusal(&self) -> Refusal {
        Refusal::new(self.name, &self.found, &self.needed, &self.way_out)
    }
}
