//! Stage 2, `nixos-lift install`: in the RAM-only installer, restore the network, find the
//! target disk again, compose the flake with this machine's facts, partition with disko,
//! `nixos-install`, leave a trail and reboot.
//!
//! Everything that can fail without writing a disk (handoff, network, disk identity,
//! evaluation, the disko script's build) runs before partitioning. On failure the installer
//! stays up and prints a banner saying whether the disk was touched.

pub mod compose;
pub mod disk;
pub mod handoff;
pub mod memory;
pub mod network;
pub mod reboot;
pub mod tools;
pub mod trail;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::SysRoot;
use crate::provider::ProviderKind;
use crate::report::{DeviceSink, LineSink, RemoteTargets, Reporter, Status};
use crate::{Error, Result};

use self::compose::{InstallFacts, Wrapper};
use self::handoff::Handoff;
use self::tools::{InstallLog, SharedLog, Tools};

/// The phases, in order; `step` in events is the 1-based position here.
pub const PHASES: [&str; 8] = [
    "handoff",
    "network",
    "disk",
    "compose",
    "partition",
    "install",
    "trail",
    "reboot",
];
/// The first phase that writes the target disk.
const FIRST_WRITE: &str = "partition";

/// How long remote events may take to drain before stage 2 reboots or gives up.
const REPORT_DRAIN: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Options {
    pub handoff: PathBuf,
    /// `/` in the installer; a rehearsal tree in tests (never reboots there).
    pub root: PathBuf,
    pub console: Vec<PathBuf>,
    pub kmsg: PathBuf,
    pub network_timeout: Duration,
    /// Leave the network as it is (rehearsals outside a network namespace).
    pub skip_network: bool,
    pub metadata_base: String,
    /// Run the phases up to and including this one, then stop (no reboot).
    pub stop_after: Option<String>,
}

impl Options {
    fn rehearsal(&self) -> bool {
        self.root != Path::new("/")
    }

    fn under_root(&self, path: &str) -> PathBuf {
        SysRoot::new(&self.root).join(path)
    }
}

/// A phase failure: where it stopped and why.
struct Failure {
    step: usize,
    error: Error,
}

/// Runs stage 2. Errors are reported (banner, `failed` event) before they are returned.
pub fn run(opts: &Options) -> Result<()> {
    let work = opts.under_root("/run/nixos-lift");
    std::fs::create_dir_all(&work)
        .map_err(|e| Error::io(format!("creating {}", work.display()), e))?;
    let log = SharedLog::new(InstallLog::create(&work.join("install.log")));
    let mut sinks: Vec<Box<dyn LineSink>> = opts
        .console
        .iter()
        .map(|c| Box::new(DeviceSink::console(c)) as Box<dyn LineSink>)
        .collect();
    sinks.push(Box::new(DeviceSink::kmsg(&opts.kmsg)));
    sinks.push(Box::new(log.clone()));
    let mut reporter = Reporter::new(2, sinks);

    let handoff = match Handoff::read(&opts.handoff) {
        Ok(h) => h,
        Err(error) => {
            let failure = Failure { step: 1, error };
            banner(&mut reporter, &log, &failure);
            reporter.finish(REPORT_DRAIN);
            return Err(failure.error);
        }
    };
    let plan = &handoff.plan;
    reporter = reporter
        .with_identity(plan.instance_id.clone(), Some(plan.hostname.clone()))
        .with_remote(RemoteTargets {
            webhook_url: plan.report.webhook_url.clone(),
            webhook_token: handoff.secrets.webhook_token.clone(),
            gcp_metadata_base: (plan.provider == ProviderKind::Gcp)
                .then(|| opts.metadata_base.clone()),
        });

    let mut stage = Stage {
        opts,
        handoff: &handoff,
        reporter: &mut reporter,
        log: log.clone(),
        work,
        step: 0,
    };
    let result = stage.run_phases();
    match result {
        Ok(reboot) => {
            if let Some(tools) = &reboot {
                let proc = opts.under_root("/proc");
                for line in reboot::release(tools, &proc, &opts.under_root("/mnt")) {
                    reporter.line(&line);
                }
            }
            // Every queued event (`done` last) goes out before the reboot cuts the network.
            reporter.finish(REPORT_DRAIN);
            if let Some(tools) = reboot {
                reboot::restart(&tools)?;
            }
            Ok(())
        }
        Err(failure) => {
            banner(&mut reporter, &log, &failure);
            reporter.finish(REPORT_DRAIN);
            Err(failure.error)
        }
    }
}

struct Stage<'a> {
    opts: &'a Options,
    handoff: &'a Handoff,
    reporter: &'a mut Reporter,
    log: SharedLog,
    work: PathBuf,
    step: usize,
}

