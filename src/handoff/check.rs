//! `nixos-lift handoff check`: read a handoff back exactly as stage 2 does (in the installer, or
//! from a payload archive), then report every file: what the reader found wrong, and whether each
//! file the writer indexed is there with its mode.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::read::{own, read_index, Files, Source};
use super::*;
use crate::config::Arch;
use crate::plan::Plan;
use crate::{Error, Result};

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub source: String,
    pub ok: bool,
    pub plan: Option<Plan>,
    pub arch: Option<crate::facts::HostArch>,
    pub firmware: Option<String>,
    pub kexec_method: Option<String>,
    /// Why stage 1 fell back to `kexec_load`, when it did.
    pub kexec_fallback: Option<String>,
    pub interfaces: usize,
    pub dns: Vec<String>,
    /// Every handoff path with `ok` or what is wrong with it.
    pub files: BTreeMap<String, String>,
    pub problems: Vec<String>,
}

/// Checks the handoff directory `dir` (the initramfs' `/nixos-lift`, or [`STAGE2_DIR`]).
/// When `dir` is named `nixos-lift`, the root-level files next to it are checked too.
pub fn check_dir(dir: &Path) -> Result<CheckReport> {
    std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading handoff directory {}", dir.display()), e))?;
    Ok(check(&Source::dir(dir)))
}

/// Checks a payload archive file (gzip'd newc, possibly several concatenated).
pub fn check_archive(path: &Path) -> Result<CheckReport> {
    Ok(check(&Source::archive(path)?))
}

fn check(source: &Source) -> CheckReport {
    let mut report = CheckReport {
        source: source.location().display().to_string(),
        ok: false,
        plan: None,
        arch: None,
        firmware: None,
        kexec_method: None,
        kexec_fallback: None,
        interfaces: 0,
        dns: Vec::new(),
        files: BTreeMap::new(),
        problems: Vec::new(),
    };
    let files = Files::read(source);
    for (path, verdict) in files.verdicts() {
        // An absent optional file reads as Ok; the index below says it is missing.
        if verdict.is_err() || source.stat(&path).is_some() {
            report.note(&path, verdict.map_err(|p| p.to_string()));
        }
    }
    if let Ok(Some(keys)) = &files.authorized_keys {
        report.note(&own(AUTHORIZED_KEYS_FILE), check_keys(keys));
    }
    let agent_path = own(AGENT_FILE);
    report.note(&agent_path, check_agent(source, &agent_path));

    // Every file the writer indexed must be there, private files still private.
    let index_path = own(INDEX_FILE);
    let index = read_index(source);
    report.note(
        &index_path,
        index.as_ref().map(|_| ()).map_err(ToString::to_string),
    );
    for entry in index.unwrap_or_default() {
        let root_level = !entry.path.starts_with(&format!("{INITRD_DIR}/"));
        if root_level && !source.has_root_level() {
            continue;
        }
        let verdict = match source.stat(&entry.path) {
            None => Err("missing".to_string()),
            Some(f) if entry.mode & 0o077 == 0 && f.mode & 0o077 != 0 => Err(format!(
                "mode {:o}, written as {:o}",
                f.mode & 0o777,
                entry.mode
            )),
            Some(_) => Ok(()),
        };
        report.note(&entry.path, verdict);
    }

    if let Ok(plan) = &files.plan {
        report.interfaces = plan.network.interfaces.len();
        report.dns = plan
            .network
            .nameservers
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    report.plan = files.plan.ok();
    if let Ok(facts) = files.facts {
        report.arch = Some(facts.host.arch.clone());
        report.firmware = Some(format!("{:?}", facts.host.firmware).to_lowercase());
    }
    if let Ok(Some(record)) = files.kexec {
        report.kexec_method = serde_json::to_value(record.method)
            .ok()
            .and_then(|v| v.as_str().map(String::from));
        report.kexec_fallback = record.fallback_reason;
    }
    report.ok = report.problems.is_empty();
    report
}

fn check_agent(source: &Source, path: &str) -> std::result::Result<(), String> {
    let stat = source.stat(path).ok_or("missing")?;
    if stat.mode & 0o111 == 0 {
        return Err(format!("mode {:o} is not executable", stat.mode & 0o777));
    }
    if source.head(path, 4).as_deref() != Some(b"\x7fELF") {
        return Err(format!("not an ELF binary ({} bytes)", stat.size));
    }
    Ok(())
}

fn check_keys(text: &str) -> std::result::Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let kind = line.split_whitespace().next().unwrap_or("");
        let known = ["ssh-", "ecdsa-", "sk-"]
            .iter()
            .any(|p| kind.starts_with(p));
        if !known {
            return Err(format!("line {}: not an OpenSSH public key", n + 1));
        }
    }
    Ok(())
}

impl CheckReport {
    /// Records a file's verdict; the first problem found for a file is the one kept.
    fn note(&mut self, path: &str, verdict: std::result::Result<(), String>) {
        if self.files.get(path).is_some_and(|v| v != "ok") {
            return;
        }
        let text = match verdict {
            Ok(()) => "ok".to_string(),
            Err(problem) => {
                self.problems.push(format!("{path}: {problem}"));
                problem
            }
        };
        self.files.insert(path.to_string(), text);
    }

    /// Stable `key=value` lines; the VM harness greps the serial console for them.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok { "ok" } else { "BROKEN" };
        out.push_str(&format!("handoff {verdict}: {}\n", self.source));
        if let Some(p) = &self.plan {
            let target = p.target.as_ref();
            out.push_str(&format!(
                "plan: provider={} instance={} hostname={} arch={} firmware={} target={} \
                 by_id={} serial={} size_bytes={} flake={}\n",
                p.provider,
                p.instance_id.as_deref().unwrap_or("-"),
                p.hostname,
                p.arch.map_or("-", Arch::as_str),
                format!("{:?}", p.firmware).to_lowercase(),
                target.map_or("-", |t| t.path.as_str()),
                target.and_then(|t| t.by_id.as_deref()).unwrap_or("-"),
                target.and_then(|t| t.serial.as_deref()).unwrap_or("-"),
                target.map_or(0, |t| t.size_bytes),
                p.flake.reference,
            ));
            for other in &p.other_disks {
                out.push_str(&format!(
                    "plan: left_alone={} reason={}\n",
                    other.path, other.reason
                ));
            }
        }
        out.push_str(&format!(
            "facts: arch={} firmware={}\n",
            self.arch.as_ref().map_or("-", |a| a.as_str()),
            self.firmware.as_deref().unwrap_or("-")
        ));
        out.push_str(&format!(
            "network: interfaces={} dns={}\n",
            self.interfaces,
            if self.dns.is_empty() {
                "-".into()
            } else {
                self.dns.join(",")
            }
        ));
        out.push_str(&format!(
            "kexec: method={}{}\n",
            self.kexec_method.as_deref().unwrap_or("-"),
            self.kexec_fallback
                .as_deref()
                .map(|why| format!(" fallback={why}"))
                .unwrap_or_default()
        ));
        for (path, state) in &self.files {
            out.push_str(&format!("file: {path} {state}\n"));
        }
        out
    }
}

/// The handoff `handoff check` reads without `--dir`: `/nixos-lift` in the installer's
/// initramfs, else [`STAGE2_DIR`].
pub fn default_dir() -> std::path::PathBuf {
    let in_initramfs = Path::new("/").join(INITRD_DIR);
    if in_initramfs.is_dir() {
        in_initramfs
    } else {
        STAGE2_DIR.into()
    }
}
