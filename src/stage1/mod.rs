//! Stage 1 in the stock image: `plan` (decide, side-effect free) and `run` (plan, fetch, hand off,
//! kexec).

pub mod staging;

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::config::{Arch, ValidConfig};
use crate::facts::Facts;
use crate::fetch::extract::Installer;
use crate::host::{self, SysRoot};
use crate::phase::{Phase, Phases};
use crate::plan::memory::MemoryPlan;
use crate::plan::{guard, plan_install, InstallerPlan, Plan, PlanEnv};
use crate::provider::{ProbeOptions, ProviderKind};
use crate::refusal::{Guard, Refusal};
use crate::report::{RemoteTargets, Reporter};
use crate::{detach, Error, Result};

/// Reads what the plan needs besides facts: uid, hostname, IMA policy, existing keys.
pub fn gather_env(root: &SysRoot) -> PlanEnv {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let hostname = root
        .read_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "nixos".into());
    let ima_kexec_appraise = root
        .read_string("/sys/kernel/security/ima/policy")
        .is_some_and(|policy| {
            policy
                .lines()
                .any(|l| l.contains("appraise") && l.contains("func=KEXEC_KERNEL_CHECK"))
        });
    let lines: Vec<String> = ["/root/.ssh/authorized_keys", "/root/.ssh/authorized_keys2"]
        .iter()
        .filter_map(|p| root.read_string(p))
        .flat_map(|text| text.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let root_keys = crate::sshkey::keep_valid(lines, "/root/.ssh/authorized_keys");
    // The handoff carries this very binary.
    let agent_bytes = std::fs::metadata("/proc/self/exe").map_or(0, |m| m.len());
    PlanEnv {
        euid,
        hostname,
        ima_kexec_appraise,
        root_keys,
        installer_size: None,
        agent_bytes,
        rootfs: staging::root_fs_space(root),
    }
}

/// Evaluating a NixOS flake in the installer takes about 1.5-2 GiB; stage 2 adds zram swap
/// below that, but a prebuilt `system` is the reliable way on small machines.
const EVALUATION_MEMORY: u64 = 2 << 30;

/// Facts (host + cloud) and the plan for them. Fixture roots get DMI-only identification unless
/// `--metadata-base` is given (provider::identify sends no requests for them).
pub fn make_plan(
    root: &SysRoot,
    config: &ValidConfig,
    metadata: &ProbeOptions,
) -> Result<(Facts, Plan)> {
    let mut facts = host::inspect(root)?;
    facts.cloud = Some(crate::provider::identify_blocking(&facts, root, metadata)?);
    let mut env = gather_env(root);
    // Only this machine's own run asks the server; a fixture root plans with an assumed size.
    let installer = facts
        .host
        .arch
        .installable()
        .and_then(|arch| guard::installer_for(&config.installer, arch).0);
    if let Some(installer) = installer.filter(|i| root.is_host() && guard::url_allowed(&i.url)) {
        env.installer_size = Some(crate::fetch::installer_size(&installer.url));
    }
    let plan = plan_install(&facts, config, &env);
    if config.system.is_none() && facts.host.memory_bytes < EVALUATION_MEMORY {
        tracing::warn!(
            "{} MiB of RAM: stage 2 evaluates the flake in the installer, which takes about \
             1.5-2 GiB (it adds zram swap); a prebuilt `system` avoids the evaluation",
            facts.host.memory_bytes >> 20
        );
    }
    for disk in &plan.other_disks {
        tracing::info!(device = %disk.path, "leaving {} alone: {}", disk.path, disk.reason);
    }
    for g in plan.refusals() {
        tracing::error!(guard = %g.name, "refused by guard {}", g.refusal());
    }
    Ok((facts, plan))
}

/// The error for a plan with refused guards (exit 10).
pub fn refusal(plan: &Plan) -> Option<Error> {
    let refusals: Vec<Refusal> = plan.refusals().iter().map(|g| g.refusal()).collect();
    (!refusals.is_empty()).then_some(Error::Guards {
        action: "install NixOS",
        refusals,
    })
}

