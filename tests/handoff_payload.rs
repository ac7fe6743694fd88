//! The handoff payload: built from a plan and facts, read back by `handoff check`, listed by
//! GNU cpio, and appended to an initrd without touching the original.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use nixos_lift::config::{Arch, InstallerSource, Secret, Sha256};
use nixos_lift::facts::{Facts, Firmware};
use nixos_lift::handoff::check::{check_archive, check_dir};
use nixos_lift::handoff::payload::{
    append_handoff, write_archive, write_kexec_override, HostKeyFile, KexecMethod, KexecRecord,
    Payload,
};
use nixos_lift::handoff::Secrets;
use nixos_lift::plan::network::plan_network;
use nixos_lift::plan::{FlakeTarget, InstallerPlan, Plan, TargetDisk, PLAN_VERSION};
use nixos_lift::provider::ProviderKind;

fn plan() -> Plan {
    Plan {
        version: PLAN_VERSION,
        agent_version: "test".into(),
        arch: Some(Arch::X86_64),
        firmware: Firmware::Uefi,
        provider: ProviderKind::Hetzner,
        instance_id: Some("4711".into()),
        hostname: "web-1".into(),
        target: Some(TargetDisk {
            path: "/dev/sda".into(),
            name: "sda".into(),
            by_id: Some("/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_4711".into()),
            serial: Some("4711".into()),
            wwn: None,
            size_bytes: 40 << 30,
            transport: nixos_lift::facts::Transport::Scsi,
        }),
        other_disks: vec![],
        flake: FlakeTarget {
            reference: "github:me/fleet#web".into(),
            url: "github:me/fleet".into(),
            attr: "web".into(),
        },
        system: None,
        installer: Some(InstallerPlan {
            url: InstallerSource::try_from("https://example.org/i.tar.gz".to_string()).unwrap(),
            sha256: Some(Sha256::try_from("00".repeat(32)).unwrap()),
        }),
        memory: None,
        kernel_cmdline: Some("init=/nix/store/x/init console=ttyS0,115200".into()),
        guards: vec![],
        nix: Default::default(),
        report: Default::default(),
        ssh_authorized_keys: vec![],
        reboot: true,
        keep_host_keys: false,
        update: None,
        network: Default::default(),
    }
}

/// The facts of nix/tests/facts-sample.json (a DigitalOcean droplet with static addresses),
/// the same file the Nix checks read.
fn sample_facts() -> Facts {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/nix/tests/facts-sample.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A tiny stand-in for the agent binary: `handoff check` wants an executable ELF.
fn fake_agent() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    // One file per call: tests run in parallel threads and must not rewrite each other's.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("nixos-lift-fake-agent-{}-{n}", std::process::id());
    let path = std::env::temp_dir().join(name);
    std::fs::write(&path, b"\x7fELF\x02\x01\x01fake agent").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Stands in for a private host key: not key material, only bytes that must stay private.
const FAKE_HOST_KEY: &[u8] = b"fake ssh host key for tests, not a key\n";

fn payload() -> Payload {
    let host_keys = vec![
        HostKeyFile {
            name: "ssh_host_ed25519_key".into(),
            data: Secret::new(FAKE_HOST_KEY.to_vec()),
        },
        HostKeyFile {
            name: "ssh_host_ed25519_key.pub".into(),
            data: Secret::new(b"ssh-ed25519 AAAAhost root@stock\n".to_vec()),
        },
    ];
    let mut facts = sample_facts();
    facts.host.firmware = Firmware::Uefi;
    let mut plan = plan();
    let cloud = facts
        .cloud
        .as_ref()
        .map(|c| c.network.clone())
        .unwrap_or_default();
    plan.network = plan_network(&facts.network, &cloud);
    Payload {
        plan,
        facts,
        secrets: Secrets {
            nix_access_tokens: [("github.com".to_string(), Secret::new("fake-nix-token"))].into(),
            webhook_token: Some(Secret::new("hook-secret")),
        },
        authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB me@laptop".into()],
        host_keys,
        machine_id: Some("0123456789abcdef0123456789abcdef".into()),
        kexec: KexecRecord {
            method: KexecMethod::KexecFileLoad,
            fallback_reason: None,
        },
        agent: fake_agent(),
    }
}

#[test]
fn archive_checks_ok_and_lists_every_planned_path() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("payload.cpio.gz");
    write_archive(&payload(), std::fs::File::create(&archive).unwrap()).unwrap();
    let report = check_archive(&archive).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.firmware.as_deref(), Some("uefi"));
    assert_eq!(report.kexec_method.as_deref(), Some("kexec_file_load"));
    // The contract with nixos-images and stage 2, written out here rather than taken from the
    // writer's own index.
    let expected = [
        "nixos-lift/plan.json",
        "nixos-lift/facts.json",
        "nixos-lift/networkd/10-nixos-lift-2a358c914e07.network",
        "nixos-lift/resolved.conf",
        "nixos-lift/secrets.json",
        "nixos-lift/authorized_keys",
        "nixos-lift/nixos-lift",
        "nixos-lift/kexec.json",
        "nixos-lift/machine-id",
        "nixos-lift/index.json",
        "addrs.json",
        "routes-v4.json",
        "routes-v6.json",
        "ssh/authorized_keys",
        "ssh/ssh_host_ed25519_key",
        "machine-id",
    ];
    for path in expected {
        assert_eq!(
            report.files.get(path).map(String::as_str),
            Some("ok"),
            "{path}"
        );
    }
    assert!(report.to_text().contains("target=/dev/sda"));
}

