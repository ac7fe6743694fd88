//! Stage 2, `nixos-lift install`: in the RAM-only installer, restore the network, find the
//! target disk again, compose the flake with this machine's facts, partition with disko,
//! `nixos-install`, leave a trail and reboot.
//!
//! Everything that can fail without writing a disk (handoff, network, disk identity,
//! evaluation, the disko script's build) runs before partitioning. On failure the installer
//! stays up and prints a banner saying whether the disk was touched.

pub mod compose;
pub mod disk;
pub mod fleet;
pub mod machine;
pub mod memory;
pub mod network;
pub mod reboot;
pub mod tools;
pub mod trail;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::host::SysRoot;
use crate::phase::{Phase, Phases};
use crate::provider::ProviderKind;
use crate::refusal::{Guard, Refusal};
use crate::report::{DeviceSink, LineSink, RemoteTargets, Reporter};
use crate::{Error, Result};

use self::compose::{InstallFacts, Wrapper};
use self::tools::{InstallLog, SharedLog, Tools};
use crate::handoff::Handoff;

/// Stage 2's phases, in order. `--stop-after` takes the ones before the disk is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "lowercase")]
pub enum InstallPhase {
    Handoff,
    Network,
    Disk,
    Compose,
    #[value(skip)]
    Partition,
    #[value(skip)]
    Install,
    #[value(skip)]
    Trail,
    #[value(skip)]
    Reboot,
}

impl Phase for InstallPhase {
    const ALL: &'static [Self] = &[
        Self::Handoff,
        Self::Network,
        Self::Disk,
        Self::Compose,
        Self::Partition,
        Self::Install,
        Self::Trail,
        Self::Reboot,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Handoff => "handoff",
            Self::Network => "network",
            Self::Disk => "disk",
            Self::Compose => "compose",
            Self::Partition => "partition",
            Self::Install => "install",
            Self::Trail => "trail",
            Self::Reboot => "reboot",
        }
    }
}

impl InstallPhase {
    /// From partitioning on, a failure leaves a disk that no longer boots the stock image.
    fn wrote_disk(self) -> bool {
        self.step() >= Self::Partition.step()
    }
}

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
    pub stop_after: Option<InstallPhase>,
}

impl Options {
    fn rehearsal(&self) -> bool {
        self.root != Path::new("/")
    }

    fn under_root(&self, path: &str) -> PathBuf {
        SysRoot::new(&self.root).join(path)
    }
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
    let mut phases = Phases::new(Reporter::new(2, sinks));

    let handoff = match Handoff::read(&opts.handoff) {
        Ok(h) => h,
        Err(error) => return Err(stop(phases, &log, error)),
    };
    let plan = &handoff.plan;
    phases
        .reporter
        .set_identity(plan.instance_id.clone(), Some(plan.hostname.clone()));
    phases.reporter.start_remote(RemoteTargets {
        webhook_url: plan.report.webhook_url.clone(),
        webhook_token: handoff.secrets.webhook_token.clone(),
        gcp_metadata_base: (plan.provider == ProviderKind::Gcp).then(|| opts.metadata_base.clone()),
    });

    let mut stage = Stage {
        opts,
        handoff: &handoff,
        phases: &mut phases,
        log: log.clone(),
        work,
    };
    match stage.run_phases() {
        Ok(Some(tools)) => {
            let proc = opts.under_root("/proc");
            for line in reboot::release(&tools, &proc, &opts.under_root("/mnt")) {
                phases.line(&line);
            }
            // Every queued event (`done` last) goes out before the reboot cuts the network.
            phases.reporter.finish(REPORT_DRAIN);
            reboot::restart(&tools)
        }
        Ok(None) => {
            phases.reporter.finish(REPORT_DRAIN);
            Ok(())
        }
        Err(error) => Err(stop(phases, &log, error)),
    }
}

/// Reports a failure (banner and `failed` event at the running phase) and drains the events.
fn stop(mut phases: Phases<InstallPhase>, log: &SharedLog, error: Error) -> Error {
    banner(&mut phases, log, &error);
    phases.reporter.finish(REPORT_DRAIN);
    error
}

struct Stage<'a> {
    opts: &'a Options,
    handoff: &'a Handoff,
    phases: &'a mut Phases<InstallPhase>,
    log: SharedLog,
    work: PathBuf,
}

/// What the compose phase leaves for the phases that write the disk.
struct Composed {
    tools: Tools,
    flake_dir: PathBuf,
    disko_script: String,
}

