//! `nixos-lift install` end to end in a rehearsal root: an installer-view sysfs tree, a
//! handoff, the recording doubles of nix / nixos-install / the disko script on PATH, and a
//! fake webhook receiver on loopback. Nothing here touches a real disk or the host network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use assert_cmd::cargo::CommandCargoExt;
use nixos_lift::install::compose;
use serde_json::{json, Value};

const GIB: u64 = 1 << 30;
const WEBHOOK_TOKEN: &str = "whk-SECRET-4711";
const GIT_TOKEN: &str = "ghp_SECRET0815";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEunXUWoE3A6zk86TPr42nbDznvqip66kPipFRzqqkr4 op@example";

struct Rehearsal {
    dir: tempfile::TempDir,
    plan: Value,
}

impl Rehearsal {
    /// Stage 1 saw the target as `vda`; in the installer it is `vdb`, and `vda` is another
    /// disk of the same size: only the serial tells them apart.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        block(r, "vda", "253:0", "data-volume", 10 * GIB);
        block(r, "vdb", "253:16", "lift-root", 10 * GIB);
        write(
            r,
            "proc/self/mounts",
            "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n",
        );
        write(
            r,
            "proc/self/mountinfo",
            "1 0 0:1 / / rw - rootfs rootfs rw\n2 1 0:3 / /proc rw - proc proc rw\n",
        );
        write(r, "proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n");
        write(r, "proc/meminfo", "MemTotal:        4000000 kB\n");
        write(r, "etc/resolv.conf", "nameserver 127.0.0.53\n");
        // Stand-ins for /dev/console and /dev/kmsg, which stage 2 appends to, never creates.
        write(r, "console", "");
        write(r, "kmsg", "");
        write(r, "console2", "");

        let bin = r.join("bin");
        let doubles = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/doubles");
        let status = Command::new("sh")
            .arg(doubles.join("install-doubles.sh"))
            .arg(&bin)
            .status()
            .unwrap();
        assert!(status.success());

        let plan = json!({
            "version": nixos_lift::plan::PLAN_VERSION, "agent_version": "0.1.0", "arch": "x86_64", "firmware": "uefi",
            "provider": "digitalocean", "instance_id": "do-1234", "hostname": "web-1",
            "target": {
                "path": "/dev/vda", "name": "vda",
                "by_id": "/dev/disk/by-id/virtio-lift-root", "serial": "lift-root",
                "wwn": null, "size_bytes": 10 * GIB, "transport": "virtio"
            },
            "other_disks": [],
            "flake": {
                "reference": "github:example/fleet#web", "url": "github:example/fleet",
                "attr": "web"
            },
            "system": null,
            "installer": { "url": "file:///installer.tar.gz", "sha256": null },
            "kernel_cmdline": null,
            "guards": [],
            "nix": {
                "substituters": ["https://cache.example.org"],
                "trusted_public_keys": ["cache.example.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="]
            },
            "report": { "webhook_url": null },
            "ssh_authorized_keys": [KEY],
            "reboot": true,
            "keep_host_keys": false
        });
        Self { dir, plan }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn bin(&self) -> PathBuf {
        self.root().join("bin")
    }