/// Stage 1's download, verification and unpacking on their own (`nixos-lift fetch-installer`).
pub fn fetch_installer(
    url: &crate::config::InstallerSource,
    sha256: Option<&crate::config::Sha256>,
    dest: &std::path::Path,
) -> Result<FetchSummary> {
    let fetched =
        crate::fetch::fetch_installer(url, sha256, dest, crate::fetch::DEFAULT_MAX_BYTES)?;
    Ok(FetchSummary {
        url: url.to_string(),
        bytes: fetched.bytes,
        sha256: fetched.sha256,
        verified: sha256.is_some(),
        seconds: fetched.elapsed.as_secs_f64(),
        installer: fetched.installer,
    })
}

#[derive(serde::Serialize)]
pub struct FetchSummary {
    url: String,
    bytes: u64,
    sha256: String,
    verified: bool,
    seconds: f64,
    installer: crate::fetch::extract::Installer,
}

impl FetchSummary {
    pub fn to_text(&self) -> String {
        let i = &self.installer;
        let tool = i
            .kexec_tool
            .as_ref()
            .map_or("none".into(), |p| p.display().to_string());
        format!(
            "installer: {} MiB in {:.1} s, sha256 {} ({})\nlayout: {}\nkernel: {}\ninitrd: {}\n\
             kexec: {tool}\ncmdline: {}",
            self.bytes >> 20,
            self.seconds,
            self.sha256,
            if self.verified {
                "verified"
            } else {
                "not pinned"
            },
            i.layout,
            i.kernel.display(),
            i.initrd.display(),
            i.cmdline,
        )
    }
}

/// Stage 1's lock and its tmpfs staging live here.
const WORK_DIR: &str = "/run/nixos-lift";

/// Stage 1's phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunPhase {
    Plan,
    Download,
    Handoff,
    Kexec,
    Jump,
}

impl Phase for RunPhase {
    const ALL: &'static [Self] = &[
        Self::Plan,
        Self::Download,
        Self::Handoff,
        Self::Kexec,
        Self::Jump,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Plan => "plan",
            Self::Download => "download",
            Self::Handoff => "handoff",
            Self::Kexec => "kexec",
            Self::Jump => "jump",
        }
    }
}

/// How long stage 1 waits for its events to reach the webhook before it jumps or exits: a
/// dead receiver must not hold the takeover up.
const REPORT_DRAIN: Duration = Duration::from_secs(5);

/// What `nixos-lift run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: std::path::PathBuf,
    pub metadata: ProbeOptions,
    /// Run again although the run marker says a takeover already started.
    pub force: bool,
    /// Stop before the kexec, with everything staged.
    pub rehearse: bool,
}

/// `nixos-lift run`: the takeover.
pub fn run(args: &RunOptions) -> Result<()> {
    let config_path = std::fs::canonicalize(&args.config)
        .map_err(|e| Error::io(format!("reading {}", args.config.display()), e))?;
    let config = ValidConfig::load(&config_path)?;
    let root = SysRoot::new("/");
    if host::pid1_is_systemd(&root)
        && std::env::var_os(detach::DETACHED_ENV).is_none()
        && host::started_by_cloud_init(&root, std::process::id())
    {
        let exe =
            std::fs::read_link("/proc/self/exe").map_err(|e| Error::io("finding myself", e))?;
        let mut run_args = args.metadata.to_args();
        if args.force {
            run_args.push("--force".into());
        }
        let status = detach::systemd_run(&exe, &config_path, &run_args)
            .status()
            .map_err(|e| Error::io("running systemd-run", e))?;
        if !status.success() {
            return Err(Error::Subprocess {
                program: "systemd-run".into(),
                status,
            });
        }
        // The detached run reports the progress; this one sends no events.
        tracing::info!("continuing detached in unit nixos-lift: journalctl -u nixos-lift");
        return Ok(());
    }

    std::fs::create_dir_all(WORK_DIR).map_err(|e| Error::io(format!("creating {WORK_DIR}"), e))?;
    let lock = std::fs::File::create(format!("{WORK_DIR}/lock"))
        .map_err(|e| Error::io("taking the run lock", e))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        // No `failed` event: the run holding the lock is the takeover, and reports it.
        return Err(Error::refused(
            "run",
            Refusal::new(
                Guard::RunLock,
                format!("another nixos-lift run holds {WORK_DIR}/lock"),
                "one run at a time on a machine",
                "let that run finish: it reports its own progress (journal, serial console, \
                 webhook); a second run is never needed",
            ),
        ));
    }

    let mut phases = Phases::new(Reporter::new(1, Vec::new()).with_bare_log_lines());
    let result = Takeover {
        args,
        config: &config,
        root,
        phases: &mut phases,
        fetch_cpu: Duration::ZERO,
    }
    .run();
    if let Err(err) = &result {
        let phase = phases.current().name();
        phases.failed(
            &format!("stage 1 stopped at {phase}; the machine still runs the stock image"),
            err,
        );
    }
    phases.reporter.finish(REPORT_DRAIN);
    result
}

