//! `plan_install`: facts + config → [`Plan`], with no side effects.

use std::fmt::Write as _;

use super::memory::{plan_memory, InstallerSize, RootFsSpace};
use super::target::choose_target;
use super::{guard, FlakeTarget, GuardResult, NixPlan, Plan, ReportPlan, UpdatePlan, PLAN_VERSION};
use crate::config::{Arch, AuthorizedKey, ValidConfig};
use crate::facts::Facts;
use crate::provider::ProviderKind;

/// What the plan needs besides facts and config, read by the caller (so planning stays pure).
#[derive(Debug, Clone, Default)]
pub struct PlanEnv {
    pub euid: u32,
    /// `/etc/hostname`, used when the cloud publishes none.
    pub hostname: String,
    /// `/sys/kernel/security/ima/policy` has a `KEXEC_KERNEL_CHECK` appraise rule.
    pub ima_kexec_appraise: bool,
    /// Keys already in root's authorized_keys.
    pub root_keys: Vec<AuthorizedKey>,
    /// The installer's size, asked before the download; `None` assumes one (and says so).
    pub installer_size: Option<InstallerSize>,
    /// The agent binary's size: the handoff carries it.
    pub agent_bytes: u64,
    /// The filesystem under the run marker, where stage 1 stages when RAM is short; `None`
    /// when not inspected (a fixture root).
    pub rootfs: Option<RootFsSpace>,
}

pub fn plan_install(facts: &Facts, config: &ValidConfig, env: &PlanEnv) -> Plan {
    let host = &facts.host;
    let cloud = facts.cloud.as_ref();
    let provider = cloud.map_or(ProviderKind::None, |c| c.provider);
    let hostname = cloud
        .and_then(|c| c.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| env.hostname.clone());
    // Placeholders take the short hostname: `{hostname}` must stay a valid attribute name.
    let short_host = hostname.split('.').next().unwrap_or_default().to_string();

    let installer_size = env
        .installer_size
        .clone()
        .unwrap_or_else(|| InstallerSize::assumed("size not asked"));
    let (memory, memory_guard) = plan_memory(
        host,
        installer_size,
        env.agent_bytes,
        env.rootfs.as_ref(),
        config.min_memory.map(|m| m.bytes()),
    );
    let mut guards = guard::host_guards(facts, env.euid, memory_guard, env.ima_kexec_appraise);
    let choice = choose_target(&facts.disks, &config.disk);
    guards.push(choice.guard);

    let flake = match config
        .flake
        .target(host.arch.as_str(), provider.as_str(), &short_host)
    {
        Ok(target) => FlakeTarget {
            reference: target.reference,
            url: target.url,
            attr: target.attr,
        },
        Err(e) => {
            guards.push(GuardResult {
                name: crate::refusal::Guard::FlakeReference,
                ok: false,
                found: e.to_string(),
                needed: "placeholders that resolve to [A-Za-z0-9._-]".into(),
                way_out: "set the hostname in the cloud console, or avoid {hostname} in flake"
                    .into(),
            });
            FlakeTarget {
                reference: config.flake.to_string(),
                url: config.flake.url().to_string(),
                attr: config.flake.attr().to_string(),
            }
        }
    };

    // An arch nixos-lift does not install has no installer; the arch guard refuses it.
    let installer = host.arch.installable().and_then(|arch| {
        let (installer, config_guards) = guard::installer_for(&config.installer, arch);
        guards.extend(config_guards);
        installer
    });

    let mut keys: Vec<AuthorizedKey> = Vec::new();
    let metadata_keys = cloud
        .filter(|_| config.ssh.use_metadata_keys)
        .map(|c| c.ssh_keys.as_slice())
        .unwrap_or_default();
    let all = config
        .ssh
        .authorized_keys
        .iter()
        .chain(metadata_keys)
        .chain(&env.root_keys);
    for key in all {
        if !keys.contains(key) {
            keys.push(key.clone());
        }
    }

    Plan {
        version: PLAN_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        arch: host.arch.installable(),
        firmware: host.firmware,
        provider,
        instance_id: cloud.and_then(|c| c.instance_id.clone()),
        hostname,
        target: choice.target,
        other_disks: choice.other_disks,
        flake,
        system: config.system.clone(),
        installer,
        memory: Some(memory),
        kernel_cmdline: None,
        guards,
        network: super::network::plan_network(
            &facts.network,
            cloud.map_or(&[][..], |c| c.network.as_slice()),
        ),
        nix: NixPlan {
            substituters: config.nix.substituters.clone(),
            trusted_public_keys: config.nix.trusted_public_keys.clone(),
        },
        report: ReportPlan {
            webhook_url: config.report.webhook_url.clone(),
        },
        ssh_authorized_keys: keys,
        reboot: config.reboot,
        keep_host_keys: config.keep_host_keys,
        update: config.update.enable.then(|| UpdatePlan {
            interval: config.update.interval.clone(),
            reboot: config.update.reboot,
            system_url: config.update.system_url.clone(),
        }),
    }
}

impl Plan {
    /// Guards that refused, in order.
    pub fn refusals(&self) -> Vec<&GuardResult> {
        self.guards.iter().filter(|g| !g.ok).collect()
    }

    pub fn runnable(&self) -> bool {
        self.guards.iter().all(|g| g.ok)
    }

    /// The human summary `nixos-lift plan` prints.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.runnable() {
            "runnable"
        } else {
            "REFUSED"
        };
        let _ = writeln!(out, "plan: {verdict}");
        let _ = writeln!(
            out,
            "machine: {} {} on {}, instance {}, hostname {}",
            self.arch.map_or("unsupported arch", Arch::as_str),
            format!("{:?}", self.firmware).to_lowercase(),
            self.provider,
            self.instance_id.as_deref().unwrap_or("-"),
            self.hostname
        );
        match &self.target {
            Some(t) => {
                let _ = writeln!(
                    out,
                    "target disk: {} ({} MiB, serial {}, wwn {}, by-id {})",
                    t.path,
                    t.size_bytes >> 20,
                    t.serial.as_deref().unwrap_or("-"),
                    t.wwn.as_deref().unwrap_or("-"),
                    t.by_id.as_deref().unwrap_or("-")
                );
            }
            None => {
                let _ = writeln!(out, "target disk: none");
            }
        }
        for d in &self.other_disks {
            let _ = writeln!(out, "left alone: {}: {}", d.path, d.reason);
        }
        let _ = writeln!(out, "flake: {}", self.flake.reference);
        if let Some(system) = &self.system {
            let _ = writeln!(out, "system: {system}");
        }
        match &self.installer {
            Some(installer) => {
                let _ = writeln!(
                    out,
                    "installer: {} (sha256 {})",
                    installer.url,
                    installer
                        .sha256
                        .as_ref()
                        .map_or("not pinned", |s| s.as_hex())
                );
            }
            None => {
                let _ = writeln!(out, "installer: none");
            }
        }
        let _ = writeln!(
            out,
            "kernel command line: {}",
            self.kernel_cmdline
                .as_deref()
                .unwrap_or("from the installer's kexec/run or manifest, read after download")
        );
        let _ = writeln!(out, "ssh keys: {}", self.ssh_authorized_keys.len());
        let _ = writeln!(out, "guards:");
        for g in &self.guards {
            if g.ok {
                let _ = writeln!(out, "  ok      {}: {}", g.name, g.found);
            } else {
                let _ = writeln!(
                    out,
                    "  REFUSED {}: found {}; needed {}; way out: {}",
                    g.name, g.found, g.needed, g.way_out
                );
            }
        }
        out
    }
}
