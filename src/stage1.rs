//! Stage 1 in the stock image: `plan` (decide, side-effect free) and `run` (plan, fetch, hand off,
//! kexec).

use crate::cli::PlanArgs;
use crate::config::ValidConfig;
use crate::facts::Facts;
use crate::host::{self, SysRoot};
use crate::plan::{plan_install, Plan, PlanEnv};
use crate::{output, Error, Result};

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

/// Facts (host + cloud) and the plan for them.
pub fn make_plan(root: &SysRoot, config: &ValidConfig) -> Result<(Facts, Plan)> {
    let facts = host::inspect(root)?;
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
    let (_facts, plan) = make_plan(&root, &config)?;
    output::print(&plan, output::resolve(args.format), || plan.to_text())?;
    match refusal(&plan) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}