/// `run`'s phases after the lock, each returning what the next needs.
struct Takeover<'a> {
    args: &'a RunOptions,
    config: &'a ValidConfig,
    root: SysRoot,
    phases: &'a mut Phases<RunPhase>,
    /// CPU time the download took, kept apart in the resource line.
    fetch_cpu: Duration,
}

/// What the plan phase hands on: a plan without refusals, and its arch and installer.
struct Planned {
    facts: Facts,
    plan: Plan,
    arch: Arch,
    installer: InstallerPlan,
}

/// What the prepare phase made ready for the download: the run marker and the staging.
struct Prepared {
    marker: std::path::PathBuf,
    attempts: u32,
    memory: MemoryPlan,
    watch: staging::MemWatch,
    staged: staging::StagingDir,
}

impl Takeover<'_> {
    fn run(&mut self) -> Result<()> {
        let Planned {
            facts,
            mut plan,
            arch,
            installer: source,
        } = self.plan()?;
        let prepared = self.prepare(&plan)?;
        let installer = self.download(&mut plan, arch, &source, &prepared)?;
        let systemd = facts.host.systemd;
        self.handoff(facts, plan, &installer)?;
        if self.args.rehearse {
            return self.rehearsal_done(&installer, prepared);
        }
        self.load(&installer, prepared)?;
        self.phases
            .begin(RunPhase::Jump, "jumping into the installer");
        // Bounded: the events so far reach the webhook, or the jump goes on without them.
        self.phases.reporter.flush(REPORT_DRAIN);
        crate::kexec::jump(systemd)
    }

    /// Facts, cloud and plan; the remote targets are known once the plan names the cloud.
    fn plan(&mut self) -> Result<Planned> {
        self.phases.begin(
            RunPhase::Plan,
            "identifying this machine and its cloud, and checking the guards",
        );
        let planned = make_plan(&self.root, self.config, &self.args.metadata);
        let plan = planned.as_ref().ok().map(|(_, plan)| plan);
        if let Some(plan) = plan {
            self.phases
                .reporter
                .set_identity(plan.instance_id.clone(), Some(plan.hostname.clone()));
        }
        self.phases
            .reporter
            .start_remote(remote_targets(self.config, &self.args.metadata, plan));
        // The stock image's network is up.
        self.phases.reporter.network_ready();
        let (facts, plan) = planned?;
        if let Some(err) = refusal(&plan) {
            return Err(err);
        }
        // Without refusals both are there: the arch guard and the installer's guards see to it.
        match (plan.arch, plan.installer.clone()) {
            (Some(arch), Some(installer)) => Ok(Planned {
                facts,
                plan,
                arch,
                installer,
            }),
            _ => Err(Error::refused(
                "install NixOS",
                guard::arch(&facts.host).refusal(),
            )),
        }
    }

    /// The run marker's guard, then the staging the memory plan chose.
    fn prepare(&self, plan: &Plan) -> Result<Prepared> {
        let id = plan.instance_id.as_deref().unwrap_or("unknown-instance");
        let marker = std::path::Path::new(staging::MARKER_DIR).join(format!("{id}.kexec"));
        let attempts: u32 = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("attempts=")?.trim().parse().ok())
            })
            .unwrap_or(0);
        if attempts > 0 && !self.args.force {
            return Err(Error::refused(
                "kexec",
                Refusal::new(
                    Guard::RunMarker,
                    format!(
                        "{} (attempts={attempts}): this instance already kexec'd into the \
                         installer and came back",
                        marker.display()
                    ),
                    "no marker",
                    "read the installer's console log, then rerun with --force",
                ),
            ));
        }
        let memory = plan.memory.clone().ok_or_else(|| {
            Error::Other("the plan has no memory figures (a plan from another agent?)".into())
        })?;
        let staging = memory.staging.ok_or_else(|| {
            Error::Other("the memory guard passed with nowhere to stage the installer".into())
        })?;
        let watch = staging::MemWatch::start(self.root.clone());
        let staged = staging::StagingDir::prepare(staging)?;
        Ok(Prepared {
            marker,
            attempts,
            memory,
            watch,
            staged,
        })
    }

    /// Downloads, verifies and unpacks the installer into the staging; records its command line.
    fn download(
        &mut self,
        plan: &mut Plan,
        arch: Arch,
        source: &InstallerPlan,
        prepared: &Prepared,
    ) -> Result<Installer> {
        self.phases.begin(
            RunPhase::Download,
            &format!("downloading and verifying the installer {}", source.url),
        );
        let before_fetch = usage();
        let installer = crate::fetch::fetch_installer(
            &source.url,
            source.sha256.as_ref(),
            &prepared.staged.path().join("installer"),
            crate::fetch::DEFAULT_MAX_BYTES,
        )?
        .installer;
        self.fetch_cpu = usage().0.saturating_sub(before_fetch.0);
        crate::fetch::extract::check_kernel(&installer.kernel, arch)?;
        // An installer without stage 2 would boot and sit there: nothing would install.
        crate::fetch::extract::require_stage2(&installer)?;
        tracing::info!(
            layout = installer.layout.as_str(),
            "installer unpacked; kernel command line: {}",
            installer.cmdline
        );
        plan.kernel_cmdline = Some(installer.cmdline.clone());
        Ok(installer)
    }

    /// Appends the handoff (plan, facts, network, keys, this agent) to the installer's initrd.
    fn handoff(&mut self, facts: Facts, plan: Plan, installer: &Installer) -> Result<()> {
        self.phases.begin(
            RunPhase::Handoff,
            &format!(
                "building the handoff for {} (target disk {})",
                plan.hostname,
                plan.target.as_ref().map_or("none", |t| t.path.as_str())
            ),
        );
        let payload = build_payload(&self.root, self.config, facts, plan)?;
        let started = std::time::Instant::now();
        let initrd_bytes = crate::handoff::payload::append_handoff(&installer.initrd, &payload)?;
        tracing::info!(
            initrd_bytes,
            ms = started.elapsed().as_millis() as u64,
            "handoff appended to the installer's initrd"
        );
        Ok(())
    }

    /// `--rehearse`: everything up to the kexec load, and the staging kept for a look.
    fn rehearsal_done(&mut self, installer: &Installer, prepared: Prepared) -> Result<()> {
        log_usage(self.fetch_cpu, &prepared.watch, &prepared.memory);
        let initrd = installer.initrd.display();
        tracing::info!("rehearsal: stopping before the kexec load; {initrd} is ready");
        self.phases.done(&format!(
            "rehearsal: {initrd} is ready; stopped before the kexec load"
        ));
        prepared.staged.keep();
        Ok(())
    }

    /// Loads the installer kernel; from here the kernel holds its own copy of the initrd.
    fn load(&mut self, installer: &Installer, prepared: Prepared) -> Result<()> {
        self.phases
            .begin(RunPhase::Kexec, "loading the installer kernel (kexec)");
        check_load_memory(&self.root, installer, &prepared.memory)?;
        let append = |record: &crate::handoff::payload::KexecRecord| -> Result<()> {
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(&installer.initrd)
                .map_err(|e| Error::io("appending the kexec record", e))?;
            crate::handoff::payload::write_kexec_override(record, file)
        };
        let method = crate::kexec::load(installer, &installer.initrd, &append)?;
        tracing::info!(?method, "kexec loaded");
        // The kernel holds its own copy now: the staging (and its tmpfs) goes before the jump.
        drop(prepared.staged);
        write_marker(&prepared.marker, prepared.attempts + 1)?;
        log_usage(self.fetch_cpu, &prepared.watch, &prepared.memory);
        Ok(())
    }
}