/// The installer gets the plan's network as networkd units and a resolved drop-in, rendered
/// by the agent. With NIXOS_LIFT_HANDOFF_OUT set, they are also written there, for
/// tests/nix/eval/network-script.sh to run the installer's script on the agent's real output.
#[test]
fn the_handoff_carries_the_rendered_network() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("payload.cpio.gz");
    write_archive(&payload(), std::fs::File::create(&archive).unwrap()).unwrap();
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&archive).unwrap());
    let entries = nixos_lift::handoff::cpio::read_archive(&mut gz).unwrap();
    let file = |path: &str| {
        let e = entries.iter().find(|e| e.path == path);
        String::from_utf8(e.unwrap_or_else(|| panic!("{path} missing")).data.clone()).unwrap()
    };
    let unit = file("nixos-lift/networkd/10-nixos-lift-2a358c914e07.network");
    // Written out, not taken from the renderer: the sample's eth0 with the cloud's static
    // configuration (DigitalOcean says no DHCP), its link-local address and kernel route left out.
    assert_eq!(
        unit,
        "# Written by nixos-lift from the network plan\n\
         [Match]\nMACAddress=2a:35:8c:91:4e:07\n\
         [Network]\nDHCP=no\nIPv6AcceptRA=yes\n\
         Address=203.0.113.17/20\nAddress=2001:db8:800::1a/64\n\
         [Route]\nGateway=203.0.113.1\n\
         [Route]\nGateway=2001:db8:800::1\nMetric=1024\n"
    );
    let resolved = file("nixos-lift/resolved.conf");
    assert!(
        resolved.contains("[Resolve]\nDNS=67.207.67.2 67.207.67.3\n"),
        "{resolved}"
    );
    let units: Vec<_> = entries
        .iter()
        .filter(|e| e.path.starts_with("nixos-lift/networkd/") && !e.is_dir())
        .collect();
    assert_eq!(units.len(), 1, "one unit per ethernet interface");

    if let Some(out) = std::env::var_os("NIXOS_LIFT_HANDOFF_OUT") {
        let out = std::path::Path::new(&out);
        std::fs::create_dir_all(out.join("networkd")).unwrap();
        for e in &units {
            let name = e.path.trim_start_matches("nixos-lift/");
            std::fs::write(out.join(name), &e.data).unwrap();
        }
        std::fs::write(out.join("resolved.conf"), resolved).unwrap();
    }
}

