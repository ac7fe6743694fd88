//! Stage 1 in the stock image: `plan` (decide, side-effect free) and `run` (plan, fetch, hand off,
//! kexec).

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::cli::{MetadataArgs, PlanArgs};
use crate::config::ValidConfig;
use crate::facts::Facts;
use crate::host::{self, SysRoot};
use crate::plan::{plan_install, Plan, PlanEnv};
use crate::provider::ProviderKind;
use crate::report::{RemoteTargets, Reporter, Status};
use crate::{detach, output, Error, Result};

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
    let mut host_keys: Vec<String> = root
        .list_dir("/etc/ssh")
        .into_iter()
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    host_keys.sort();
    let has_machine_id = root
        .read_string("/etc/machine-id")
        .is_some_and(|id| !id.trim().is_empty());
    PlanEnv {
        euid,
        hostname,
        ima_kexec_appraise,
        root_keys,
        host_keys,
        has_machine_id,
    }
}

/// Facts (host + cloud) and the plan for them. Fixture roots get DMI-only identification unless
/// `--metadata-base` is given (provider::identify sends no requests for them).
pub fn make_plan(
    root: &SysRoot,
    config: &ValidConfig,
    metadata: &MetadataArgs,
) -> Result<(Facts, Plan)> {
    let mut facts = host::inspect(root)?;
    facts.cloud = Some(crate::provider::identify_blocking(
        &facts,
        root,
        &metadata.probe_options(),
    )?);
    let env = gather_env(root);
    let plan = plan_install(&facts, config, &env);
    for disk in &plan.other_disks {
        tracing::info!(device = %disk.path, "leaving {} alone: {}", disk.path, disk.reason);
    }
    for g in plan.refusals() {
        tracing::error!(guard = %g.name, "refused by guard {}: found {}; needed {}; way out: {}",
            g.name, g.found, g.needed, g.way_out);
    }
    Ok((facts, plan))
}

/// The error for a plan with refused guards (exit 10).
pub fn refusal(plan: &Plan) -> Option<Error> {
    let refusals: Vec<String> = plan
        .refusals()
        .iter()
        .map(|g| {
            format!(
                "{}: found {}, needed {}; way out: {}",
                g.name, g.found, g.needed, g.way_out
            )
        })
        .collect();
    (!refusals.is_empty()).then(|| Error::Guards {
        action: "install NixOS".into(),
        refusals,
    })
}

/// `nixos-lift plan`.
pub fn plan_command(args: PlanArgs) -> Result<()> {
    let config = ValidConfig::load(&args.config)?;
    let root = SysRoot::new(&args.inspect.root);
    let (_facts, plan) = make_plan(&root, &config, &args.metadata)?;
    output::print(&plan, output::resolve(args.format), || plan.to_text())?;
    match refusal(&plan) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// `nixos-lift fetch-installer`: stage 1's download, verification and unpacking on their own.
pub fn fetch_installer_command(args: crate::cli::FetchInstallerArgs) -> Result<()> {
    let fetched = crate::fetch::fetch_installer(
        &args.url,
        args.sha256.as_ref().map(|s| s.as_hex()),
        &args.dest,
        crate::fetch::DEFAULT_MAX_BYTES,
    )?;
    let summary = FetchSummary {
        url: &args.url,
        bytes: fetched.bytes,
        sha256: &fetched.sha256,
        verified: args.sha256.is_some(),
        seconds: fetched.elapsed.as_secs_f64(),
        installer: &fetched.installer,
    };
    output::print(&summary, output::resolve(args.format), || summary.to_text())
}

#[derive(serde::Serialize)]
struct FetchSummary<'a> {
    url: &'a str,
    bytes: u64,
    sha256: &'a str,
    verified: bool,
    seconds: f64,
    installer: &'a crate::fetch::extract::Installer,
}

impl FetchSummary<'_> {
    fn to_text(&self) -> String {
        let i = self.installer;
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

/// Where stage 1 works: RAM only.
const WORK_DIR: &str = "/run/nixos-lift";
/// The only file stage 1 writes on the root filesystem, right before the jump.
const MARKER_DIR: &str = "/var/lib/nixos-lift";
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// Under cloud-init (an ancestor process or our cgroup says so).
fn started_by_cloud_init() -> bool {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if cgroup.contains("cloud-final") || cgroup.contains("cloud-init") {
        return true;
    }
    let mut pid = std::process::id();
    for _ in 0..16 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            break;
        };
        let Some(close) = stat.rfind(')') else { break };
        let comm = stat
            .find('(')
            .map(|o| &stat[o + 1..close])
            .unwrap_or_default();
        if comm.starts_with("cloud-init") {
            return true;
        }
        match stat[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
        {
            Some(ppid) if ppid > 1 => pid = ppid,
            _ => break,
        }
    }
    false
}