    fn write_handoff(&self) -> PathBuf {
        let h = self.root().join("handoff");
        std::fs::create_dir_all(&h).unwrap();
        let facts = json!({
            "version": 1,
            "host": {
                "arch": "x86_64", "kernel_release": null, "firmware": "uefi",
                "secure_boot": false, "lockdown": "none", "kexec_load_disabled": false,
                "kexec_allowed": true, "container": null, "hypervisor": null,
                "memory_bytes": 4 * GIB, "memory_available_bytes": 3 * GIB, "cpu_count": 2,
                "os": { "id": "ubuntu", "version_id": "24.04", "pretty_name": null },
                "systemd": true
            },
            "dmi": {}, "disks": [],
            "network": {
                "interfaces": [{
                    "name": "eth0", "index": 2, "mac": "52:54:00:12:34:56", "driver": null,
                    "physical": true, "link_type": "ether", "mtu": 1500, "state": "up",
                    "addresses": [{
                        "family": "inet", "address": "203.0.113.10", "prefix_len": 20,
                        "scope": "global", "dynamic": false,
                        "valid_lifetime": 4294967295u32, "preferred_lifetime": 4294967295u32
                    }]
                }],
                "routes": [{
                    "family": "inet", "dst": "default", "gateway": "203.0.113.1",
                    "gateway_family": null, "dev": "eth0", "onlink": true, "metric": null,
                    "protocol": "static", "scope": null, "table": 254
                }],
                "dns": ["192.0.2.53"], "dns_search": [], "dns_source": "resolv.conf"
            }
        });
        // Stage 1 plans the network from these facts; so does the rehearsal.
        let mut plan = self.plan.clone();
        if plan.get("network").is_none() {
            let parsed: nixos_lift::facts::Facts = serde_json::from_value(facts.clone()).unwrap();
            let network = nixos_lift::plan::network::plan_network(&parsed.network, &[]);
            plan["network"] = serde_json::to_value(network).unwrap();
        }
        std::fs::write(h.join("plan.json"), plan.to_string()).unwrap();
        std::fs::write(h.join("facts.json"), facts.to_string()).unwrap();
        let secrets = json!({
            "nix_access_tokens": { "github.com": GIT_TOKEN },
            "webhook_token": WEBHOOK_TOKEN
        });
        std::fs::write(h.join("secrets.json"), secrets.to_string()).unwrap();
        std::fs::set_permissions(h.join("secrets.json"), PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::write(h.join("authorized_keys"), format!("{KEY}\n")).unwrap();
        h
    }

    fn run(&self) -> Output {
        let handoff = self.write_handoff();
        let path = format!(
            "{}:{}",
            self.bin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::cargo_bin("nixos-lift")
            .unwrap()
            .arg("install")
            .arg("--handoff")
            .arg(&handoff)
            .arg("--root")
            .arg(self.root())
            .arg("--console")
            .arg(self.root().join("console"))
            .arg("--kmsg")
            .arg(self.root().join("kmsg"))
            .arg("--skip-network")
            .env("PATH", path)
            .env("NIXOS_LIFT_LOG", "info")
            .output()
            .unwrap()
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.root().join("console")).unwrap_or_default()
    }

    /// The doubles' calls, in order: (tool, argv).
    fn calls(&self) -> Vec<(String, Vec<String>)> {
        let dir = self.bin().join("records");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".argv"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| {
                let tool = n.trim_end_matches(".argv").split_once('-').unwrap().1;
                let argv = std::fs::read_to_string(dir.join(n)).unwrap();
                (tool.to_string(), argv.lines().map(str::to_string).collect())
            })
            .collect()
    }