impl Stage<'_> {
    /// Returns the tools to reboot with, or `None` when stage 2 should not reboot.
    fn run_phases(&mut self) -> Result<Option<Tools>> {
        use InstallPhase::*;
        self.check_handoff()?;
        if self.stops_after(Handoff) {
            return Ok(None);
        }
        self.restore_network()?;
        if self.stops_after(Network) {
            return Ok(None);
        }
        let cleared = self.find_disk()?;
        if self.stops_after(Disk) {
            return Ok(None);
        }
        let composed = self.compose(&cleared)?;
        if self.stops_after(Compose) {
            return Ok(None);
        }
        let mnt = self.partition(&cleared, &composed)?;
        let swap = self.add_target_swap(&composed, &mnt);
        let installed = self.install(&composed, &mnt, swap.as_ref());
        if let Some(swap) = swap {
            let note = swap.release(&composed.tools);
            self.line(&format!("nixos-lift: {note}"));
        }
        installed?;
        self.trail(&composed, &mnt)?;
        self.finish(&cleared, composed.tools)
    }

    fn begin(&mut self, phase: InstallPhase, message: &str) {
        self.phases.begin(phase, message);
    }

    fn stops_after(&self, phase: InstallPhase) -> bool {
        self.opts.stop_after == Some(phase)
    }

    fn check_handoff(&mut self) -> Result<()> {
        let plan = &self.handoff.plan;
        let message = format!(
            "reading the handoff from {}: {} on {}, flake {}",
            self.handoff.dir.display(),
            plan.hostname,
            plan.provider,
            plan.flake.reference
        );
        self.begin(InstallPhase::Handoff, &message);
        self.check_installer()
    }

    fn find_disk(&mut self) -> Result<disk::Cleared> {
        let target = self.handoff.plan.target.as_ref().ok_or_else(|| {
            Error::refused(
                "install",
                Refusal::new(
                    Guard::TargetDisk,
                    "a plan without a target disk (a stage-1 guard refused)",
                    "the disk stage 1 chose",
                    "fix the refusal `nixos-lift plan` reports and rerun stage 1",
                ),
            )
        })?;
        self.begin(
            InstallPhase::Disk,
            &format!(
                "finding the target disk (was {}, {} bytes)",
                target.path, target.size_bytes
            ),
        );
        let disks = crate::host::inspect(&SysRoot::new(&self.opts.root))?.disks;
        let cleared = disk::find_target(target, &disks)?;
        self.line(&format!(
            "nixos-lift: target disk {} matched by {} ({})",
            cleared.disk.path,
            cleared.matched_by,
            cleared.device()
        ));
        Ok(cleared)
    }

    /// Writes the wrapper flake and builds the disko script; outside fleet mode it also
    /// evaluates the whole system now, as an evaluation error must not cost the disk.
    fn compose(&mut self, cleared: &disk::Cleared) -> Result<Composed> {
        let plan = &self.handoff.plan;
        let fleet = plan.system.is_some();
        self.begin(
            InstallPhase::Compose,
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
            compose::write_nix_conf(&self.work.join("nix/nix.conf"), plan, &self.handoff.secrets)?;
        let tools = Tools::new(self.log.clone(), Some(&nix_conf));
        let install_facts = InstallFacts {
            hostname: plan.hostname.clone(),
            disk_device: cleared.device().to_string(),
            disk_path: cleared.disk.path.clone(),
            authorized_keys: self.handoff.authorized_keys.clone(),
            flake: plan.flake.url.clone(),
            attr: plan.flake.attr.clone(),
            firmware: plan.firmware,
            update: compose::UpdateFacts::from_plan(plan),
            network: crate::plan::networkd::nixos(&plan.network),
        };
        Wrapper::new(plan, &self.handoff.facts, &install_facts, &cleared.disk)?
            .write(&flake_dir)?;
        if !fleet {
            if let Some(note) = memory::ensure_swap(&self.opts.root, &tools) {
                self.line(&format!("nixos-lift: {note}"));
            }
        }
        let disko_script = match &plan.system {
            Some(system) => {
                let script =
                    fleet::disko_script(&tools, fleet::substituter(plan)?, system.as_str())?;
                // A store path: in the installer's store (a rehearsal's, under its root).
                self.opts.under_root(&script).display().to_string()
            }
            None => self.build_disko_script(&tools, &flake_dir, cleared)?,
        };
        Ok(Composed {
            tools,
            flake_dir,
            disko_script,
        })
    }

    /// Runs the disko script: the first write to the target disk. Returns the mount point.
    fn partition(&mut self, cleared: &disk::Cleared, composed: &Composed) -> Result<PathBuf> {
        self.begin(
            InstallPhase::Partition,
            &format!("partitioning {} (disko)", cleared.disk.path),
        );
        composed.tools.run(&composed.disko_script, &[])?;
        let mnt = self.opts.under_root("/mnt");
        std::fs::create_dir_all(&mnt)
            .map_err(|e| Error::io(format!("creating {}", mnt.display()), e))?;
        Ok(mnt)
    }

    /// `nixos-install` of the flake, or, in fleet mode, of the prebuilt system copied from the
    /// first substituter.
    /// Once disko has made the target's filesystem: swap there when memory is tight, for the
    /// install phase; released after it, whatever its outcome.
    fn add_target_swap(&mut self, composed: &Composed, mnt: &Path) -> Option<memory::TargetSwap> {
        let (swap, note) = memory::TargetSwap::add(&self.opts.root, mnt, &composed.tools);
        if let Some(note) = note {
            self.line(&format!("nixos-lift: {note}"));
        }
        swap
    }

    fn install(
        &mut self,
        composed: &Composed,
        mnt: &Path,
        swap: Option<&memory::TargetSwap>,
    ) -> Result<()> {
        let plan = &self.handoff.plan;
        self.begin(
            InstallPhase::Install,
            &match &plan.system {
                None => format!("installing {} (nixos-install)", plan.flake.attr),
                Some(system) => format!("installing the prebuilt system {system}"),
            },
        );
        for line in machine::write(mnt, self.handoff)? {
            self.line(&format!("nixos-lift: {line}"));
        }
        let tools = match swap {
            Some(swap) => composed.tools.clone().with_env("TMPDIR", swap.tmp_dir()),
            None => composed.tools.clone(),
        };
        let mnt_s = mnt.display().to_string();
        let Some(system) = &plan.system else {
            let flake = compose::flake_ref(&composed.flake_dir, &plan.flake.attr);
            tools.run(
                "nixos-install",
                &[
                    "--root",
                    &mnt_s,
                    "--flake",
                    &flake,
                    "--no-root-passwd",
                    "--no-channel-copy",
                ],
            )?;
            return Ok(());
        };
        let from = fleet::substituter(plan)?;
        let tmp = mnt.join("tmp");
        std::fs::create_dir_all(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        tools.run(
            "nix",
            &[
                "copy",
                "--from",
                from,
                "--to",
                &format!("local?root={mnt_s}"),
                system.as_str(),
            ],
        )?;
        tools.run(
            "nixos-install",
            &[
                "--root",
                &mnt_s,
                "--system",
                system.as_str(),
                "--no-root-passwd",
                "--no-channel-copy",
            ],
        )?;
        Ok(())
    }

    fn trail(&mut self, composed: &Composed, mnt: &Path) -> Result<()> {
        self.begin(
            InstallPhase::Trail,
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
        let private =
            compose::write_update_secrets(mnt, &self.handoff.plan, &self.handoff.secrets)?;
        if let Some(update) = &self.handoff.plan.update {
            self.line(&format!(
                "nixos-lift: update: every {} ({}), {} root-only file(s): {}",
                update.interval,
                if update.reboot {
                    "boot and reboot"
                } else {
                    "switch"
                },
                private.len(),
                private.join(" ")
            ));
        }
        trail::write(
            mnt,
            &composed.flake_dir,
            &self.handoff.plan,
            log_path.as_deref(),
        )
    }

    /// The `done` event; the tools to reboot with when this run reboots.
    fn finish(&mut self, cleared: &disk::Cleared, tools: Tools) -> Result<Option<Tools>> {
        let plan = &self.handoff.plan;
        let reboot = plan.reboot && !self.opts.rehearsal() && self.opts.stop_after.is_none();
        if reboot {
            self.begin(InstallPhase::Reboot, "rebooting into NixOS");
        }
        self.phases.done(&format!(
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
        ));
        Ok(reboot.then_some(tools))
    }

    fn line(&mut self, line: &str) {
        self.phases.line(line);
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
        Err(Error::refused(
            "install",
            Refusal::new(
                Guard::InstallerEnvironment,
                format!(
                    "/ on {}",
                    if root_fs.is_empty() {
                        "an unknown filesystem"
                    } else {
                        &root_fs
                    }
                ),
                "the RAM-only installer (rootfs, tmpfs or ramfs)",
                "`nixos-lift install` runs inside the installer stage 1 kexecs into, use \
                 `nixos-lift run` on the stock image",
            ),
        ))
    }

    fn restore_network(&mut self) -> Result<()> {
        self.begin(InstallPhase::Network, "restoring the network");
        let plan = &self.handoff.plan.network.clone();
        if self.opts.skip_network {
            self.line("nixos-lift: network left as it is (--skip-network)");
        } else {
            for line in network::apply(plan)? {
                self.line(&format!("nixos-lift: network: {line}"));
            }
            let dhcp = network::dhcp_without_systemd(&self.opts.root, plan);
            for line in &dhcp {
                self.line(&format!("nixos-lift: network: {line}"));
            }
            if !dhcp.is_empty() {
                // A DHCP client's hook may flush the interface: put the static part back.
                network::apply(plan)?;
            }
        }
        let resolv = self.opts.under_root("/etc/resolv.conf");
        let servers = network::write_resolv_conf(&resolv, plan)?;
        if !servers.is_empty() {
            let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
            self.line(&format!(
                "nixos-lift: network: resolvers {}",
                list.join(" ")
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
        // Events held until now can reach the webhook.
        self.phases.reporter.network_ready();
        Ok(())
    }

    /// The flake path: checks the layout's disks, builds the disko script and evaluates the
    /// whole system now, so an evaluation error does not cost the disk.
    fn build_disko_script(
        &mut self,
        tools: &Tools,
        flake_dir: &Path,
        cleared: &disk::Cleared,
    ) -> Result<String> {
        let plan = &self.handoff.plan;
        let config = format!(
            "{}.config",
            compose::flake_ref(
                flake_dir,
                &format!("nixosConfigurations.{}", nix_attr(&plan.flake.attr))
            )
        );
        self.check_disko_devices(tools, &config, cleared)?;
        let script = tools
            .run(
                "nix",
                &[
                    "build",
                    "--no-link",
                    "--print-out-paths",
                    &format!("{config}.system.build.diskoScript"),
                ],
            )?
            .trim()
            .to_string();
        tools.run(
            "nix",
            &[
                "eval",
                "--raw",
                &format!("{config}.system.build.toplevel.drvPath"),
            ],
        )?;
        Ok(script)
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
            return Err(Error::refused(
                "partition",
                Refusal::new(
                    Guard::DiskoLayout,
                    "no disko.devices.disk in the configuration",
                    "a disko layout for the target disk",
                    "import disko and a layout (nixos-lift's disk-basic module) in the flake's \
                     configuration",
                ),
            ));
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
            return Err(Error::refused(
                "partition",
                Refusal::new(
                    Guard::DiskoDevices,
                    format!("a layout that names {}", others.join(", ")),
                    format!(
                        "only the target {} ({})",
                        cleared.disk.path,
                        cleared.device()
                    ),
                    "set disko.devices.disk.<name>.device from nixos-lift's facts or use a \
                     single-disk layout",
                ),
            ));
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
fn banner(phases: &mut Phases<InstallPhase>, log: &SharedLog, error: &Error) {
    let phase = phases.current();
    let tail = log.tail();
    phases.failed(&format!("stopped at {}", phase.name()), error);
    let rule = "nixos-lift: ================================================================";
    phases.line(rule);
    phases.line(&format!(
        "nixos-lift: INSTALL FAILED in phase {} ({}/{})",
        phase.name(),
        phase.step(),
        InstallPhase::total()
    ));
    phases.line(&format!("nixos-lift: reason: {error}"));
    phases.line(if phase.wrote_disk() {
        "nixos-lift: the disk was partitioned and is not bootable: do not reboot into it; \
         rerun the install after fixing the cause"
    } else {
        "nixos-lift: the disk is untouched (stopped before partitioning): rebooting returns to \
         the stock image"
    });
    phases.line(
        "nixos-lift: the installer stays up (console and ssh with the authorized keys); the \
         full log is /run/nixos-lift/install.log",
    );
    phases.line(&format!("nixos-lift: last {} log lines:", tail.len()));
    for line in tail {
        phases.line(&format!("nixos-lift: | {line}"));
    }
    phases.line(rule);
}

/// Created with `mode` (so a private key is never readable by others, not even briefly), and
/// set to it when the file was there.
pub(crate) fn write_file(path: &Path, mode: u32, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let ctx = || format!("writing {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(ctx(), e))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(data))
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(ctx(), e))
}
