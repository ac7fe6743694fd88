//! `detect` on the machine running the tests, as root and as an unprivileged user: it must
//! succeed for both and agree on everything a normal user may read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::{agent, agent_as_nobody, detect_with, names};
use serde_json::Value;

fn uname(flag: &str) -> String {
    let out = Command::new("uname").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn interface_names(facts: &Value) -> Vec<String> {
    names(&facts["network"]["interfaces"], |_| true)
}

#[test]
fn detect_reads_this_machine() {
    let facts = detect_with(agent(), None);
    let host = &facts["host"];
    assert_eq!(host["arch"], uname("-m"));
    assert_eq!(host["kernel_release"], uname("-r"));
    assert!(host["memory_bytes"].as_u64().unwrap() > 0);
    assert!(
        host["memory_available_bytes"].as_u64().unwrap() <= host["memory_bytes"].as_u64().unwrap()
    );
    assert!(host["cpu_count"].as_u64().unwrap() >= 1);
    assert!(
        interface_names(&facts).contains(&"lo".to_string()),
        "netlink sees lo"
    );
    let lo = facts["network"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "lo")
        .unwrap();
    assert_eq!(lo["link_type"], "loopback");
    assert!(lo["addresses"].to_string().contains("127.0.0.1"), "{lo}");
}

#[test]
fn detect_works_as_an_unprivileged_user_and_agrees_with_root() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to compare with an unprivileged run");
        return;
    }
    let as_root = detect_with(agent(), None);
    let as_nobody = detect_with(agent_as_nobody(), None);
    for key in [
        "arch",
        "kernel_release",
        "firmware",
        "container",
        "cpu_count",
    ] {
        assert_eq!(as_root["host"][key], as_nobody["host"][key], "host.{key}");
    }
    let disks = |f: &Value| names(&f["disks"], |_| true);
    let root_disks = |f: &Value| names(&f["disks"], |d| d["holds_root"] == true);
    assert_eq!(disks(&as_root), disks(&as_nobody));
    assert_eq!(root_disks(&as_root), root_disks(&as_nobody));
    assert_eq!(interface_names(&as_root), interface_names(&as_nobody));
    assert_eq!(as_root["network"]["routes"], as_nobody["network"]["routes"]);
    assert_eq!(as_root["network"]["dns"], as_nobody["network"]["dns"]);
    // Root-only DMI fields may be absent for nobody, never different.
    for (key, value) in as_nobody["dmi"].as_object().unwrap() {
        if !value.is_null() {
            assert_eq!(&as_root["dmi"][key], value, "dmi.{key}");
        }
    }
}
