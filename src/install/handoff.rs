//! Reading the handoff stage 1 left in the installer, and refusing a missing or foreign one.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::facts::{Facts, FACTS_VERSION};
use crate::handoff::{
    NetworkHandoff, Secrets, AUTHORIZED_KEYS_FILE, FACTS_FILE, NETWORK_FILE, PLAN_FILE,
    SECRETS_FILE,
};
use crate::plan::{Plan, PLAN_VERSION};
use crate::refusal::{Guard, Refusal};
use crate::{Error, Result};

/// Everything stage 2 needs from stage 1.
#[derive(Debug, Clone)]
pub struct Handoff {
    pub dir: PathBuf,
    pub plan: Plan,
    pub facts: Facts,
    pub network: NetworkHandoff,
    pub secrets: Secrets,
    /// One OpenSSH public key per entry (plan keys first, then the file's, deduplicated).
    pub authorized_keys: Vec<String>,
}

impl Handoff {
    /// Reads `dir`. `plan.json` and `facts.json` are required; the others default to empty.
    pub fn read(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(refused(
                Guard::Handoff,
                format!("no handoff directory at {}", dir.display()),
                "the one stage 1 appends to the installer's initrd",
                "start the installer with `nixos-lift run`, or pass --handoff DIR",
            ));
        }
        let plan: Plan = read_json(&dir.join(PLAN_FILE))?;
        if plan.version != PLAN_VERSION {
            return Err(version_refusal(PLAN_FILE, plan.version, PLAN_VERSION));
        }
        let facts: Facts = read_json(&dir.join(FACTS_FILE))?;
        if facts.version != FACTS_VERSION {
            return Err(version_refusal(FACTS_FILE, facts.version, FACTS_VERSION));
        }
        let network = read_optional(&dir.join(NETWORK_FILE))?
            .unwrap_or_else(|| NetworkHandoff::from_facts(&facts));
        let secrets = read_optional(&dir.join(SECRETS_FILE))?.unwrap_or_default();
        let file_keys = match std::fs::read_to_string(dir.join(AUTHORIZED_KEYS_FILE)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(format!("reading {AUTHORIZED_KEYS_FILE}"), e)),
        };
        let mut authorized_keys: Vec<String> = Vec::new();
        let candidates = plan
            .ssh_authorized_keys
            .iter()
            .map(String::as_str)
            .chain(file_keys.lines());
        for key in candidates.map(str::trim) {
            if !key.is_empty() && !key.starts_with('#') && !authorized_keys.iter().any(|k| k == key)
            {
                authorized_keys.push(key.to_string());
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            plan,
            facts,
            network,
            secrets,
            authorized_keys,
        })
    }
}

fn version_refusal(file: &str, found: u32, needed: u32) -> Error {
    refused(
        Guard::HandoffVersion,
        format!("{file} with schema version {found}"),
        format!("version {needed}"),
        "use the same nixos-lift release for stage 1 and the installer",
    )
}

fn refused(guard: Guard, found: String, needed: impl Into<String>, way_out: &str) -> Error {
    Error::refused("install", Refusal::new(guard, found, needed, way_out))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    read_optional(path)?.ok_or_else(|| {
        refused(
            Guard::Handoff,
            format!("no {}", path.display()),
            "the file stage 1 writes",
            "rerun `nixos-lift run` in the stock image",
        )
    })
}

/// `None` when the file does not exist; an error names the file when it does not parse.
fn read_optional<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    // Only the error's class and position: serde's message can quote a value, and
    // secrets.json holds tokens.
    serde_json::from_str(&text).map(Some).map_err(|e| {
        refused(
            Guard::Handoff,
            format!(
                "a corrupt {} ({:?} error at line {} column {})",
                path.display(),
                e.classify(),
                e.line(),
                e.column()
            ),
            "the JSON stage 1 writes",
            "rerun `nixos-lift run` in the stock image",
        )
    })
}
