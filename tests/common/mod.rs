//! Helpers shared by the host_* integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

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

/// `detect --root ROOT --format json`, which must succeed, parsed.
pub fn detect(root: &Path) -> Value {
    let out = agent()
        .args(["detect", "--format", "json", "--root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "detect --root {} failed: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
