//! The Nix half and the Rust half agree on every shared name: handoff paths and file names, the
//! manifest path, fleet mode's per-machine files, the facts schema version, the provider list
//! and the day-2 pull's private files (nix/lib/contract.nix against src/handoff,
//! src/install/machine.rs, src/install/compose.rs and src/facts.rs), and the Nix modules take those names from
//! contract.nix instead of spelling them again.
//!
//! contract.nix is read here with a strict reader of its `name = "string";` / string-list form
//! (anything else fails). tests/suite/50-nix.sh also sets NIXOS_LIFT_NIX_CONTRACT_JSON to Nix's
//! own evaluation of the file, which must give the same values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use nixos_lift::facts::{Facts, FACTS_VERSION};
use nixos_lift::handoff;
use nixos_lift::install::compose;
use nixos_lift::provider::ProviderKind;

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(untagged)]
enum Value {
    Str(String),
    List(Vec<String>),
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Reads contract.nix: comments, `{`, `}`, `name = "value";`, and `name = [` ... `];` with one
/// string per line. Every other line is an error, so the file cannot grow logic this test misses.
fn parse_contract(text: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut list: Option<(String, Vec<String>)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line == "{" || line == "}" {
            continue;
        }
        if let Some((name, items)) = list.as_mut() {
            if line == "];" {
                out.insert(name.clone(), Value::List(std::mem::take(items)));
                list = None;
            } else {
                items.push(
                    unquote(line)
                        .unwrap_or_else(|| panic!("contract.nix:{}: not a string: {line}", n + 1)),
                );
            }
            continue;
        }
        let (name, rest) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("contract.nix:{}: not `name = value;`: {line}", n + 1));
        if rest == "[" {
            list = Some((name.to_string(), Vec::new()));
        } else {
            let value = rest
                .strip_suffix(';')
                .and_then(unquote)
                .unwrap_or_else(|| panic!("contract.nix:{}: not a string value: {line}", n + 1));
            out.insert(name.to_string(), Value::Str(value));
        }
    }
    assert!(list.is_none(), "contract.nix: unterminated list");
    out
}

fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains(['"', '\\', '$'])).then(|| inner.to_string())
}

fn s(v: &str) -> Value {
    Value::Str(v.to_string())
}

/// What the Rust side says each contract.nix name must be.
fn rust_side() -> BTreeMap<String, Value> {
    let providers = ProviderKind::value_variants()
        .iter()
        .map(|p| p.as_str().to_string())
        .collect();
    [
        ("initrdDir", s(handoff::INITRD_DIR)),
        ("stage2Dir", s(handoff::STAGE2_DIR)),
        ("planFile", s(handoff::PLAN_FILE)),
        ("factsFile", s(handoff::FACTS_FILE)),
        ("networkdDir", s(handoff::NETWORKD_DIR)),
        ("resolvedFile", s(handoff::RESOLVED_FILE)),
        ("secretsFile", s(handoff::SECRETS_FILE)),
        ("authorizedKeysFile", s(handoff::AUTHORIZED_KEYS_FILE)),
        ("machineIdFile", s(handoff::MACHINE_ID_FILE)),
        ("agentFile", s(handoff::AGENT_FILE)),
        ("manifestFile", s(handoff::MANIFEST_FILE)),
        (
            "fleetAuthorizedKeysDir",
            s(nixos_lift::install::machine::AUTHORIZED_KEYS_DIR),
        ),
        (
            "hostnameFile",
            s(nixos_lift::install::machine::HOSTNAME_FILE),
        ),
        ("updateNixConf", s(compose::UPDATE_NIX_CONF)),
        ("updateWebhookToken", s(compose::UPDATE_WEBHOOK_TOKEN)),
        ("factsVersion", s(&FACTS_VERSION.to_string())),
        ("providers", Value::List(providers)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn contract_nix_matches_the_rust_constants() {
    let nix = parse_contract(&read("nix/lib/contract.nix"));
    assert_eq!(nix, rust_side());
}

#[test]
fn nix_evaluation_of_the_contract_matches_the_reader() {
    // Set by tests/suite/50-nix.sh, which has Nix; plain `cargo test` has no Nix to run.
    let Ok(path) = std::env::var("NIXOS_LIFT_NIX_CONTRACT_JSON") else {
        eprintln!("NIXOS_LIFT_NIX_CONTRACT_JSON unset: Nix's evaluation is compared in tests/suite/50-nix.sh");
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let evaluated: BTreeMap<String, Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"));
    assert_eq!(evaluated, parse_contract(&read("nix/lib/contract.nix")));
}

/// Handoff paths are spelt once on the Nix side: the modules go through contract.nix.
#[test]
fn nix_modules_do_not_spell_contract_paths_themselves() {
    let contract = parse_contract(&read("nix/lib/contract.nix"));
    let literals: Vec<&str> = ["stage2Dir", "manifestFile", "fleetAuthorizedKeysDir"]
        .iter()
        .map(|k| match &contract[*k] {
            Value::Str(v) => v.as_str(),
            Value::List(_) => unreachable!(),
        })
        .collect();
    let mut files = Vec::new();
    collect_nix(&repo().join("nix"), &mut files);
    assert!(!files.is_empty());
    for file in files.iter().filter(|f| !f.ends_with("lib/contract.nix")) {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for lit in &literals {
            assert!(
                !text.contains(&format!("\"{lit}")),
                "{} spells {lit} instead of using nix/lib/contract.nix",
                file.display()
            );
        }
    }
}

/// The installer module wires the units to the contract's names.
#[test]
fn installer_uses_the_handoff_names() {
    let installer = read("nix/installer/default.nix");
    for needle in [
        "c.stage2Dir",
        "c.initrdDir",
        "handoff c.agentFile",
        "handoff c.planFile",
        "handoff c.factsFile",
        "c.networkdDir",
        "c.resolvedFile",
        "handoff c.secretsFile",
        "work/${c.manifestFile}",
        "systemd.services.nixos-lift-install",
        "boot.initrd.systemd.services.nixos-lift-handoff",
        "install",
    ] {
        assert!(
            installer.contains(needle),
            "nix/installer/default.nix lacks {needle}"
        );
    }
}

/// The sample facts the Nix eval checks use are exactly what the Rust types read and write:
/// a misspelt or missing field fails to parse, an unknown one does not survive the round trip.
#[test]
fn nix_sample_facts_round_trip_through_the_rust_schema() {
    let text = read("nix/tests/facts-sample.json");
    let facts: Facts = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("facts-sample.json is not a Facts: {e}"));
    let original: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("facts-sample.json: {e}"));
    let again = serde_json::to_value(&facts).unwrap_or_else(|e| panic!("serialising: {e}"));
    assert_eq!(original, again);
}

fn collect_nix(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            collect_nix(&path, out);
        } else if path.extension().is_some_and(|e| e == "nix") {
            out.push(path);
        }
    }
}