/// After a fallback, stage 1 appends a second archive whose kexec.json overrides the first one:
/// the installer must read the method actually used, and why.
#[test]
fn kexec_fallback_record_overrides_the_first_one() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("payload.cpio.gz");
    let mut file = std::fs::File::create(&archive).unwrap();
    write_archive(&payload(), &mut file).unwrap();
    let record = KexecRecord {
        method: KexecMethod::KexecLoad,
        fallback_reason: Some("kexec_file_load: Function not implemented (os error 38)".into()),
    };
    write_kexec_override(&record, &mut file).unwrap();
    drop(file);
    let report = check_archive(&archive).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    assert_eq!(report.kexec_method.as_deref(), Some("kexec_load"));
    assert!(report.to_text().contains(
        "kexec: method=kexec_load fallback=kexec_file_load: Function not implemented (os error 38)\n"
    ));
}

#[test]
fn debug_output_never_shows_secrets() {
    let text = format!("{:?}", payload());
    assert!(!text.contains("fake-nix-token") && !text.contains("hook-secret"));
    assert!(!text.contains("OPENSSH PRIVATE"));
}

#[test]
fn gnu_cpio_extracts_with_modes() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("payload.cpio.gz");
    write_archive(&payload(), std::fs::File::create(&archive).unwrap()).unwrap();
    let script = format!(
        "gzip -dc {} | cpio -idm --quiet --no-absolute-filenames",
        archive.display()
    );
    let out = dir.path().join("root");
    std::fs::create_dir(&out).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .current_dir(&out)
        .status();
    let Ok(status) = status.map(|s| s.success()).and_then(|ok| {
        which_cpio()
            .then_some(ok)
            .ok_or(std::io::Error::other("no cpio"))
    }) else {
        assert!(std::env::var_os("CI").is_none(), "cpio is not installed");
        return;
    };
    assert!(status);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("nixos-lift/secrets.json"), 0o600);
    assert_eq!(mode("nixos-lift/nixos-lift"), 0o755);
    assert_eq!(mode("ssh/ssh_host_ed25519_key"), 0o600);
    // The extracted tree is what the installer fixture sees: check it in place.
    let report = check_dir(&out.join("nixos-lift")).unwrap();
    assert!(report.ok, "{:?}", report.problems);
    // nixos-images' `ip -j addr` shape, from the sample's interfaces.
    let addrs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("addrs.json")).unwrap()).unwrap();
    assert_eq!(addrs[1]["ifname"], "eth0");
    assert_eq!(addrs[1]["address"], "2a:35:8c:91:4e:07");
    assert_eq!(addrs[1]["addr_info"][0]["local"], "203.0.113.17");

    // And through the CLI, as the fixture runs it.
    let cli = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["handoff", "check", "--dir"])
        .arg(out.join("nixos-lift"))
        .output()
        .unwrap();
    assert!(cli.status.success());
    let stdout = String::from_utf8_lossy(&cli.stdout);
    assert!(stdout.contains("handoff ok"), "{stdout}");
    assert!(stdout.contains("firmware=uefi"), "{stdout}");

    // A file the writer indexed that is gone, or a private file made readable, is a failure.
    std::fs::remove_file(out.join("ssh/ssh_host_ed25519_key")).unwrap();
    std::fs::set_permissions(
        out.join("ssh/authorized_keys"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let report = check_dir(&out.join("nixos-lift")).unwrap();
    assert_eq!(
        report
            .files
            .get("ssh/ssh_host_ed25519_key")
            .map(String::as_str),
        Some("missing")
    );
    assert_eq!(
        report.files.get("ssh/authorized_keys").map(String::as_str),
        Some("mode 644, written as 600")
    );

    // A missing file is a failure, and says which.
    std::fs::remove_file(out.join("nixos-lift/facts.json")).unwrap();
    let cli = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["handoff", "check", "--dir"])
        .arg(out.join("nixos-lift"))
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cli.stdout).contains("file: nixos-lift/facts.json missing"));
}