impl Stage<'_> {
    /// Starts phase `name`: one event, one console line.
    fn begin(&mut self, name: &str, message: &str) {
        self.step = self.reporter.begin(&PHASES, name, message);
    }

    fn fail(&self, error: Error) -> Failure {
        Failure {
            step: self.step,
            error,
        }
    }

    fn stop_here(&self, name: &str) -> bool {
        self.opts.stop_after.as_deref() == Some(name)
    }

    /// Returns the tools to reboot with, or `None` when stage 2 should not reboot.
    fn run_phases(&mut self) -> std::result::Result<Option<Tools>, Failure> {
        let plan = &self.handoff.plan;
        let mnt = self.opts.under_root("/mnt");
        self.begin(
            "handoff",
            &format!(
                "reading the handoff from {}: {} on {}, flake {}",
                self.handoff.dir.display(),
                plan.hostname,
                plan.provider,
                plan.flake.reference
            ),
        );
        self.check_installer().map_err(|e| self.fail(e))?;
        if self.stop_here("handoff") {
            return Ok(None);
        }

        self.begin("network", "restoring the network");
        self.restore_network().map_err(|e| self.fail(e))?;
        self.reporter.network_ready();
        if self.stop_here("network") {
            return Ok(None);
        }

        let target = plan.target.as_ref().ok_or_else(|| {
            self.fail(Error::Refused {
                action: "install".into(),
                guard: "target-disk",
                detail: "the plan has no target disk (a stage-1 guard refused); way out: fix \
                         the refusal `nixos-lift plan` reports and rerun stage 1"
                    .into(),
            })
        })?;
        self.begin(
            "disk",
            &format!(
                "finding the target disk (was {}, {} bytes)",
                target.path, target.size_bytes
            ),
        );
        let disks = crate::host::inspect(&SysRoot::new(&self.opts.root))
            .map(|f| f.disks)
            .map_err(|e| self.fail(e))?;
        let cleared = disk::find_target(target, &disks).map_err(|e| self.fail(e))?;
        self.line(&format!(
            "nixos-lift: target disk {} matched by {} ({})",
            cleared.disk.path,
            cleared.matched_by,
            cleared.device()
        ));
        if self.stop_here("disk") {
            return Ok(None);
        }

        let fleet = plan.system.is_some();
        self.begin(
            "compose",
            &if fleet {
                format!(
                    "composing {} (fleet mode: disko only)",
                    plan.flake.reference
                )
            } else {
                format!(
                    "composing {} with this machine's facts",
                    plan.flake.reference
                )
            },
        );
        let flake_dir = self.work.join("flake");
        let nix_conf =
            compose::write_nix_conf(&self.work.join("nix/nix.conf"), plan, &self.handoff.secrets)
                .map_err(|e| self.fail(e))?;
        let tools = Tools::new(self.log.clone(), Some(&nix_conf));
        let install_facts = InstallFacts {
            hostname: plan.hostname.clone(),
            disk_device: cleared.device().to_string(),
            disk_path: cleared.disk.path.clone(),
            authorized_keys: self.handoff.authorized_keys.clone(),
            flake: plan.flake.url.clone(),
            attr: plan.flake.attr.clone(),
            firmware: plan.firmware,
        };
        Wrapper::new(
            plan,
            &self.handoff.facts,
            &self.handoff.network,
            &install_facts,
            &cleared.disk,
        )
        .and_then(|w| w.write(&flake_dir))
        .map_err(|e| self.fail(e))?;
        if !fleet {
            if let Some(note) = memory::ensure_swap(&self.opts.root, &tools) {
                self.line(&format!("nixos-lift: {note}"));
            }
        }
        let config = format!(
            "{}.config",
            compose::flake_ref(
                &flake_dir,
                &format!("nixosConfigurations.{}", nix_attr(&plan.flake.attr))
            )
        );
        self.check_disko_devices(&tools, &config, &cleared)
            .map_err(|e| self.fail(e))?;
        let disko_script = tools
            .run(
                "nix",
                &[
                    "build",
                    "--no-link",
                    "--print-out-paths",
                    &format!("{config}.system.build.diskoScript"),
                ],
            )
            .map(|out| out.trim().to_string())
            .map_err(|e| self.fail(e))?;
        if !fleet {
            // Evaluate the whole system now: an evaluation error must not cost the disk.
            tools
                .run(
                    "nix",
                    &[
                        "eval",
                        "--raw",
                        &format!("{config}.system.build.toplevel.drvPath"),
                    ],
                )
                .map_err(|e| self.fail(e))?;
        }
        if self.stop_here("compose") {
            return Ok(None);
        }

        self.begin(
            "partition",
            &format!("partitioning {} (disko)", cleared.disk.path),
        );
        tools.run(&disko_script, &[]).map_err(|e| self.fail(e))?;
        std::fs::create_dir_all(&mnt)
            .map_err(|e| self.fail(Error::io(format!("creating {}", mnt.display()), e)))?;

        let mnt_s = mnt.display().to_string();
        if let Some(system) = &plan.system {
            self.begin(
                "install",
                &format!("installing the prebuilt system {system}"),
            );
            let from = plan.nix.substituters.first().ok_or_else(|| {
                self.fail(Error::Refused {
                    action: "install".into(),
                    guard: "fleet-substituter",
                    detail: "found `system` set and no substituter, needed a binary cache that \
                             holds it; way out: add nix.substituters to the config"
                        .into(),
                })
            })?;
            let tmp = mnt.join("tmp");
            std::fs::create_dir_all(&tmp)
                .map_err(|e| self.fail(Error::io(format!("creating {}", tmp.display()), e)))?;
            tools
                .run(
                    "nix",
                    &[
                        "copy",
                        "--from",
                        from,
                        "--to",
                        &format!("local?root={mnt_s}"),
                        system,
                    ],
                )
                .map_err(|e| self.fail(e))?;
            tools
                .run(
                    "nixos-install",
                    &[
                        "--root",
                        &mnt_s,
                        "--system",
                        system,
                        "--no-root-passwd",
                        "--no-channel-copy",
                    ],
                )
                .map_err(|e| self.fail(e))?;
        } else {
            self.begin(
                "install",
                &format!("installing {} (nixos-install)", plan.flake.attr),
            );
            let flake = compose::flake_ref(&flake_dir, &plan.flake.attr);
            tools
                .run(
                    "nixos-install",
                    &[
                        "--root",
                        &mnt_s,
                        "--flake",
                        &flake,
                        "--no-root-passwd",
                        "--no-channel-copy",
                    ],
                )
                .map_err(|e| self.fail(e))?;
        }

        self.begin(
            "trail",
            &format!(
                "leaving a trail in {}",
                mnt.join(trail::TRAIL_DIR).display()
            ),
        );
        // The log is copied last so it holds everything up to here.
        let log_path = self
            .log
            .0
            .lock()
            .ok()
            .and_then(|l| l.path().map(Path::to_path_buf));
        trail::write(&mnt, &flake_dir, plan, log_path.as_deref()).map_err(|e| self.fail(e))?;

        let reboot = plan.reboot && !self.opts.rehearsal() && self.opts.stop_after.is_none();
        if reboot {
            self.begin("reboot", "rebooting into NixOS");
        }
        // The last event, so a webhook consumer can stop at `done`.
        self.reporter.event(
            "done",
            PHASES.len() as u32,
            PHASES.len() as u32,
            Status::Done,
            &format!(
                "installed {} on {}{}",
                plan.flake.reference,
                cleared.disk.path,
                if reboot {
                    "; rebooting"
                } else if plan.reboot {
                    "; rehearsal, not rebooting"
                } else {
                    "; not rebooting (reboot: false)"
                }
            ),
            None,
        );
        if reboot {
            return Ok(Some(tools));
        }
        Ok(None)
    }

    fn line(&mut self, line: &str) {
        self.reporter.line(line);
    }

    /// The installer runs from RAM; a root on a disk means this is not the installer, and
    /// partitioning could wipe the running system.
    fn check_installer(&self) -> Result<()> {
        let mounts_path = self.opts.under_root("/proc/self/mounts");
        let mounts = std::fs::read_to_string(&mounts_path)
            .map_err(|e| Error::io(format!("reading {}", mounts_path.display()), e))?;
        let root_fs = mounts
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (_dev, mnt, fstype) = (f.next()?, f.next()?, f.next()?);
                (mnt == "/").then(|| fstype.to_string())
            })
            .next_back()
            .unwrap_or_default();
        if ["rootfs", "tmpfs", "ramfs"].contains(&root_fs.as_str()) {
            return Ok(());
        }
        Err(Error::Refused {
            action: "install".into(),
            guard: "installer-environment",
            detail: format!(
                "found / on {}, needed the RAM-only installer (rootfs, tmpfs or ramfs); way \
                 out: `nixos-lift install` runs inside the installer stage 1 kexecs into, use \
                 `nixos-lift run` on the stock image",
                if root_fs.is_empty() {
                    "an unknown filesystem"
                } else {
                    &root_fs
                }
            ),
        })
    }

    fn restore_network(&mut self) -> Result<()> {
        let plans = network::plan_interfaces(&self.handoff.network);
        if self.opts.skip_network {
            self.line("nixos-lift: network left as it is (--skip-network)");
        } else {
            for line in network::apply(&plans)? {
                self.line(&format!("nixos-lift: network: {line}"));
            }
            let dhcp = network::dhcp_without_systemd(&self.opts.root, &plans);
            for line in &dhcp {
                self.line(&format!("nixos-lift: network: {line}"));
            }
            if !dhcp.is_empty() {
                // A DHCP client's hook may flush the interface: put the static part back.
                network::apply(&plans)?;
            }
        }
        let resolv = self.opts.under_root("/etc/resolv.conf");
        let servers = network::write_resolv_conf(&resolv, &self.handoff.network, &plans)?;
        if !servers.is_empty() {
            self.line(&format!(
                "nixos-lift: network: resolvers {}",
                servers.join(" ")
            ));
        }
        let endpoints = network::endpoints(&self.handoff.plan);
        if !self.opts.skip_network && !endpoints.is_empty() {
            network::wait_reachable(&endpoints, self.opts.network_timeout)?;
            let names: Vec<String> = endpoints
                .iter()
                .map(|e| format!("{}:{}", e.host, e.port))
                .collect();
            self.line(&format!(
                "nixos-lift: network: reachable {}",
                names.join(" ")
            ));
        }
        Ok(())
    }

    /// Every disk the layout names must be the target: disko destroys what it names.
    fn check_disko_devices(
        &mut self,
        tools: &Tools,
        config: &str,
        cleared: &disk::Cleared,
    ) -> Result<()> {
        let out = tools.run(
            "nix",
            &[
                "eval",
                "--json",
                &format!("{config}.disko.devices.disk"),
                "--apply",
                "ds: builtins.mapAttrs (name: d: d.device) ds",
            ],
        )?;
        let devices: std::collections::BTreeMap<String, String> = serde_json::from_str(&out)
            .map_err(|e| Error::Other(format!("reading the disko layout's devices: {e}")))?;
        if devices.is_empty() {
            return Err(Error::Refused {
                action: "partition".into(),
                guard: "disko-layout",
                detail: "found no disko.devices.disk in the configuration, needed a disko layout \
                         for the target disk; way out: import disko and a layout (nixos-lift's \
                         disk-basic module) in the flake's configuration"
                    .into(),
            });
        }
        let sys = SysRoot::new(&self.opts.root);
        let resolve = |p: &str| std::fs::canonicalize(sys.join(p)).ok();
        let target = resolve(&cleared.disk.path);
        let others: Vec<String> = devices
            .iter()
            .filter(|(_, dev)| {
                let same_name = **dev == cleared.disk.path || cleared.disk.by_id.contains(dev);
                let same_node = target.is_some() && resolve(dev) == target;
                !(same_name || same_node)
            })
            .map(|(name, dev)| format!("{name}={dev}"))
            .collect();
        if !others.is_empty() {
            return Err(Error::Refused {
                action: "partition".into(),
                guard: "disko-devices",
                detail: format!(
                    "the layout names {}, needed only the target {} ({}); way out: set \
                     disko.devices.disk.<name>.device from nixos-lift's facts or use a \
                     single-disk layout",
                    others.join(", "),
                    cleared.disk.path,
                    cleared.device()
                ),
            });
        }
        self.line(&format!(
            "nixos-lift: disko layout targets only {} ({})",
            cleared.disk.path,
            devices.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
        Ok(())
    }
}

/// An attribute name as it appears in a flake output path: quoted when not a plain identifier.
fn nix_attr(name: &str) -> String {
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '\'')
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if plain {
        name.to_string()
    } else {
        compose::nix_str(name)
    }
}