fn is_ram_fs(path: &std::path::Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| {
            // The field's C type differs between targets.
            #[allow(clippy::unnecessary_cast)]
            let t = s.filesystem_type().0 as i64;
            t == TMPFS_MAGIC || t == RAMFS_MAGIC
        })
        .unwrap_or(false)
}

/// The phases of `run`, in order; `step` in its events is the 1-based position here.
pub const PHASES: [&str; 5] = ["plan", "download", "handoff", "kexec", "jump"];

/// How long stage 1 waits for its events to reach the webhook before it jumps or exits: a
/// dead receiver must not hold the takeover up.
const REPORT_DRAIN: Duration = Duration::from_secs(5);

/// `nixos-lift run`.
pub fn run_command(args: crate::cli::RunArgs) -> Result<()> {
    let config_path = std::fs::canonicalize(&args.config)
        .map_err(|e| Error::io(format!("reading {}", args.config.display()), e))?;
    let config = ValidConfig::load(&config_path)?;
    let systemd = std::path::Path::new("/run/systemd/system").is_dir();
    if systemd && std::env::var_os(detach::DETACHED_ENV).is_none() && started_by_cloud_init() {
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
            return Err(Error::Other(format!(
                "detaching with systemd-run: {status}"
            )));
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
        return Err(Error::Other(
            "another nixos-lift run holds /run/nixos-lift/lock".into(),
        ));
    }

    let mut progress = Progress {
        reporter: Reporter::new(1, Vec::new()).with_bare_log_lines(),
        step: 0,
    };
    let result = takeover(&args, &config, &mut progress);
    if let Err(err) = &result {
        progress.failed(err);
    }
    progress.reporter.finish(REPORT_DRAIN);
    result
}

/// Stage 1's progress events: one per phase, and `failed` naming the phase of any error.
struct Progress {
    reporter: Reporter,
    step: usize,
}

impl Progress {
    fn begin(&mut self, phase: &str, message: &str) {
        self.step = self.reporter.begin(&PHASES, phase, message);
    }

    /// The remote targets are known once the plan names the cloud (GCP's guest attribute);
    /// without a plan, the webhook alone.
    fn start_remote(&mut self, config: &ValidConfig, metadata: &MetadataArgs, plan: Option<&Plan>) {
        if let Some(plan) = plan {
            self.reporter
                .set_identity(plan.instance_id.clone(), Some(plan.hostname.clone()));
        }
        self.reporter.start_remote(RemoteTargets {
            webhook_url: config
                .report
                .webhook_url
                .as_ref()
                .map(|u| u.as_str().to_string()),
            webhook_token: config
                .report
                .webhook_token
                .as_ref()
                .map(|t| t.expose().to_string()),
            gcp_metadata_base: plan
                .is_some_and(|p| p.provider == ProviderKind::Gcp)
                .then(|| {
                    metadata.metadata_base.as_ref().map_or_else(
                        || crate::report::GCP_METADATA_BASE.to_string(),
                        |base| base.to_string(),
                    )
                }),
        });
        // The stock image's network is up.
        self.reporter.network_ready();
    }

    fn failed(&mut self, err: &Error) {
        let step = self.step.max(1);
        let phase = PHASES.get(step - 1).copied().unwrap_or("plan");
        self.reporter.event(
            phase,
            step as u32,
            PHASES.len() as u32,
            Status::Failed,
            &format!("stage 1 stopped at {phase}; the machine still runs the stock image"),
            Some(&err.to_string()),
        );
    }
}

