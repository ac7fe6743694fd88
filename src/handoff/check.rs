//! `nixos-lift handoff check`: read a handoff back (in the installer, or from a payload archive)
//! and say whether it is complete and well-formed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::cpio::read_archive;
use super::payload::{IndexEntry, KexecRecord};
use super::*;
use crate::facts::Facts;
use crate::plan::{Plan, PLAN_VERSION};
use crate::{Error, Result};

/// A file as found: mode, size and (for small files) its bytes.
struct Found {
    mode: u32,
    size: u64,
    data: Vec<u8>,
}

/// Files by path relative to the initramfs root, e.g. `nixos-lift/plan.json`.
type Files = BTreeMap<String, Found>;

/// Files larger than this are only stat'ed (the agent binary).
const READ_LIMIT: u64 = 1 << 20;

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub source: String,
    pub ok: bool,
    pub plan: Option<Plan>,
    pub arch: Option<String>,
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
    let mut files = Files::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading handoff directory {}", dir.display()), e))?;
    for entry in entries.flatten() {
        if let Some(name) = entry.file_name().to_str() {
            add_found(&mut files, &format!("{INITRD_DIR}/{name}"), &entry.path());
        }
    }
    let in_place = dir.file_name().is_some_and(|n| n == INITRD_DIR);
    if let Some(root) = dir.parent().filter(|_| in_place) {
        for name in root_level_files() {
            add_found(&mut files, &name, &root.join(&name));
        }
        for entry in std::fs::read_dir(root.join("ssh"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Some(name) = entry.file_name().to_str() {
                add_found(&mut files, &format!("ssh/{name}"), &entry.path());
            }
        }
    }
    Ok(check_files(dir.display().to_string(), &files, in_place))
}

/// Checks a payload archive file (gzip'd newc, possibly several concatenated).
pub fn check_archive(path: &Path) -> Result<CheckReport> {
    let context = || format!("reading handoff archive {}", path.display());
    let file = std::fs::File::open(path).map_err(|e| Error::io(context(), e))?;
    let mut bytes = Vec::new();
    MultiGzDecoder::new(file)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(context(), e))?;
    let mut files = Files::new();
    let mut rest = &bytes[..];
    loop {
        while let [0, tail @ ..] = rest {
            rest = tail;
        }
        if rest.is_empty() {
            break;
        }
        for entry in read_archive(&mut rest).map_err(|e| Error::io(context(), e))? {
            if !entry.is_dir() {
                let size = entry.data.len() as u64;
                let found = Found {
                    mode: entry.mode,
                    size,
                    data: entry.data,
                };
                files.insert(entry.path, found);
            }
        }
    }
    Ok(check_files(path.display().to_string(), &files, true))
}

fn root_level_files() -> Vec<String> {
    vec![
        ADDRS_FILE.into(),
        ROUTES_V4_FILE.into(),
        ROUTES_V6_FILE.into(),
        MACHINE_ID_FILE.into(),
    ]
}

fn add_found(files: &mut Files, key: &str, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if !meta.is_file() {
        return;
    }
    let mut data = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(READ_LIMIT).read_to_end(&mut data);
    }
    let found = Found {
        mode: meta.permissions().mode(),
        size: meta.len(),
        data,
    };
    files.insert(key.to_string(), found);
}