/// The webhook from the config, and GCP's guest attribute once the plan names GCP.
fn remote_targets(
    config: &ValidConfig,
    metadata: &ProbeOptions,
    plan: Option<&Plan>,
) -> RemoteTargets {
    RemoteTargets {
        webhook_url: config.report.webhook_url.clone(),
        webhook_token: config.report.webhook_token.clone(),
        gcp_metadata_base: plan
            .is_some_and(|p| p.provider == ProviderKind::Gcp)
            .then(|| {
                metadata.metadata_base.as_ref().map_or_else(
                    || crate::report::GCP_METADATA_BASE.to_string(),
                    |base| base.to_string(),
                )
            }),
    }
}

/// The last look before the kexec load, with the real sizes: the load needs the initrd twice
/// on top of what is already used (the staged files included, when they are in RAM). The plan
/// only had the tarball's size, or an assumed one.
fn check_load_memory(
    root: &SysRoot,
    installer: &crate::fetch::extract::Installer,
    memory: &crate::plan::memory::MemoryPlan,
) -> Result<()> {
    let initrd = std::fs::metadata(&installer.initrd)
        .map_err(|e| Error::io("measuring the installer's initrd", e))?
        .len();
    let need = crate::plan::memory::MemoryPlan::load_need(initrd);
    let Some(available) = host::mem_available(root) else {
        return Ok(());
    };
    if available >= need || memory.min_memory_override.is_some() {
        return Ok(());
    }
    Err(Error::refused(
        "kexec",
        Refusal::new(
            Guard::Memory,
            format!("MemAvailable {} MiB before the kexec load", available >> 20),
            format!(
                "{} MiB: the initrd's {} MiB twice + {} MiB headroom",
                need.div_ceil(1 << 20),
                initrd.div_ceil(1 << 20),
                crate::plan::memory::HEADROOM >> 20
            ),
            "choose an instance type with more RAM, or set min_memory to override this estimate",
        ),
    ))
}