/// The target gets the stock image's host keys only with keep_host_keys: stage 2 reads them
/// from `nixos-lift/` (the `ssh/` copy is the installer's own sshd identity, always there).
#[test]
fn host_keys_reach_stage_2_only_with_keep_host_keys() {
    for keep in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("payload.cpio.gz");
        let mut p = payload();
        p.plan.keep_host_keys = keep;
        write_archive(&p, std::fs::File::create(&archive).unwrap()).unwrap();
        let report = check_archive(&archive).unwrap();
        assert!(report.ok, "{:?}", report.problems);
        for name in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
            let own = report.files.get(&format!("nixos-lift/{name}"));
            assert_eq!(own.map(String::as_str), keep.then_some("ok"), "{name}");
            let installer = report.files.get(&format!("ssh/{name}"));
            assert_eq!(installer.map(String::as_str), Some("ok"), "{name}");
        }
        if !keep || !which_cpio() {
            continue;
        }
        let out = dir.path().join("root");
        std::fs::create_dir(&out).unwrap();
        let script = format!(
            "gzip -dc {} | cpio -idm --quiet --no-absolute-filenames",
            archive.display()
        );
        let status = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .current_dir(&out)
            .status()
            .unwrap();
        assert!(status.success());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("nixos-lift/ssh_host_ed25519_key"), 0o600);
        assert_eq!(mode("nixos-lift/ssh_host_ed25519_key.pub"), 0o644);
        assert_eq!(
            std::fs::read(out.join("nixos-lift/ssh_host_ed25519_key")).unwrap(),
            FAKE_HOST_KEY
        );
    }
}

fn which_cpio() -> bool {
    Command::new("cpio").arg("--version").output().is_ok()
}

#[test]
fn corrupt_plan_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("nixos-lift");
    std::fs::create_dir(&own).unwrap();
    std::fs::write(own.join("plan.json"), b"{\"version\": 1").unwrap();
    let report = check_dir(&own).unwrap();
    assert!(!report.ok);
    assert!(report.files["nixos-lift/plan.json"].starts_with("corrupt"));
}

#[test]
fn handoff_is_appended_to_the_initrd_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, b"xz-image-bytes!").unwrap(); // 15 bytes: needs one byte of padding
    let len = append_handoff(&initrd, &payload()).unwrap();
    let bytes = std::fs::read(&initrd).unwrap();
    assert_eq!(bytes.len() as u64, len);
    assert_eq!(&bytes[..15], b"xz-image-bytes!");
    assert_eq!(bytes[15], 0);
    assert_eq!(
        &bytes[16..18],
        &[0x1f, 0x8b],
        "gzip member starts on a 4-byte boundary"
    );
    // No second file: the staging holds one initrd.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_failed_append_leaves_the_initrd_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, b"xz-image-bytes!").unwrap();
    let mut broken = payload();
    broken.agent = dir.path().join("no-such-agent");
    assert!(append_handoff(&initrd, &broken).is_err());
    assert_eq!(std::fs::read(&initrd).unwrap(), b"xz-image-bytes!");
    assert!(append_handoff(&dir.path().join("missing"), &payload()).is_err());
}

/// `handoff check` reads as stage 2 does: a facts.json from another release is refused, and a
/// corrupt secrets.json is reported by position, never by its contents.
#[test]
fn check_refuses_a_foreign_facts_version_and_never_quotes_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let own = dir.path().join("nixos-lift");
    std::fs::create_dir(&own).unwrap();
    let mut facts = serde_json::to_value(payload().facts).unwrap();
    facts["version"] = serde_json::json!(nixos_lift::facts::FACTS_VERSION + 1);
    std::fs::write(own.join("facts.json"), facts.to_string()).unwrap();
    std::fs::write(
        own.join("secrets.json"),
        br#"{"nix_access_tokens": "hook-secret"}"#,
    )
    .unwrap();
    let report = check_dir(&own).unwrap();
    assert!(!report.ok);
    let facts_verdict = &report.files["nixos-lift/facts.json"];
    assert!(
        facts_verdict.starts_with("schema version "),
        "{facts_verdict}"
    );
    let secrets_verdict = &report.files["nixos-lift/secrets.json"];
    assert!(
        secrets_verdict.contains("line 1 column"),
        "{secrets_verdict}"
    );
    let cli = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["handoff", "check", "--format", "json", "--dir"])
        .arg(&own)
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&cli.stdout),
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(all.contains("secrets.json"), "{all}");
    assert!(!all.contains("hook-secret"), "{all}");
}
