//! `nixos-lift plan` on every host fixture: the right target, the disks left alone, and the
//! guard results, through the real CLI and config loader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use nixos_lift::config::Arch;
use nixos_lift::plan::Plan;

fn config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    let text = format!(
        "version: 1\nflake: \"github:me/fleet#{{hostname}}\"\ninstaller:\n  \
         url: \"https://example.org/installer-{{arch}}.tar.gz\"\n  sha256:\n    x86_64: \"{}\"\n    \
         aarch64: \"{}\"\n{extra}",
        "a".repeat(64),
        "b".repeat(64)
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `extra` config lines; `min_memory` defaults to 1GiB (the fixtures have 2-4 GiB), so that
/// the memory guard does not depend on the size of the test build of the agent.
fn plan(fixture: &str, extra: &str) -> (Option<i32>, Plan) {
    if extra.contains("min_memory") {
        plan_as_written(fixture, extra)
    } else {
        plan_as_written(fixture, &format!("min_memory: 1GiB\n{extra}"))
    }
}

fn fixture_root(fixture: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hosts")
        .join(fixture)
}

fn plan_as_written(fixture: &str, extra: &str) -> (Option<i32>, Plan) {
    plan_root(&fixture_root(fixture), extra)
}

fn plan_root(root: &Path, extra: &str) -> (Option<i32>, Plan) {
    let fixture = root.display();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["plan", "--format", "json", "--config"])
        .arg(config(dir.path(), extra))
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    let plan: Plan = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{fixture}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code(), plan)
}

fn guard<'a>(plan: &'a Plan, name: &str) -> &'a nixos_lift::plan::GuardResult {
    plan.guards
        .iter()
        .find(|g| g.name.as_str() == name)
        .unwrap()
}

/// The exit code the plan implies; the uid guard depends on who runs the tests.
fn expected_exit(plan: &Plan) -> Option<i32> {
    Some(if plan.runnable() { 0 } else { 10 })
}

#[test]
fn every_fixture_gets_the_right_target() {
    let cases = [
        ("aws-graviton-aarch64", Some("/dev/nvme0n1"), &[][..]),
        (
            "aws-nitro-x86_64",
            Some("/dev/nvme0n1"),
            &["/dev/nvme1n1"][..],
        ),
        ("azure-gen2", Some("/dev/sda"), &["/dev/sdb"][..]),
        ("data-volume", Some("/dev/sda"), &["/dev/sdb"][..]),
        ("digitalocean", Some("/dev/vda"), &["/dev/vdb"][..]),
        ("gcp", Some("/dev/sda"), &[][..]),
        ("hetzner-arm64", Some("/dev/sda"), &[][..]),
        ("hetzner-x86_64", Some("/dev/sda"), &[][..]),
        ("root-on-lvm", Some("/dev/vda"), &["/dev/vdb"][..]),
        ("lxc", None, &[][..]),
        ("root-on-md-raid1", None, &[][..]),
    ];
    for (fixture, target, others) in cases {
        let (code, plan) = plan(fixture, "");
        assert_eq!(code, expected_exit(&plan), "{fixture}");
        assert_eq!(
            plan.target.as_ref().map(|t| t.path.as_str()),
            target,
            "{fixture}"
        );
        assert_eq!(
            guard(&plan, "target-disk").ok,
            target.is_some(),
            "{fixture}"
        );
        for other in others {
            assert!(
                plan.other_disks.iter().any(|d| d.path == *other),
                "{fixture}: {other}"
            );
        }
    }
}

#[test]
fn guard_results_match_each_fixture() {
    let (_, gcp) = plan("gcp", "");
    let kexec = guard(&gcp, "kexec-allowed");
    assert!(!kexec.ok);
    assert!(kexec.found.contains("lockdown") && kexec.found.contains("Secure Boot"));
    let (_, lxc) = plan("lxc", "");
    assert!(!guard(&lxc, "not-container").ok);
    let (_, raid) = plan("root-on-md-raid1", "");
    assert!(guard(&raid, "target-disk").found.contains("ambiguous"));
    let (_, hetzner) = plan("hetzner-x86_64", "");
    for name in [
        "arch",
        "not-container",
        "not-nixos",
        "memory",
        "kexec-allowed",
        "target-disk",
        "installer-pinned",
        "installer-url",
    ] {
        assert!(guard(&hetzner, name).ok, "hetzner {name}");
    }
    let installer = hetzner.installer.unwrap();
    assert_eq!(
        installer.url.as_str(),
        "https://example.org/installer-x86_64.tar.gz"
    );
    assert_eq!(
        installer.sha256.as_ref().map(|s| s.as_hex()),
        Some("a".repeat(64).as_str())
    );
    let (_, arm) = plan("hetzner-arm64", "");
    assert_eq!(arm.arch, Some(Arch::Aarch64));
    assert_eq!(
        arm.installer.map(|i| i.url.to_string()).as_deref(),
        Some("https://example.org/installer-aarch64.tar.gz")
    );
}

