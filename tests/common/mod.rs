//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod upstream;

use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hosts")
        .join(name)
}

pub fn agent() -> Command {
    Command::cargo_bin("nixos-lift").unwrap()
}

/// The agent run as `nobody` (uid 65534), to see what a normal user gets; needs root.
pub fn agent_as_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(assert_cmd::cargo::cargo_bin("nixos-lift"));
    cmd
}

/// `detect --format json [--root ROOT]` through `cmd`, which must succeed, parsed.
pub fn detect_with(mut cmd: Command, root: Option<&Path>) -> Value {
    cmd.args(["detect", "--format", "json"]);
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "detect {root:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn detect(root: &Path) -> Value {
    detect_with(agent(), Some(root))
}

/// A private copy of a fixture tree (symlinks kept) that a test may break.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture(name).display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

pub fn names(disks: &Value, pred: impl Fn(&Value) -> bool) -> Vec<String> {
    disks
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| pred(d))
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn disk<'a>(facts: &'a Value, name: &str) -> &'a Value {
    facts["disks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("no disk {name} in {}", facts["disks"]))
}

pub fn partition<'a>(disk: &'a Value, name: &str) -> &'a Value {
    disk["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no partition {name} in {}", disk["partitions"]))
}