/// CPU time (user + system, all threads) and peak RSS in KiB of this process so far.
fn usage() -> (std::time::Duration, u64) {
    // SAFETY: getrusage only writes the struct it is given, which we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let time = |t: libc::timeval| {
        std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
            + std::time::Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    (
        time(ru.ru_utime) + time(ru.ru_stime),
        ru.ru_maxrss.max(0) as u64,
    )
}

/// Stage 1's cost for the benchmark (tests/bench/fetch.sh reads this line from the console),
/// and its memory low point (tests/bench/ram-floor.sh reads that one).
fn log_usage(
    fetch_cpu: std::time::Duration,
    watch: &staging::MemWatch,
    memory: &crate::plan::memory::MemoryPlan,
) {
    if let Some(low) = watch.lowest() {
        tracing::info!(
            "memory: lowest MemAvailable {} MiB during stage 1 (staged {} MiB)",
            low >> 20,
            memory.staged_bytes >> 20
        );
    }
    let (cpu, peak_rss_kib) = usage();
    tracing::info!(
        "stage 1 resources: cpu {} ms without the download ({} ms with it), peak RSS {} KiB",
        cpu.saturating_sub(fetch_cpu).as_millis(),
        cpu.as_millis(),
        peak_rss_kib
    );
}

fn write_marker(marker: &std::path::Path, attempts: u32) -> Result<()> {
    let ctx = || format!("writing the run marker {}", marker.display());
    std::fs::create_dir_all(staging::MARKER_DIR).map_err(|e| Error::io(ctx(), e))?;
    let tmp = marker.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(ctx(), e))?;
    use std::io::Write;
    writeln!(f, "attempts={attempts}").map_err(|e| Error::io(ctx(), e))?;
    f.sync_all().map_err(|e| Error::io(ctx(), e))?;
    std::fs::rename(&tmp, marker).map_err(|e| Error::io(ctx(), e))?;
    Ok(())
}

fn build_payload(
    root: &SysRoot,
    config: &ValidConfig,
    facts: Facts,
    plan: Plan,
) -> Result<crate::handoff::payload::Payload> {
    use crate::handoff::payload::{read_host_keys, KexecMethod, KexecRecord, Payload};
    let secrets = crate::handoff::Secrets {
        nix_access_tokens: config
            .nix
            .access_tokens
            .iter()
            .map(|(host, token)| (host.as_str().to_string(), token.clone()))
            .collect(),
        webhook_token: config.report.webhook_token.clone(),
    };
    Ok(Payload {
        authorized_keys: plan
            .ssh_authorized_keys
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        host_keys: read_host_keys(&root.join("/etc/ssh")),
        machine_id: root
            .read_string("/etc/machine-id")
            .map(|s| s.trim().to_string()),
        kexec: KexecRecord {
            method: KexecMethod::KexecFileLoad,
            fallback_reason: None,
        },
        agent: std::path::PathBuf::from("/proc/self/exe"),
        plan,
        facts,
        secrets,
    })
}