#[test]
fn an_arch_without_an_installer_is_refused_by_name_and_plans_no_installer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(fixture_root("hetzner-x86_64"))
        .arg(&root)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::write(root.join("proc/sys/kernel/arch"), "riscv64\n").unwrap();
    let (code, riscv) = plan_root(&root, "min_memory: 1GiB\n");
    assert_eq!(code, Some(10));
    let arch = guard(&riscv, "arch");
    assert!(!arch.ok);
    assert_eq!(arch.found, "riscv64");
    assert_eq!(arch.needed, "x86_64 or aarch64");
    assert_eq!(riscv.arch, None);
    assert_eq!(riscv.installer, None);
    // The installer's guards are about an installer there is none of.
    assert!(!riscv
        .guards
        .iter()
        .any(|g| g.name.as_str() == "installer-url"));
    assert!(riscv.to_text().contains("installer: none"));
}

#[test]
fn memory_and_explicit_disk_come_from_the_config() {
    let (code, big) = plan("hetzner-x86_64", "min_memory: 64GiB\n");
    assert_eq!(code, Some(10));
    let memory = guard(&big, "memory");
    assert!(!memory.ok && memory.needed.contains("65536 MiB"));
    let (_, vol) = plan(
        "data-volume",
        "disk: /dev/disk/by-id/scsi-0HC_Volume_100123456\n",
    );
    assert_eq!(vol.target.map(|t| t.path), Some("/dev/sdb".to_string()));
    assert!(vol.other_disks.iter().any(|d| d.path == "/dev/sda"));
}

#[test]
fn without_min_memory_the_guard_computes_the_need() {
    // A fixture root is not this machine: the installer's size is assumed, not asked.
    let (_, p) = plan_as_written("aws-nitro-x86_64", "");
    let m = p.memory.as_ref().unwrap();
    assert_eq!(m.installer.source, "assumed: size not asked");
    assert_eq!(
        m.installer.bytes,
        nixos_lift::plan::memory::ASSUMED_INSTALLER
    );
    let meminfo = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hosts/aws-nitro-x86_64/proc/meminfo"),
    )
    .unwrap();
    let kib = |key: &str| -> u64 {
        let line = meminfo.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(m.available_bytes, kib("MemAvailable:") * 1024);
    let g = guard(&p, "memory");
    assert_eq!(
        g.found,
        format!(
            "MemAvailable {} MiB (MemTotal {} MiB)",
            kib("MemAvailable:") / 1024,
            kib("MemTotal:") / 1024
        )
    );
    // 7 GiB free: staged in RAM, the staged installer plus two copies plus headroom.
    assert!(g.ok, "{g:?}");
    assert_eq!(m.load_bytes, 2 * m.installer.bytes);
    assert_eq!(
        m.needed_bytes,
        m.staged_bytes + m.load_bytes + nixos_lift::plan::memory::HEADROOM
    );
    assert!(matches!(
        m.staging,
        Some(nixos_lift::plan::memory::Staging::Tmpfs { size_bytes }) if size_bytes >= m.staged_bytes
    ));
}

#[test]
fn text_summary_lists_guards_and_exit_code_for_bad_config_is_78() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nflaek: x\n").unwrap();
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["plan", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts/gcp");
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["plan", "--format", "text", "--config"])
        .arg(config(dir.path(), "min_memory: 1GiB\n"))
        .arg("--root")
        .arg(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("REFUSED kexec-allowed"), "{text}");
    assert!(text.contains("target disk: /dev/sda"), "{text}");
}

#[test]
fn a_stock_images_forced_command_root_key_is_skipped_with_a_note() {
    // /root/.ssh/authorized_keys as cloud-init leaves it on a stock Debian image (its key with
    // a forced command pointing at the default user), plus keys the owner did mean for root.
    let ed25519 =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEunXUWoE3A6zk86TPr42nbDznvqip66kPipFRzqqkr4";
    let debian = format!(
        "no-port-forwarding,no-agent-forwarding,no-X11-forwarding,command=\"echo 'Please login as \
         the user \\\"debian\\\" rather than the user \\\"root\\\".';echo;sleep 10;exit 142\" \
         {ed25519} cloud-init-key"
    );
    let from = format!("from=\"10.0.0.0/8\" {ed25519} ops-from-vpn");
    let plain = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCh5/yjJyl1QytVsfzC/y5SP3SNobbkSXkL1tAcRNOfsNtApSMHOBkudtzUlO8oP8lUNgRH4kZLxyVKETxQCh/k= ci";
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts/hetzner-x86_64");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&fixture)
        .arg(&root)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
    std::fs::write(
        root.join("root/.ssh/authorized_keys"),
        format!("# written by cloud-init\n{debian}\n{from}\n{plain}\n"),
    )
    .unwrap();
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["plan", "--format", "json", "--config"])
        .arg(config(dir.path(), "min_memory: 1GiB\n"))
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let plan: Plan =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let keys: Vec<&str> = plan
        .ssh_authorized_keys
        .iter()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(keys, vec![from.as_str(), plain], "{stderr}");
    let note = stderr
        .lines()
        .find(|l| l.contains("SSH key 0 from /root/.ssh/authorized_keys"))
        .unwrap_or_else(|| panic!("no note about the skipped key: {stderr}"));
    assert!(
        note.contains("INFO") && note.contains("command option"),
        "{note}"
    );
    assert!(
        !stderr.contains("WARN"),
        "no warning on a stock image: {stderr}"
    );
    assert!(
        !stderr.contains("Please login"),
        "the forced command is not echoed: {stderr}"
    );
}