/// `run`'s phases after the lock: plan, download, handoff, kexec load, jump.
fn takeover(
    args: &crate::cli::RunArgs,
    config: &ValidConfig,
    progress: &mut Progress,
) -> Result<()> {
    let root = SysRoot::new("/");
    progress.begin(
        "plan",
        "identifying this machine and its cloud, and checking the guards",
    );
    let planned = make_plan(&root, config, &args.metadata);
    progress.start_remote(
        config,
        &args.metadata,
        planned.as_ref().ok().map(|(_, plan)| plan),
    );
    let (facts, mut plan) = planned?;
    if let Some(err) = refusal(&plan) {
        return Err(err);
    }
    let id = plan
        .instance_id
        .clone()
        .unwrap_or_else(|| "unknown-instance".into());
    let marker = std::path::Path::new(MARKER_DIR).join(format!("{id}.kexec"));
    let attempts: u32 = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("attempts=")?.trim().parse().ok())
        })
        .unwrap_or(0);
    if attempts > 0 && !args.force {
        return Err(Error::Refused {
            action: "kexec".into(),
            guard: "run-marker",
            detail: format!(
                "found {} (attempts={attempts}): this instance already kexec'd into the installer \
                 and came back; needed no marker; way out: read the installer's console log, then \
                 rerun with --force",
                marker.display()
            ),
        });
    }
    let work = std::path::Path::new(WORK_DIR).join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| Error::io("creating the work directory", e))?;
    if !is_ram_fs(&work) {
        return Err(Error::Refused {
            action: "download".into(),
            guard: "ram-only",
            detail: format!(
                "{} is not tmpfs; needed RAM; way out: mount a tmpfs on /run",
                work.display()
            ),
        });
    }

    progress.begin(
        "download",
        &format!(
            "downloading and verifying the installer {}",
            plan.installer.url
        ),
    );
    let before_fetch = usage();
    let installer = crate::fetch::fetch_installer(
        &plan.installer.url,
        plan.installer.sha256.as_deref(),
        &work.join("installer"),
        crate::fetch::DEFAULT_MAX_BYTES,
    )?
    .installer;
    let fetch_cpu = usage().0.saturating_sub(before_fetch.0);
    crate::fetch::extract::check_kernel(&installer.kernel, &plan.arch)?;
    tracing::info!(
        layout = installer.layout,
        "installer unpacked; kernel command line: {}",
        installer.cmdline
    );
    plan.kernel_cmdline = Some(installer.cmdline.clone());

    progress.begin(
        "handoff",
        &format!(
            "building the handoff for {} (target disk {})",
            plan.hostname,
            plan.target.as_ref().map_or("none", |t| t.path.as_str())
        ),
    );
    let payload = build_payload(&root, config, facts, plan)?;
    let initrd = work.join("initrd.lift");
    let started = std::time::Instant::now();
    let len = crate::handoff::payload::write_initrd(&installer.initrd, &payload, &initrd)?;
    let _ = std::fs::remove_file(&installer.initrd);
    tracing::info!(
        bytes = len,
        ms = started.elapsed().as_millis() as u64,
        "handoff appended to a new initrd"
    );

    if args.rehearse {
        log_usage(fetch_cpu);
        tracing::info!(
            "rehearsal: stopping before the kexec load; {} is ready",
            initrd.display()
        );
        progress.reporter.event(
            "done",
            progress.step as u32,
            PHASES.len() as u32,
            Status::Done,
            &format!(
                "rehearsal: {} is ready; stopped before the kexec load",
                initrd.display()
            ),
            None,
        );
        return Ok(());
    }
    progress.begin("kexec", "loading the installer kernel (kexec)");
    let append = |record: &crate::handoff::payload::KexecRecord| -> Result<()> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&initrd)
            .map_err(|e| Error::io("appending the kexec record", e))?;
        crate::handoff::payload::write_kexec_override(record, file)
    };
    let method = crate::kexec::load(&installer, &initrd, &append)?;
    tracing::info!(?method, "kexec loaded");
    write_marker(&marker, attempts + 1)?;
    log_usage(fetch_cpu);
    progress.begin("jump", "jumping into the installer");
    // Bounded: the events so far reach the webhook, or the jump goes on without them.
    progress.reporter.flush(REPORT_DRAIN);
    crate::kexec::jump(facts_systemd())
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

/// Stage 1's cost for the benchmark (tests/bench/fetch.sh reads this line from the console).
fn log_usage(fetch_cpu: std::time::Duration) {
    let (cpu, peak_rss_kib) = usage();
    tracing::info!(
        "stage 1 resources: cpu {} ms without the download ({} ms with it), peak RSS {} KiB",
        cpu.saturating_sub(fetch_cpu).as_millis(),
        cpu.as_millis(),
        peak_rss_kib
    );
}

fn facts_systemd() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
}

fn write_marker(marker: &std::path::Path, attempts: u32) -> Result<()> {
    let ctx = || format!("writing the run marker {}", marker.display());
    std::fs::create_dir_all(MARKER_DIR).map_err(|e| Error::io(ctx(), e))?;
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
            .map(|(host, token)| (host.as_str().to_string(), token.expose().to_string()))
            .collect(),
        webhook_token: config
            .report
            .webhook_token
            .as_ref()
            .map(|t| t.expose().to_string()),
    };
    let network = crate::handoff::NetworkHandoff::from_facts(&facts);
    Ok(Payload {
        authorized_keys: plan.ssh_authorized_keys.clone(),
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
        network,
        secrets,
    })
}
