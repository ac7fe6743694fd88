//! The trail left in the installed system: what was installed, from where, and how.
//!
//! `/etc/nixos` gets the wrapper flake (without its lock, so the first
//! `nixos-rebuild switch --flake /etc/nixos#<name>` pulls the user's latest commit);
//! `/etc/nixos-lift` gets the facts, the plan (no secrets), the lock that was installed and
//! the install log.

use std::path::Path;

use super::compose::{FACTS_JSON, FLAKE_FILE, MODULE_FILE};
use crate::plan::Plan;
use crate::{Error, Result};

pub const TRAIL_DIR: &str = "etc/nixos-lift";
pub const CONFIG_DIR: &str = "etc/nixos";

/// Copies the wrapper flake and the record into the mounted target `mnt`.
pub fn write(mnt: &Path, flake_dir: &Path, plan: &Plan, log: Option<&Path>) -> Result<()> {
    let trail = mnt.join(TRAIL_DIR);
    let config = mnt.join(CONFIG_DIR);
    for dir in [&trail, &config] {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    for name in [FLAKE_FILE, MODULE_FILE, FACTS_JSON] {
        copy(&flake_dir.join(name), &config.join(name))?;
    }
    copy(&flake_dir.join(FACTS_JSON), &trail.join("facts.json"))?;
    let lock = flake_dir.join("flake.lock");
    if lock.exists() {
        copy(&lock, &trail.join("flake.lock.installed"))?;
    }
    let plan_json =
        serde_json::to_string_pretty(plan).map_err(|e| Error::encoding("plan.json", e))?;
    write_file(&trail.join("plan.json"), &plan_json)?;
    let marker = format!(
        "instance_id={}\nflake={}\nsystem={}\n",
        plan.instance_id.as_deref().unwrap_or(""),
        plan.flake.reference,
        plan.system.as_ref().map_or("", |s| s.as_str())
    );
    write_file(&trail.join("installed"), &marker)?;
    if let Some(log) = log {
        copy(log, &trail.join("install.log"))?;
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| Error::io(format!("copying {} to {}", from.display(), to.display()), e))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}