    /// Every text a secret must never reach: the doubles' argv, env and files records,
    /// the console, kmsg, the install log and the trail. The day-2 pull's private files
    /// (`update` only) are the one place the secrets go, so those are left out here.
    fn assert_no_secret(&self, out: &Output) {
        let private: Vec<PathBuf> = [
            compose::UPDATE_NIX_CONF,
            compose::UPDATE_NETRC,
            compose::UPDATE_WEBHOOK_TOKEN,
        ]
        .iter()
        .map(|p| self.root().join("mnt").join(p.trim_start_matches('/')))
        .collect();
        let mut texts = vec![
            (
                "stdout".to_string(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ),
            (
                "stderr".to_string(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
        ];
        let mut dirs = vec![self.bin().join("records"), self.root().join("mnt")];
        for f in ["console", "kmsg", "run/nixos-lift/install.log"] {
            let p = self.root().join(f);
            texts.push((f.into(), std::fs::read_to_string(&p).unwrap_or_default()));
        }
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if !private.contains(&p) {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    texts.push((p.display().to_string(), text));
                }
            }
        }
        for (name, text) in texts {
            for secret in [WEBHOOK_TOKEN, GIT_TOKEN] {
                assert!(!text.contains(secret), "secret leaked into {name}");
            }
        }
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A virtio disk as the installer's sysfs shows it, with its /dev node and by-id link.
fn block(root: &Path, name: &str, dev: &str, serial: &str, size: u64) {
    let d = format!("sys/block/{name}");
    write(root, &format!("{d}/size"), &format!("{}\n", size / 512));
    write(root, &format!("{d}/dev"), &format!("{dev}\n"));
    write(root, &format!("{d}/serial"), &format!("{serial}\n"));
    write(root, &format!("{d}/ro"), "0\n");
    write(root, &format!("{d}/removable"), "0\n");
    write(root, &format!("dev/{name}"), "");
    let by_id = root.join("dev/disk/by-id");
    std::fs::create_dir_all(&by_id).unwrap();
    symlink(
        format!("../../{name}"),
        by_id.join(format!("virtio-{serial}")),
    )
    .unwrap();
}

/// A webhook receiver on loopback: answers 200 and keeps (authorization, body) per request.
/// (authorization header, JSON body) per request, in arrival order.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut auth, mut len) = (String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    auth = line["authorization:".len()..].trim().to_string();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            keep.lock()
                .unwrap()
                .push((auth, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            let mut s = stream;
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, got)
}

fn tools(calls: &[(String, Vec<String>)]) -> Vec<&str> {
    calls.iter().map(|(t, _)| t.as_str()).collect()
}

#[test]
fn installs_on_the_disk_found_by_serial_and_reports_in_order() {
    let mut r = Rehearsal::new();
    let (url, got) = receiver();
    r.plan["report"]["webhook_url"] = json!(url);
    let out = r.run();
    let console = r.console();
    assert!(
        out.status.success(),
        "install failed: {}\n{console}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One line per phase on the console, then done.
    for (n, phase) in [
        "reading",
        "restoring",
        "finding",
        "composing",
        "partitioning /dev/vdb",
        "installing web",
        "leaving",
    ]
    .iter()
    .enumerate()
    {
        let want = format!("nixos-lift: [{}/8] ", n + 1);
        let line = console
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_default();
        assert!(
            line.contains(phase),
            "phase {} line {line:?} in:\n{console}",
            n + 1
        );
    }
    assert!(
        console.contains("target disk /dev/vdb matched by serial"),
        "{console}"
    );
    assert!(console.contains("nixos-lift: done: installed github:example/fleet#web on /dev/vdb; rehearsal, not rebooting"));
    let kmsg = std::fs::read_to_string(r.root().join("kmsg")).unwrap();
    assert!(
        kmsg.contains("<6>nixos-lift: [5/8] partitioning /dev/vdb (disko) ..."),
        "{kmsg}"
    );

    // The doubles saw: the disko guard's eval, the disko build, the system eval, the
    // disko script, then nixos-install of the wrapper flake.
    let calls = r.calls();
    assert_eq!(
        tools(&calls),
        ["nix", "nix", "nix", "disko-script", "nixos-install"]
    );
    let flake_dir = r.root().join("run/nixos-lift/flake");
    let cfg = format!(
        "path:{}#nixosConfigurations.web.config",
        flake_dir.display()
    );
    assert_eq!(
        calls[0].1[..3],
        [
            "eval".to_string(),
            "--json".into(),
            format!("{cfg}.disko.devices.disk")
        ]
    );
    assert_eq!(
        calls[1].1.last().unwrap(),
        &format!("{cfg}.system.build.diskoScript")
    );
    assert_eq!(
        calls[2].1.last().unwrap(),
        &format!("{cfg}.system.build.toplevel.drvPath")
    );
    let mnt = r.root().join("mnt").display().to_string();
    assert_eq!(
        calls[4].1,
        [
            "--root",
            &mnt,
            "--flake",
            &format!("path:{}#web", flake_dir.display()),
            "--no-root-passwd",
            "--no-channel-copy"
        ]
    );

    // The private nix.conf: 0600, with the token, reached by path only.
    let env = std::fs::read_to_string(r.bin().join("records/004-nixos-install.env")).unwrap();
    let conf = r.root().join("run/nixos-lift/nix/nix.conf");
    assert!(
        env.contains(&format!("NIX_USER_CONF_FILES={}", conf.display())),
        "{env}"
    );
    let mode = std::fs::metadata(&conf).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let conf_text = std::fs::read_to_string(&conf).unwrap();
    assert!(conf_text.contains(&format!("access-tokens = github.com={GIT_TOKEN}")));
    assert!(conf_text.contains("extra-substituters = https://cache.example.org"));
    let files = std::fs::read_to_string(r.bin().join("records/000-nix.files")).unwrap();
    assert!(files.contains("mode=600 settings=experimental-features extra-substituters extra-trusted-public-keys access-tokens"), "{files}");

    // The generated module carries hostname, keys and the disk by its stable path.
    let module = std::fs::read_to_string(flake_dir.join("nixos-lift-facts.nix")).unwrap();
    assert!(
        module.contains(r#"networking.hostName = lib.mkDefault "web-1";"#),
        "{module}"
    );
    assert!(
        module.contains(&format!("keys = lib.mkDefault [ \"{KEY}\" ]")),
        "{module}"
    );
    assert!(
        module.contains(r#"diskDevice = "/dev/disk/by-id/virtio-lift-root";"#),
        "{module}"
    );
    assert!(module.contains("boot.loader.grub.efiInstallAsRemovable = lib.mkDefault true;"));
    // Its network is the plan's, rendered once into facts.json, which the module reads.
    assert!(
        module.contains(
            "systemd.network.networks = lib.mapAttrs (_: lib.mkDefault) network.networks;"
        ),
        "{module}"
    );
    let flake = std::fs::read_to_string(flake_dir.join("flake.nix")).unwrap();
    assert!(
        flake.contains(r#"inputs.user.url = "github:example/fleet";"#),
        "{flake}"
    );
    parse_nix(&[
        flake_dir.join("flake.nix"),
        flake_dir.join("nixos-lift-facts.nix"),
    ]);
    if std::env::var_os("SHOW_GENERATED").is_some() {
        eprintln!("{flake}\n{module}");
    }
    // tests/suite/50-nix.sh evaluates the generated module with nixos-lift's modules and the
    // real nixpkgs lib (tests/nix/eval/checks.nix, `wrapper`).
    if let Some(out) = std::env::var_os("NIXOS_LIFT_WRAPPER_OUT") {
        let out = PathBuf::from(out);
        std::fs::create_dir_all(&out).unwrap();
        for name in ["flake.nix", "nixos-lift-facts.nix", "facts.json"] {
            std::fs::copy(flake_dir.join(name), out.join(name)).unwrap();
        }
    }

    // The trail.
    let trail = r.root().join("mnt/etc/nixos-lift");
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string(trail.join("facts.json")).unwrap()).unwrap();
    assert_eq!(
        facts["install"]["disk_device"],
        "/dev/disk/by-id/virtio-lift-root"
    );
    assert_eq!(facts["install"]["hostname"], "web-1");
    assert_eq!(
        facts["install"]["network"],
        json!({
            "networks": { "10-nixos-lift-525400123456": {
                "matchConfig": { "MACAddress": "52:54:00:12:34:56" },
                "networkConfig": { "DHCP": "no", "IPv6AcceptRA": true },
                "address": ["203.0.113.10/20"],
                "routes": [{ "Gateway": "203.0.113.1", "GatewayOnLink": true }]
            } },
            "nameservers": ["192.0.2.53"],
            "search": []
        })
    );
    // nixos-lift's Nix modules take the disk from `target` (nix/lib targetDisk).
    assert_eq!(facts["target"]["path"], "/dev/vdb");
    assert_eq!(
        facts["target"]["by_id"][0],
        "/dev/disk/by-id/virtio-lift-root"
    );
    assert!(
        module.contains("nixos-lift.factsFile = lib.mkDefault ./facts.json;"),
        "{module}"
    );
    assert!(std::fs::read_to_string(trail.join("install.log"))
        .unwrap()
        .contains("$ nixos-install"));
    assert!(r.root().join("mnt/etc/nixos/flake.nix").is_file());
    // Without `update` the secrets stay in the installer: nothing private on the target.
    assert_eq!(facts["install"]["update"], Value::Null);
    for name in ["nix-private.conf", "netrc", "webhook-token"] {
        assert!(!trail.join(name).exists(), "{name} written without update");
    }
    assert!(r
        .root()
        .join("mnt/etc/nixos/nixos-lift-facts.nix")
        .is_file());

    // Webhook: every event, in order, with the bearer token.
    let events = wait_for(&got, 8);
    let seen: Vec<(String, u64)> = events
        .iter()
        .map(|(_, e)| {
            (
                e["status"].as_str().unwrap().to_string(),
                e["step"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, u64)> = (1..=7).map(|s| ("running".to_string(), s)).collect();
    want.push(("done".into(), 8));
    assert_eq!(seen, want);
    assert!(events
        .iter()
        .all(|(auth, _)| auth == &format!("Bearer {WEBHOOK_TOKEN}")));
    assert_eq!(events[4].1["message"], "partitioning /dev/vdb (disko)");
    assert_eq!(events[0].1["instance_id"], "do-1234");

    r.assert_no_secret(&out);
}

#[test]
fn a_failed_nixos_install_prints_a_banner_sends_failed_and_does_not_reboot() {
    let mut r = Rehearsal::new();
    let (url, got) = receiver();
    r.plan["report"]["webhook_url"] = json!(url);
    std::fs::write(r.bin().join("control/fail-nixos-install"), "1").unwrap();
    let out = r.run();
    let console = r.console();
    assert_eq!(out.status.code(), Some(1), "{console}");
    assert!(
        console.contains("nixos-lift: INSTALL FAILED in phase install (6/8)"),
        "{console}"
    );
    assert!(console.contains("the disk was partitioned"), "{console}");
    assert!(
        console.contains("nixos-lift: | nixos-install (test double): failing as told"),
        "{console}"
    );
    assert!(!console.contains("nixos-lift: done"), "{console}");
    assert!(!console.contains("rebooting"), "{console}");
    assert!(
        console.contains("reason: running nixos-install: exit status: 1"),
        "{console}"
    );
    let events = wait_for(&got, 7);
    let last = &events.last().unwrap().1;
    assert_eq!(
        (last["status"].as_str(), last["phase"].as_str()),
        (Some("failed"), Some("install"))
    );
    assert!(
        last["error"].as_str().unwrap().contains("nixos-install"),
        "{last}"
    );
    assert_eq!(last["reason"], "subprocess", "{last}");
    assert!(events
        .iter()
        .all(|(_, e)| e["phase"] != "reboot" && e["status"] != "done"));
    assert!(!r.root().join("mnt/etc/nixos-lift/installed").exists());
    r.assert_no_secret(&out);
}

#[test]
fn finds_the_disk_by_serial_when_its_recorded_name_no_longer_exists() {
    // Stage 1 saw the target as `sda` (another driver); the installer has no `sda` at all.
    let mut r = Rehearsal::new();
    r.plan["target"]["path"] = json!("/dev/sda");
    r.plan["target"]["name"] = json!("sda");
    assert!(!r.root().join("sys/block/sda").exists());
    let out = r.run();
    let console = r.console();
    assert!(out.status.success(), "{console}");
    assert!(
        console.contains(
            "nixos-lift: target disk /dev/vdb matched by serial (/dev/disk/by-id/virtio-lift-root)"
        ),
        "{console}"
    );
    let calls = r.calls();
    let (_, install) = calls.iter().find(|(t, _)| t == "nixos-install").unwrap();
    assert!(install.contains(&"--flake".to_string()), "{install:?}");
    let module =
        std::fs::read_to_string(r.root().join("run/nixos-lift/flake/nixos-lift-facts.nix"))
            .unwrap();
    assert!(
        module.contains(r#"diskDevice = "/dev/disk/by-id/virtio-lift-root";"#),
        "{module}"
    );
}

#[test]
fn a_failure_before_partitioning_says_the_disk_is_untouched() {
    let mut r = Rehearsal::new();
    r.plan["target"]["size_bytes"] = json!(11 * GIB);
    let out = r.run();
    let console = r.console();
    assert_eq!(out.status.code(), Some(10), "{console}");
    assert!(
        console.contains("INSTALL FAILED in phase disk (3/8)"),
        "{console}"
    );
    assert!(console.contains("target-disk-size"), "{console}");
    assert!(console.contains("the disk is untouched"), "{console}");
    assert!(r.calls().is_empty(), "no tool may run: {:?}", r.calls());
}

#[test]
fn a_layout_naming_another_disk_is_refused_before_disko() {
    let r = Rehearsal::new();
    std::fs::write(
        r.bin().join("control/nix-eval-disko.out"),
        r#"{"main":"/dev/disk/by-id/virtio-lift-root","data":"/dev/vda"}"#,
    )
    .unwrap();
    let out = r.run();
    let console = r.console();
    assert_eq!(out.status.code(), Some(10), "{console}");
    assert!(console.contains("disko-devices"), "{console}");
    assert!(console.contains("data=/dev/vda"), "{console}");
    assert_eq!(tools(&r.calls()), ["nix"]);
}

#[test]
fn update_keeps_the_secrets_root_only_and_its_settings_in_the_facts() {
    let (url, _got) = receiver();
    let mut r = Rehearsal::new();
    r.plan["report"]["webhook_url"] = json!(url);
    r.plan["update"] = json!({ "interval": "6h", "reboot": true, "system_url": null });
    let out = r.run();
    assert!(out.status.success(), "{}", r.console());
    let trail = r.root().join("mnt/etc/nixos-lift");
    let facts: Value =
        serde_json::from_str(&std::fs::read_to_string(trail.join("facts.json")).unwrap()).unwrap();
    let update = &facts["install"]["update"];
    assert_eq!(update["flake"], "github:example/fleet");
    assert_eq!(update["attr"], "web");
    assert_eq!(update["interval"], "6h");
    assert_eq!(update["reboot"], true);
    assert_eq!(update["substituters"][0], "https://cache.example.org/");
    assert_eq!(update["webhook_url"], url.as_str());
    assert_eq!(update["nix_conf"], compose::UPDATE_NIX_CONF);
    // The same record is what the wrapper flake's facts module reads at build time.
    let wrapped: Value = serde_json::from_str(
        &std::fs::read_to_string(r.root().join("mnt/etc/nixos/facts.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(&wrapped["install"]["update"], update);
    // The secrets: root-only files, the tokens as a nix.conf fragment for `!include`.
    let mode = |name: &str| {
        std::fs::metadata(trail.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for name in ["nix-private.conf", "netrc", "webhook-token"] {
        assert_eq!(mode(name), 0o600, "{name}");
    }
    let conf = std::fs::read_to_string(trail.join("nix-private.conf")).unwrap();
    assert_eq!(
        conf,
        format!(
            "access-tokens = github.com={GIT_TOKEN}\nnetrc-file = {}\n",
            compose::UPDATE_NETRC
        )
    );
    assert_eq!(
        std::fs::read_to_string(trail.join("webhook-token")).unwrap(),
        format!("{WEBHOOK_TOKEN}\n")
    );
    assert!(
        r.console().contains("nixos-lift: update: every 6h (boot and reboot), 3 root-only file(s): /etc/nixos-lift/nix-private.conf /etc/nixos-lift/netrc /etc/nixos-lift/webhook-token"),
        "{}",
        r.console()
    );
    // Nowhere else: not the public facts, the plan in the trail, logs or records.
    r.assert_no_secret(&out);
}

#[test]
fn fleet_mode_copies_the_prebuilt_system_without_evaluating_it() {
    let mut r = Rehearsal::new();
    let system = "/nix/store/11111111111111111111111111111111-nixos-system-web-26.05";
    r.plan["system"] = json!(system);
    let out = r.run();
    assert!(out.status.success(), "{}", r.console());
    let calls = r.calls();
    assert_eq!(
        tools(&calls),
        ["nix", "nix", "disko-script", "nix", "nixos-install"]
    );
    assert!(calls.iter().all(|(_, argv)| !argv
        .iter()
        .any(|a| a.contains("toplevel") || a == "--flake")));
    let mnt = r.root().join("mnt").display().to_string();
    assert_eq!(
        calls[3].1,
        [
            "copy",
            "--from",
            "https://cache.example.org/",
            "--to",
            &format!("local?root={mnt}"),
            system
        ]
    );
    assert_eq!(
        calls[4].1,
        [
            "--root",
            &mnt,
            "--system",
            system,
            "--no-root-passwd",
            "--no-channel-copy"
        ]
    );
    assert!(r.console().contains("[6/8] installing the prebuilt system"));

    // What the prebuilt system cannot hold reaches the disk for nixos-lift.fleet.enable.
    let keys_dir = r.root().join("mnt/etc/nixos-lift/authorized_keys.d");
    assert_eq!(mode(&keys_dir), 0o700);
    assert_eq!(mode(&keys_dir.join("root")), 0o600);
    assert_eq!(read(&keys_dir.join("root")), format!("{KEY}\n"));
    assert_eq!(mode(&r.root().join("mnt/etc")), 0o755);
    assert_eq!(read(&r.root().join("mnt/etc/hostname")), "web-1\n");
    assert!(r
        .console()
        .contains("fleet mode: 1 SSH key(s) for root in /etc/nixos-lift/authorized_keys.d/root, host name web-1 in /etc/hostname"));
    // No keep_host_keys: no host keys.
    assert!(!r.root().join("mnt/etc/ssh").exists());
}

/// Stands in for a private host key: not key material, a marker no log may carry.
const HOST_KEY: &str = "fake ssh host key for tests\nHOSTKEY-SECRET-BYTES\n";

/// Stage 1 puts the host keys in `nixos-lift/` only with keep_host_keys (tests/handoff_payload.rs);
/// stage 2 writes them to the target's /etc/ssh, private halves 0600, and logs only their names.
#[test]
fn keep_host_keys_writes_the_stock_host_keys_to_the_target() {
    for keep in [true, false] {
        let mut r = Rehearsal::new();
        r.plan["keep_host_keys"] = json!(keep);
        let h = r.root().join("handoff");
        std::fs::create_dir_all(&h).unwrap();
        std::fs::write(h.join("ssh_host_ed25519_key"), HOST_KEY).unwrap();
        std::fs::set_permissions(
            h.join("ssh_host_ed25519_key"),
            PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        std::fs::write(
            h.join("ssh_host_ed25519_key.pub"),
            "ssh-ed25519 AAAAhost root@stock\n",
        )
        .unwrap();
        let out = r.run();
        assert!(out.status.success(), "{}", r.console());
        let ssh = r.root().join("mnt/etc/ssh");
        if !keep {
            assert!(!ssh.exists(), "host keys copied without keep_host_keys");
            // Not fleet mode: the system's own modules set keys and host name.
            assert!(!r
                .root()
                .join("mnt/etc/nixos-lift/authorized_keys.d")
                .exists());
            assert!(!r.root().join("mnt/etc/hostname").exists());
            continue;
        }
        assert_eq!(read(&ssh.join("ssh_host_ed25519_key")), HOST_KEY);
        assert_eq!(mode(&ssh.join("ssh_host_ed25519_key")), 0o600);
        assert_eq!(
            read(&ssh.join("ssh_host_ed25519_key.pub")),
            "ssh-ed25519 AAAAhost root@stock\n"
        );
        assert_eq!(mode(&ssh.join("ssh_host_ed25519_key.pub")), 0o644);
        assert_eq!(mode(&ssh), 0o755);
        let console = r.console();
        assert!(console.contains(
            "kept the stock image's SSH host keys in /etc/ssh: ssh_host_ed25519_key ssh_host_ed25519_key.pub"
        ), "{console}");
        let log = read(&r.root().join("run/nixos-lift/install.log"));
        for text in [
            console,
            log,
            read(&r.root().join("kmsg")),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ] {
            assert!(!text.contains("HOSTKEY-SECRET"), "a host key was logged");
        }
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_missing_or_corrupt_handoff_is_refused() {
    let r = Rehearsal::new();
    let handoff = r.write_handoff();
    std::fs::write(
        handoff.join("secrets.json"),
        format!("{{\"webhook_token\": {GIT_TOKEN}}}"),
    )
    .unwrap();
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["install", "--skip-network", "--handoff"])
        .arg(&handoff)
        .arg("--root")
        .arg(r.root())
        .arg("--console")
        .arg(r.root().join("console"))
        .arg("--kmsg")
        .arg(r.root().join("kmsg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    let console = r.console();
    assert!(
        console.contains("handoff: found a corrupt ") && console.contains("/secrets.json (Syntax"),
        "{console}"
    );
    assert!(
        !console.contains(GIT_TOKEN) && !String::from_utf8_lossy(&out.stderr).contains(GIT_TOKEN)
    );

    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["install", "--handoff", "/nonexistent/handoff", "--root"])
        .arg(r.root())
        .arg("--console")
        .arg(r.root().join("console2"))
        .arg("--kmsg")
        .arg(r.root().join("kmsg"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(10));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to install: handoff"));
}

#[test]
fn refuses_outside_a_ram_installer() {
    let r = Rehearsal::new();
    write(r.root(), "proc/self/mounts", "/dev/vda1 / ext4 rw 0 0\n");
    let out = r.run();
    assert_eq!(out.status.code(), Some(10));
    assert!(
        r.console()
            .contains("installer-environment: found / on ext4"),
        "{}",
        r.console()
    );
    assert!(r.calls().is_empty());
}

fn wait_for(got: &Received, n: usize) -> Vec<(String, Value)> {
    for _ in 0..100 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    got.lock().unwrap().clone()
}

/// `nix-instantiate --parse` on generated files. The install suite installs Debian's
/// nix-bin and sets NIXOS_LIFT_REQUIRE_NIX=1, so there a missing parser is a failure.
fn parse_nix(files: &[PathBuf]) {
    let found = Command::new("nix-instantiate")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("NIXOS_LIFT_REQUIRE_NIX").is_none(),
            "nix-instantiate is required here but not installed"
        );
        eprintln!("nix-instantiate not installed: parse check not run");
        return;
    }
    for f in files {
        let out = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not parse: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