/// The failure banner: phase, reason, whether the disk was touched, the log's tail.
fn banner(reporter: &mut Reporter, log: &SharedLog, failure: &Failure) {
    let phase = PHASES
        .get(failure.step.saturating_sub(1))
        .copied()
        .unwrap_or("handoff");
    let first_write = PHASES.iter().position(|p| *p == FIRST_WRITE).unwrap_or(0) + 1;
    let tail = log.tail();
    let reason = failure.error.to_string();
    reporter.event(
        phase,
        failure.step as u32,
        PHASES.len() as u32,
        Status::Failed,
        &format!("stopped at {phase}"),
        Some(&reason),
    );
    let rule = "nixos-lift: ================================================================";
    reporter.line(rule);
    reporter.line(&format!(
        "nixos-lift: INSTALL FAILED in phase {phase} ({}/{})",
        failure.step,
        PHASES.len()
    ));
    reporter.line(&format!("nixos-lift: reason: {reason}"));
    reporter.line(if failure.step < first_write {
        "nixos-lift: the disk is untouched (stopped before partitioning): rebooting returns to \
         the stock image"
    } else {
        "nixos-lift: the disk was partitioned and is not bootable: do not reboot into it; \
         rerun the install after fixing the cause"
    });
    reporter.line(
        "nixos-lift: the installer stays up (console and ssh with the authorized keys); the \
         full log is /run/nixos-lift/install.log",
    );
    reporter.line(&format!("nixos-lift: last {} log lines:", tail.len()));
    for line in tail {
        reporter.line(&format!("nixos-lift: | {line}"));
    }
    reporter.line(rule);
}