fn check_files(source: String, files: &Files, with_root_level: bool) -> CheckReport {
    let own = |f: &str| format!("{INITRD_DIR}/{f}");
    let mut report = CheckReport {
        source,
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
    let note = |report: &mut CheckReport, path: &str, verdict: std::result::Result<(), String>| {
        let text = match verdict {
            Ok(()) => "ok".to_string(),
            Err(problem) => {
                report.problems.push(format!("{path}: {problem}"));
                problem
            }
        };
        report.files.insert(path.to_string(), text);
    };

    let plan_path = own(PLAN_FILE);
    let plan = parse::<Plan>(files, &plan_path).and_then(|p| {
        if p.version == PLAN_VERSION {
            Ok(p)
        } else {
            Err(format!(
                "plan version {} (this agent reads {PLAN_VERSION})",
                p.version
            ))
        }
    });
    note(
        &mut report,
        &plan_path,
        plan.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    report.plan = plan.ok();

    let facts_path = own(FACTS_FILE);
    let facts = parse::<Facts>(files, &facts_path);
    note(
        &mut report,
        &facts_path,
        facts.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    if let Ok(facts) = facts {
        report.arch = Some(facts.host.arch.clone());
        report.firmware = Some(format!("{:?}", facts.host.firmware).to_lowercase());
    }

    let net_path = own(NETWORK_FILE);
    let net = parse::<NetworkHandoff>(files, &net_path);
    note(
        &mut report,
        &net_path,
        net.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    if let Ok(net) = net {
        report.interfaces = net.observed.interfaces.len();
        report.dns = net.observed.dns;
    }

    let secrets_path = own(SECRETS_FILE);
    let secrets = parse::<Secrets>(files, &secrets_path).and_then(|_| {
        let mode = files.get(&secrets_path).map_or(0, |f| f.mode & 0o777);
        if mode & 0o077 == 0 {
            Ok(())
        } else {
            Err(format!("mode {mode:o}, needed 600"))
        }
    });
    note(&mut report, &secrets_path, secrets);

    let kexec_path = own(KEXEC_FILE);
    let kexec = parse::<KexecRecord>(files, &kexec_path);
    note(
        &mut report,
        &kexec_path,
        kexec.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    if let Ok(record) = kexec {
        report.kexec_method = serde_json::to_value(record.method)
            .ok()
            .and_then(|v| v.as_str().map(String::from));
        report.kexec_fallback = record.fallback_reason;
    }

    let keys_path = own(AUTHORIZED_KEYS_FILE);
    note(&mut report, &keys_path, check_keys(files.get(&keys_path)));

    let agent_path = own(AGENT_FILE);
    let agent = match files.get(&agent_path) {
        None => Err("missing".to_string()),
        Some(f) if f.mode & 0o111 == 0 => {
            Err(format!("mode {:o} is not executable", f.mode & 0o777))
        }
        Some(f) if !f.data.starts_with(b"\x7fELF") => {
            Err(format!("not an ELF binary ({} bytes)", f.size))
        }
        Some(_) => Ok(()),
    };
    note(&mut report, &agent_path, agent);

    // Everything else the writer indexed must be there, private files still private.
    let index_path = own(INDEX_FILE);
    let index = parse::<Vec<IndexEntry>>(files, &index_path);
    note(
        &mut report,
        &index_path,
        index.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    for entry in index.unwrap_or_default() {
        let root_level = !entry.path.starts_with(&format!("{INITRD_DIR}/"));
        if report.files.contains_key(&entry.path) || (root_level && !with_root_level) {
            continue;
        }
        let verdict = match files.get(&entry.path) {
            None => Err("missing".to_string()),
            Some(f) if entry.mode & 0o077 == 0 && f.mode & 0o077 != 0 => Err(format!(
                "mode {:o}, written as {:o}",
                f.mode & 0o777,
                entry.mode
            )),
            Some(_) => Ok(()),
        };
        note(&mut report, &entry.path, verdict);
    }
    report.ok = report.problems.is_empty();
    report
}

fn parse<T: DeserializeOwned>(files: &Files, path: &str) -> std::result::Result<T, String> {
    let found = files.get(path).ok_or("missing")?;
    serde_json::from_slice(&found.data).map_err(|e| format!("corrupt: {e}"))
}

fn check_keys(found: Option<&Found>) -> std::result::Result<(), String> {
    let found = found.ok_or("missing")?;
    let text = std::str::from_utf8(&found.data).map_err(|_| "not UTF-8".to_string())?;
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
                p.arch,
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
            self.arch.as_deref().unwrap_or("-"),
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

/// `nixos-lift handoff check`.
pub fn run(args: crate::cli::HandoffCheckArgs) -> Result<()> {
    let report = match (&args.archive, &args.dir) {
        (Some(archive), _) => check_archive(archive)?,
        (None, Some(dir)) => check_dir(dir)?,
        (None, None) => {
            let in_initramfs = Path::new("/").join(INITRD_DIR);
            let dir = if in_initramfs.is_dir() {
                in_initramfs
            } else {
                STAGE2_DIR.into()
            };
            check_dir(&dir)?
        }
    };
    crate::output::print(&report, args.format, || report.to_text())?;
    if report.ok {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "checking handoff {}: {}",
            report.source,
            report.problems.join("; ")
        )))
    }
}
