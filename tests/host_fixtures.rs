//! `detect --root` against every fixture host: arch, firmware, root disk and the other disks,
//! then what each fixture exists to show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{detect, disk, fixture, names, partition};
use serde_json::{json, Value};

struct Expected {
    fixture: &'static str,
    arch: &'static str,
    firmware: &'static str,
    secure_boot: Option<bool>,
    kexec_allowed: bool,
    container: Option<&'static str>,
    root_disks: &'static [&'static str],
    other_disks: &'static [&'static str],
}

const EXPECTED: &[Expected] = &[
    Expected {
        fixture: "aws-nitro-x86_64",
        arch: "x86_64",
        firmware: "uefi",
        secure_boot: Some(false),
        kexec_allowed: true,
        container: None,
        root_disks: &["nvme0n1"],
        other_disks: &["nvme1n1"],
    },
    Expected {
        fixture: "aws-graviton-aarch64",
        arch: "aarch64",
        firmware: "uefi",
        secure_boot: Some(false),
        kexec_allowed: true,
        container: None,
        root_disks: &["nvme0n1"],
        other_disks: &[],
    },
    Expected {
        fixture: "gcp",
        arch: "x86_64",
        firmware: "uefi",
        secure_boot: Some(true),
        kexec_allowed: false,
        container: None,
        root_disks: &["sda"],
        other_disks: &[],
    },
    Expected {
        fixture: "azure-gen2",
        arch: "x86_64",
        firmware: "uefi",
        secure_boot: Some(false),
        kexec_allowed: true,
        container: None,
        root_disks: &["sda"],
        other_disks: &["sdb"],
    },
    Expected {
        fixture: "hetzner-x86_64",
        arch: "x86_64",
        firmware: "bios",
        secure_boot: None,
        kexec_allowed: true,
        container: None,
        root_disks: &["sda"],
        other_disks: &[],
    },
    Expected {
        fixture: "hetzner-arm64",
        arch: "aarch64",
        firmware: "uefi",
        secure_boot: Some(false),
        kexec_allowed: true,
        container: None,
        root_disks: &["sda"],
        other_disks: &[],
    },
    Expected {
        fixture: "digitalocean",
        arch: "x86_64",
        firmware: "bios",
        secure_boot: None,
        kexec_allowed: true,
        container: None,
        root_disks: &["vda"],
        other_disks: &["vdb"],
    },
    Expected {
        fixture: "root-on-lvm",
        arch: "x86_64",
        firmware: "bios",
        secure_boot: None,
        kexec_allowed: true,
        container: None,
        root_disks: &["vda"],
        other_disks: &["vdb"],
    },
    Expected {
        fixture: "root-on-md-raid1",
        arch: "x86_64",
        firmware: "bios",
        secure_boot: None,
        kexec_allowed: true,
        container: None,
        root_disks: &["vda", "vdb"],
        other_disks: &["vdc"],
    },
    Expected {
        fixture: "lxc",
        arch: "x86_64",
        firmware: "bios",
        secure_boot: None,
        kexec_allowed: false,
        container: Some("lxc"),
        root_disks: &["loop0"],
        other_disks: &["sda"],
    },
    Expected {
        fixture: "data-volume",
        arch: "x86_64",
        firmware: "bios",
        secure_boot: None,
        kexec_allowed: true,
        container: None,
        root_disks: &["sda"],
        other_disks: &["sdb"],
    },
];

