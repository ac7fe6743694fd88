//! Bad input never panics: garbage and missing sysfs values, a disk that vanishes between
//! listing and reading, unreadable DMI, a cyclic stack, a missing root. Each gives absent
//! fields or one clear error line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use common::{agent, agent_as_nobody, copy_fixture, detect, detect_with, disk, names};
use serde_json::{json, Value};

fn write(root: &Path, path: &str, content: &[u8]) {
    let p = root.join(path);
    if p.is_symlink() {
        fs::remove_file(&p).unwrap();
    }
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, content).unwrap();
}

const NVME0: &str = "sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0";

#[test]
fn garbage_sysfs_values_become_absent_fields() {
    let dir = copy_fixture("aws-nitro-x86_64");
    let root = dir.path();
    let disk_dir = format!("{NVME0}/nvme0n1");
    write(
        root,
        &format!("{disk_dir}/queue/logical_block_size"),
        b"lots\n",
    );
    write(root, &format!("{disk_dir}/queue/rotational"), b"2\n");
    write(root, &format!("{disk_dir}/removable"), b"\xff\xfe");
    write(
        root,
        &format!("{disk_dir}/nvme0n1p14/partition"),
        b"fourteen\n",
    );
    write(root, &format!("{disk_dir}/nvme0n1p15/size"), b"-1\n");
    write(root, &format!("{NVME0}/model"), b"\0\0\0\n");
    write(root, "sys/class/dmi/id/sys_vendor", b"\xff\xff\xff\xff");
    write(
        root,
        "sys/kernel/security/lockdown",
        b"garbage without brackets",
    );
    write(root, "proc/sys/kernel/kexec_load_disabled", b"maybe");
    write(
        root,
        "sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-e0fe42e33030",
        b"\x06",
    );
    write(root, "proc/meminfo", b"MemTotal: many kB\n");
    write(root, "sys/devices/system/cpu/online", b"7-2");
    write(root, "proc/self/mountinfo", b"not a mountinfo\n\n1 2 3\n");
    write(root, "proc/swaps", b"\xff\n\xfe garbage");
    write(root, "network-state.json", b"{\"interfaces\": [ truncated");

    let facts = detect(root);
    let nvme = disk(&facts, "nvme0n1");
    assert_eq!(nvme["logical_sector_size"], Value::Null);
    assert_eq!(nvme["rotational"], Value::Null);
    assert_eq!(nvme["removable"], false);
    assert_eq!(nvme["model"], Value::Null);
    assert_eq!(
        nvme["holds_root"], false,
        "no mountinfo: root unknown, never guessed"
    );
    let p14 = nvme["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "nvme0n1p14")
        .unwrap();
    assert_eq!(p14["number"], Value::Null);
    let p15 = nvme["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "nvme0n1p15")
        .unwrap();
    assert_eq!(p15["size_bytes"], 0);
    assert_eq!(facts["dmi"]["sys_vendor"], Value::Null);
    assert_eq!(facts["host"]["lockdown"], Value::Null);
    assert_eq!(facts["host"]["kexec_load_disabled"], Value::Null);
    assert_eq!(facts["host"]["secure_boot"], Value::Null);
    assert_eq!(facts["host"]["memory_bytes"], 0);
    assert_eq!(facts["host"]["cpu_count"], 0);
    assert_eq!(facts["network"]["interfaces"], json!([]));
}

#[test]
fn a_disk_that_vanished_after_listing_and_hidden_devices_are_left_out() {
    let dir = copy_fixture("aws-nitro-x86_64");
    let root = dir.path();
    // The listing still has nvme1n1, but its device directory is gone.
    fs::remove_dir_all(root.join("sys/devices/pci0000:00/0000:00:1f.0/nvme/nvme1/nvme1n1"))
        .unwrap();
    // And a partition's directory lost its files mid-read.
    fs::remove_file(root.join(format!("{NVME0}/nvme0n1/nvme0n1p16/partition"))).unwrap();
    symlink("../devices/gone/block/vdz", root.join("sys/block/vdz")).unwrap();
    // A hidden NVMe multipath path device is not a disk of its own.
    let path_dev = format!("{NVME0}/nvme0c0n1");
    write(root, &format!("{path_dev}/size"), b"16777216\n");
    write(root, &format!("{path_dev}/hidden"), b"1\n");
    symlink(root.join(&path_dev), root.join("sys/block/nvme0c0n1")).unwrap();

    let facts = detect(root);
    assert_eq!(names(&facts["disks"], |_| true), ["nvme0n1"]);
    let parts = names(&disk(&facts, "nvme0n1")["partitions"], |_| true);
    assert_eq!(parts, ["nvme0n1p1", "nvme0n1p14", "nvme0n1p15"]);
}

#[test]
fn a_cyclic_stack_terminates() {
    let dir = copy_fixture("root-on-lvm");
    let root = dir.path();
    let dm0 = root.join("sys/devices/virtual/block/dm-0/slaves");
    fs::remove_file(dm0.join("vda2")).unwrap();
    symlink("../../dm-1", dm0.join("dm-1")).unwrap();
    let dm1 = root.join("sys/devices/virtual/block/dm-1/slaves");
    fs::remove_file(dm1.join("vda2")).unwrap();
    symlink("../../dm-0", dm1.join("dm-0")).unwrap();
    let facts = detect(root);
    assert_eq!(
        names(&facts["disks"], |d| d["holds_root"] == true),
        Vec::<String>::new()
    );
}

#[test]
fn an_empty_root_gives_empty_facts_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let facts = detect(dir.path());
    assert_eq!(facts["host"]["arch"], "unknown");
    assert_eq!(facts["host"]["firmware"], "bios");
    assert_eq!(facts["disks"], json!([]));
    assert_eq!(facts["network"]["dns"], json!([]));
}

#[test]
fn a_missing_root_is_one_clear_error() {
    let out = agent()
        .args([
            "detect",
            "--format",
            "json",
            "--root",
            "/nonexistent/fixture",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("inspecting the host under /nonexistent/fixture"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// Root-only DMI files, as the kernel makes `product_serial` and `product_uuid` (mode 0400),
/// read by an unprivileged user. Root ignores file modes, so this runs the agent as nobody.
#[test]
fn unreadable_dmi_is_absent_for_a_normal_user() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to switch to nobody with setpriv");
        return;
    }
    let dir = copy_fixture("azure-gen2");
    let root = dir.path();
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    let dmi = root.join("sys/devices/virtual/dmi/id");
    for field in ["product_serial", "product_uuid"] {
        fs::set_permissions(dmi.join(field), fs::Permissions::from_mode(0o400)).unwrap();
    }
    let facts = detect_with(agent_as_nobody(), Some(root));
    assert_eq!(facts["dmi"]["product_serial"], Value::Null);
    assert_eq!(facts["dmi"]["product_uuid"], Value::Null);
    assert_eq!(
        facts["dmi"]["chassis_asset_tag"],
        "7783-7084-3265-9085-8269-3286-77"
    );
    assert_eq!(names(&facts["disks"], |d| d["holds_root"] == true), ["sda"]);
}