#[test]
fn every_fixture_has_the_expected_host_and_disks() {
    let on_disk: Vec<String> = std::fs::read_dir(fixture(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| fixture(n).is_dir())
        // DMI-only hosts for provider identification (tests/provider_cloud.rs).
        .filter(|n| !n.starts_with("provider-"))
        .collect();
    for name in &on_disk {
        assert!(
            EXPECTED.iter().any(|e| e.fixture == name),
            "fixture {name} has no expectations"
        );
    }
    for e in EXPECTED {
        let facts = detect(&fixture(e.fixture));
        let host = &facts["host"];
        let ctx = e.fixture;
        assert_eq!(host["arch"], e.arch, "{ctx}: arch");
        assert_eq!(host["firmware"], e.firmware, "{ctx}: firmware");
        assert_eq!(
            host["secure_boot"],
            json!(e.secure_boot),
            "{ctx}: secure_boot"
        );
        assert_eq!(
            host["kexec_allowed"], e.kexec_allowed,
            "{ctx}: kexec_allowed {}",
            host["kexec_blockers"]
        );
        assert_eq!(
            host["kexec_blockers"].as_array().unwrap().is_empty(),
            e.kexec_allowed,
            "{ctx}"
        );
        assert_eq!(host["container"], json!(e.container), "{ctx}: container");
        assert!(
            host["memory_bytes"].as_u64().unwrap() > 1 << 30,
            "{ctx}: memory"
        );
        assert!(host["cpu_count"].as_u64().unwrap() >= 1, "{ctx}: cpus");
        assert_eq!(host["systemd"], true, "{ctx}: systemd");
        assert!(host["os"]["id"].is_string(), "{ctx}: os-release");
        let disks = &facts["disks"];
        assert_eq!(
            names(disks, |d| d["holds_root"] == true),
            e.root_disks,
            "{ctx}: root disks"
        );
        assert_eq!(
            names(disks, |d| d["holds_root"] == false),
            e.other_disks,
            "{ctx}: other disks"
        );
        for d in disks.as_array().unwrap() {
            assert_eq!(
                d["path"],
                format!("/dev/{}", d["name"].as_str().unwrap()),
                "{ctx}"
            );
            assert!(
                d["size_bytes"].as_u64().unwrap() > 0,
                "{ctx}: size of {}",
                d["name"]
            );
        }
        assert!(
            !facts["network"]["interfaces"]
                .as_array()
                .unwrap()
                .is_empty(),
            "{ctx}: network-state"
        );
        assert!(
            !facts["network"]["dns"].as_array().unwrap().is_empty(),
            "{ctx}: dns"
        );
        // Filled by provider identification from DMI alone: a fixture sends no metadata requests.
        assert!(
            facts["cloud"]["notes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n == "metadata-skipped")),
            "{ctx}: cloud"
        );
    }
}

#[test]
fn aws_nitro_ebs_identity_and_instance_store() {
    let facts = detect(&fixture("aws-nitro-x86_64"));
    let root = disk(&facts, "nvme0n1");
    assert_eq!(root["model"], "Amazon Elastic Block Store");
    assert_eq!(root["serial"], "vol0a1b2c3d4e5f60718");
    assert_eq!(root["transport"], "nvme");
    assert_eq!(root["size_bytes"], 8u64 << 30);
    assert_eq!(root["logical_sector_size"], 512);
    assert_eq!(root["rotational"], false);
    assert!(root["wwn"].as_str().unwrap().starts_with("nvme.1d0f-"));
    let by_id = root["by_id"].as_array().unwrap();
    assert!(by_id.contains(&json!(
        "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0a1b2c3d4e5f60718"
    )));
    assert!(
        by_id.iter().all(|l| !l.as_str().unwrap().contains("-part")),
        "partition links are not the disk's"
    );
    // Root is mounted from /dev/root: only the device number ties it to nvme0n1p1.
    assert_eq!(partition(root, "nvme0n1p1")["mountpoints"], json!(["/"]));
    assert_eq!(partition(root, "nvme0n1p1")["fs_label"], "cloudimg-rootfs");
    assert_eq!(
        partition(root, "nvme0n1p16")["mountpoints"],
        json!(["/boot"])
    );
    let numbers: Vec<u64> = root["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 14, 15, 16]);
    assert_eq!(
        disk(&facts, "nvme1n1")["model"],
        "Amazon EC2 NVMe Instance Storage"
    );
    assert_eq!(
        facts["dmi"]["product_uuid"],
        "EC2B7E3A-5F1C-4D2E-9A0B-7C8D9E0F1A2B"
    );
    assert_eq!(facts["network"]["dns"], json!(["172.31.0.2"]));
    assert_eq!(facts["network"]["dns_source"], "systemd-resolved");
    assert_eq!(facts["host"]["lockdown"], "none");
}

#[test]
fn gcp_secure_boot_lockdown_blocks_kexec_and_scsi_serial_comes_from_vpd() {
    let facts = detect(&fixture("gcp"));
    assert_eq!(facts["host"]["lockdown"], "integrity");
    let blockers = facts["host"]["kexec_blockers"].to_string();
    assert!(blockers.contains("lockdown is integrity"), "{blockers}");
    let sda = disk(&facts, "sda");
    assert_eq!(
        (sda["transport"].clone(), sda["vendor"].clone()),
        (json!("scsi"), json!("Google"))
    );
    assert_eq!(sda["model"], "PersistentDisk");
    assert_eq!(sda["serial"], "persistent-disk-0");
    assert!(sda["by_id"]
        .as_array()
        .unwrap()
        .contains(&json!("/dev/disk/by-id/google-persistent-disk-0")));
    assert_eq!(facts["dmi"]["product_name"], "Google Compute Engine");
    assert_eq!(
        facts["dmi"]["chassis_asset_tag"],
        Value::Null,
        "a blank DMI field is absent"
    );
    assert_eq!(facts["network"]["dns"], json!(["169.254.169.254"]));
}

#[test]
fn azure_resource_disk_is_mounted_and_the_dvd_is_left_out() {
    let facts = detect(&fixture("azure-gen2"));
    assert!(names(&facts["disks"], |d| d["name"] == "sr0").is_empty());
    let sdb1 = partition(disk(&facts, "sdb"), "sdb1");
    assert_eq!(sdb1["mountpoints"], json!(["/mnt"]));
    assert_eq!(sdb1["fs_label"], "ephemeral0");
    assert_eq!(disk(&facts, "sda")["vendor"], "Msft");
    assert_eq!(
        disk(&facts, "sda")["wwn"],
        "naa.6002248035c1b7e7d2a4e6a1b9f0c3d4"
    );
    assert_eq!(
        facts["dmi"]["chassis_asset_tag"],
        "7783-7084-3265-9085-8269-3286-77"
    );
    let ifaces = facts["network"]["interfaces"].as_array().unwrap();
    let macs: Vec<&Value> = ifaces
        .iter()
        .map(|i| &i["mac"])
        .filter(|m| *m == "00:0d:3a:04:75:98")
        .collect();
    assert_eq!(
        macs.len(),
        2,
        "the accelerated-networking VF shares the MAC"
    );
}

#[test]
fn hetzner_ipv6_default_is_onlink_via_fe80_1() {
    for name in ["hetzner-x86_64", "hetzner-arm64"] {
        let facts = detect(&fixture(name));
        let routes = facts["network"]["routes"].as_array().unwrap();
        let v6 = routes
            .iter()
            .find(|r| r["family"] == "inet6" && r["dst"] == "default")
            .unwrap();
        assert_eq!(
            (v6["gateway"].clone(), v6["onlink"].clone()),
            (json!("fe80::1"), json!(true)),
            "{name}"
        );
        assert_eq!(facts["dmi"]["sys_vendor"], "Hetzner");
        assert_eq!(disk(&facts, "sda")["model"], "QEMU HARDDISK");
        assert_eq!(disk(&facts, "sda")["serial"], "drive-scsi0-0-0-0");
    }
    let arm = detect(&fixture("hetzner-arm64"));
    assert_eq!(
        arm["dmi"]["bios_vendor"],
        Value::Null,
        "an absent DMI file is null"
    );
}

#[test]
fn digitalocean_config_drive_is_labelled_and_virtio_has_no_pci_vendor() {
    let facts = detect(&fixture("digitalocean"));
    let vdb = disk(&facts, "vdb");
    assert_eq!(vdb["fs_label"], "config-2");
    assert_eq!(vdb["size_bytes"], 956 * 512);
    let vda = disk(&facts, "vda");
    assert_eq!(
        (vda["transport"].clone(), vda["vendor"].clone()),
        (json!("virtio"), Value::Null)
    );
    assert_eq!(
        facts["network"]["dns"],
        json!(["67.207.67.2", "67.207.67.3"])
    );
}

#[test]
fn lvm_root_is_followed_through_device_mapper() {
    let facts = detect(&fixture("root-on-lvm"));
    let vda = disk(&facts, "vda");
    assert_eq!(partition(vda, "vda2")["holders"], json!(["dm-0", "dm-1"]));
    assert_eq!(partition(vda, "vda1")["mountpoints"], json!(["/boot"]));
    assert!(names(&facts["disks"], |d| d["name"]
        .as_str()
        .unwrap()
        .starts_with("dm-"))
    .is_empty());
    assert_eq!(vda["serial"], "lvm-os-disk");
    assert_eq!(facts["network"]["dns_source"], "resolv.conf");
}

#[test]
fn md_raid1_root_marks_both_members() {
    let facts = detect(&fixture("root-on-md-raid1"));
    for (name, part, label) in [("vda", "vda2", "raid-a"), ("vdb", "vdb2", "raid-b")] {
        let p = partition(disk(&facts, name), part);
        assert_eq!(p["holders"], json!(["md127"]));
        assert_eq!(p["partlabel"], label);
    }
    assert!(names(&facts["disks"], |d| d["name"] == "md127").is_empty());
}

#[test]
fn lxc_reports_the_container_and_the_loop_device_under_root() {
    let facts = detect(&fixture("lxc"));
    let blockers = facts["host"]["kexec_blockers"].to_string();
    assert!(blockers.contains("container (lxc)"), "{blockers}");
    assert_eq!(disk(&facts, "loop0")["mountpoints"], json!(["/"]));
    let eth0 = &facts["network"]["interfaces"][1];
    assert_eq!(
        (eth0["name"].clone(), eth0["physical"].clone()),
        (json!("eth0"), json!(false))
    );
}

#[test]
fn data_volume_is_a_mounted_whole_disk_and_never_root() {
    let facts = detect(&fixture("data-volume"));
    let sdb = disk(&facts, "sdb");
    assert_eq!(sdb["mountpoints"], json!(["/mnt/HC_Volume_100123456"]));
    assert_eq!(sdb["partitions"], json!([]));
    assert_eq!(
        sdb["by_id"],
        json!(["/dev/disk/by-id/scsi-0HC_Volume_100123456"])
    );
    assert_eq!(sdb["holds_root"], false);
    assert_eq!(sdb["swap"], false, "the swap file is no disk's swap");
    assert_eq!(facts["host"]["os"]["id"], "debian");
}

#[test]
fn text_summary_marks_root_and_lists_network() {
    let out = common::agent()
        .args(["detect", "--format", "text", "--root"])
        .arg(fixture("root-on-md-raid1"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "/dev/vda",
        "<- root",
        "/dev/vdc",
        "ens3",
        "198.51.100.20/24",
        "default via 198.51.100.1",
        "dns: 198.51.100.1",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    let vdc = text.lines().find(|l| l.contains("/dev/vdc")).unwrap();
    assert!(!vdc.contains("root"), "{vdc}");
}
