//! `detect` against the fake metadata service (tests/fakecloud/server.py): the normalised
//! `cloud` facts of every provider, the network cases, the fault cases and the deadline bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running fakecloud; killed on drop.
struct Fake {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Fake {
    fn start(provider: &str, extra: &[&str]) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        // The host fixtures (tests/fixtures/hosts) and the metadata fixtures were written apart;
        // align MACs and DMI-published instance ids the way a VM harness would.
        let align: &[&str] = match provider {
            "hetzner" => &[
                "96:00:01:aa:bb:01=96:00:03:ab:cd:ef",
                "instance-id: 41234567=instance-id: 51234567",
            ],
            "digitalocean" => &[
                "301234567=412345678",
                "7a:9e:a4:00:00:01=b2:1f:3a:4c:5d:6e",
                "7a:9e:a4:00:00:02=c6:2e:4b:5d:6e:7f",
            ],
            "aws" => &["0a:1b:2c:3d:4e:01=0a:1b:2c:3d:4e:5f"],
            "gcp" => &["42:01:0a:84:00:02=42:01:0a:80:00:05"],
            _ => &[],
        };
        let align = align.iter().flat_map(|s| ["--subst", s]);
        let mut child = Command::new("python3")
            .arg(repo().join("tests/fakecloud/server.py"))
            .args(["--provider", provider, "--hang", "20", "--log"])
            .arg(log.path())
            .args(align)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs fakecloud");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().rsplit(':').next().unwrap().parse().unwrap();
        Self { child, port, log }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The request log, one JSON object per request.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log.path())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn cloud(&self) -> Value {
        assert_eq!(self.code, 0, "detect failed: {}", self.stderr);
        let facts: Value = serde_json::from_str(&self.stdout).unwrap();
        facts["cloud"].clone()
    }

    /// Asserts that the one-line error (or a log line) names `text`.
    #[track_caller]
    fn says(&self, text: &str) {
        assert!(
            self.stderr.contains(text),
            "no {text:?} in: {}",
            self.stderr
        );
    }
}

fn host(name: &str) -> PathBuf {
    repo().join("tests/fixtures/hosts").join(name)
}

fn detect(root: &Path, args: &[&str]) -> Run {
    let start = Instant::now();
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["detect", "--format", "json", "--root"])
        .arg(root)
        .args(args)
        .env("NIXOS_LIFT_LOG", "debug")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

fn user_data_file() -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "#cloud-config\nsecret: hunter2-user-data\n").unwrap();
    f
}

/// `detect` with the fake for `provider` serving user-data; returns the cloud facts.
fn cloud_of(fixture: &str, provider: &str, extra_args: &[&str]) -> (Value, Fake, Run) {
    let ud = user_data_file();
    let fake = Fake::start(provider, &["--user-data", ud.path().to_str().unwrap()]);
    let base = fake.base();
    let mut args = vec!["--metadata-base", &base, "--metadata-timeout", "20"];
    args.extend_from_slice(extra_args);
    let run = detect(&host(fixture), &args);
    assert!(
        !run.stderr.contains("hunter2"),
        "user-data leaked into the log"
    );
    (run.cloud(), fake, run)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn iface<'a>(cloud: &'a Value, mac: &str) -> &'a Value {
    cloud["network"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["mac"] == mac)
        .unwrap_or_else(|| panic!("no interface {mac} in {cloud:#}"))
}

const K1: &str = "AAAAC3NzaC1lZDI1NTE5AAAAICRXHU0/4basKHVpDCNsdTtM2zAX9NDtYq2jaMeZnFpz";
const K2: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIB0SJ6S2wsS8s2I8hBELWV2206QX3k2t/LR3xOkZ2uTN";

fn assert_basics(
    c: &Value,
    provider: &str,
    id: &str,
    hostname: Option<&str>,
    region: Option<&str>,
) {
    assert_eq!(c["provider"], provider, "{c:#}");
    assert_eq!(c["instance_id"], id);
    assert_eq!(c["hostname"].as_str(), hostname);
    assert_eq!(c["region"].as_str(), region);
    assert!(strs(&c["source"]).contains(&"metadata".to_owned()), "{c:#}");
    assert_eq!(c["user_data_present"], true, "{c:#}");
}

#[test]
fn hetzner_ipv6_with_link_local_gateway() {
    let (c, _, _) = cloud_of("hetzner-x86_64", "hetzner", &[]);
    assert_basics(&c, "hetzner", "51234567", Some("web-1"), Some("eu-central"));
    assert_eq!(c["zone"], "fsn1-dc14");
    assert_eq!(c["ssh_keys"].as_array().unwrap().len(), 2);
    let eth0 = iface(&c, "96:00:03:ab:cd:ef");
    assert_eq!(eth0["name"], "eth0");
    assert_eq!(strs(&eth0["addresses"]), ["2a01:4f8:c17:1234::1/64"]);
    assert_eq!(eth0["routes"][0]["gateway"], "fe80::1");
    assert_eq!(eth0["dhcp4"], true);
    assert_eq!(strs(&eth0["dns"]), ["185.12.64.2", "185.12.64.1"]);
}

#[test]
fn hetzner_empty_user_data_is_absent() {
    let fake = Fake::start("hetzner", &[]);
    let run = detect(&host("hetzner-x86_64"), &["--metadata-base", &fake.base()]);
    assert_eq!(run.cloud()["user_data_present"], false);
}

#[test]
fn aws_imdsv2_token_on_every_request() {
    let (c, fake, run) = cloud_of("aws-nitro-x86_64", "aws", &[]);
    assert_basics(
        &c,
        "aws",
        "i-0abc123def4567890",
        Some("ip-172-31-5-10.eu-central-1.compute.internal"),
        Some("eu-central-1"),
    );
    assert_eq!(c["zone"], "eu-central-1a");
    assert_eq!(c["instance_type"], "t3.small");
    // Key 1 repeats key 0: deduplicated.
    assert_eq!(c["ssh_keys"].as_array().unwrap().len(), 1);
    let nic = iface(&c, "0a:1b:2c:3d:4e:5f");
    assert_eq!(nic["name"], "ens5");
    assert_eq!(
        strs(&nic["addresses"]),
        ["172.31.5.10/20", "2a05:d014:abc:de00::10/64"]
    );
    assert!(strs(&c["notes"]).is_empty());
    let reqs = fake.requests();
    assert_eq!(reqs[0]["method"], "PUT");
    let token = reqs[0]["headers"]["x-aws-ec2-metadata-token-ttl-seconds"].as_str();
    assert_eq!(token, Some("21600"));
    for r in reqs.iter().filter(|r| r["method"] == "GET") {
        assert!(r["headers"]["x-aws-ec2-metadata-token"].is_string(), "{r}");
        assert!(!run
            .stderr
            .contains(r["headers"]["x-aws-ec2-metadata-token"].as_str().unwrap()));
    }
}

#[test]
fn aws_imdsv1_only_falls_back_and_says_so() {
    let fake = Fake::start("aws", &["--fault", "imdsv1-only"]);
    let run = detect(
        &host("aws-nitro-x86_64"),
        &["--metadata-base", &fake.base()],
    );
    let c = run.cloud();
    assert_eq!(c["instance_id"], "i-0abc123def4567890");
    assert!(strs(&c["notes"]).contains(&"imdsv1-fallback".to_owned()));
}

#[test]
fn aws_token_refused_means_imds_disabled() {
    let fake = Fake::start("aws", &["--fault", "token-refused"]);
    let run = detect(
        &host("aws-nitro-x86_64"),
        &["--metadata-base", &fake.base()],
    );
    assert_eq!(run.code, 1);
    run.says("IMDS is disabled");
    run.says("metadata-disabled");
}

#[test]
fn aws_expired_token_is_refreshed_once() {
    let fake = Fake::start("aws", &["--fault", "token-expired:1@instance-id"]);
    let run = detect(
        &host("aws-nitro-x86_64"),
        &["--metadata-base", &fake.base()],
    );
    let c = run.cloud();
    assert_eq!(c["instance_id"], "i-0abc123def4567890");
    assert!(strs(&c["notes"]).is_empty(), "{}", c["notes"]);
    let reqs = fake.requests();
    let puts: Vec<usize> = (0..reqs.len())
        .filter(|&i| reqs[i]["method"] == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "one token, then one fresh token: {reqs:?}");
    let expired = reqs
        .iter()
        .position(|r| r["fault"] == "token-expired")
        .unwrap();
    assert!(puts[0] < expired && expired < puts[1], "{reqs:?}");
    let token = |r: &Value| {
        r["headers"]["x-aws-ec2-metadata-token"]
            .as_str()
            .map(str::to_owned)
    };
    let after = &reqs[puts[1] + 1];
    assert!(
        token(after).is_some() && token(after) != token(&reqs[expired]),
        "{after}"
    );
    run.says("expired or was revoked");
}

#[test]
fn aws_token_rejected_again_after_a_refresh_fails_clearly() {
    let fake = Fake::start("aws", &["--fault", "token-expired"]);
    let run = detect(
        &host("aws-nitro-x86_64"),
        &["--metadata-base", &fake.base(), "--metadata-timeout", "20"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.says("answered 401 even with a fresh IMDSv2 token");
    run.says("metadata-unauthorized");
    let puts = fake
        .requests()
        .iter()
        .filter(|r| r["method"] == "PUT")
        .count();
    assert_eq!(puts, 2, "the token is refreshed once, not in a loop");
    assert!(run.elapsed < Duration::from_secs(10), "{:?}", run.elapsed);
}

#[test]
fn aws_imdsv1_fallback_answered_401_says_why() {
    let fake = Fake::start(
        "aws",
        &["--fault", "imdsv1-only", "--fault", "token-expired"],
    );
    let run = detect(
        &host("aws-nitro-x86_64"),
        &["--metadata-base", &fake.base()],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    run.says("the service wants a token it does not issue");
    run.says("metadata-unauthorized");
}

#[test]
fn gcp_keys_zone_and_machine_type() {
    let (c, fake, _) = cloud_of("gcp", "gcp", &[]);
    assert_basics(
        &c,
        "gcp",
        "4567890123456789012",
        Some("web-1.europe-west1-b.c.my-project.internal"),
        Some("europe-west1"),
    );
    assert_eq!(c["zone"], "europe-west1-b");
    assert_eq!(c["instance_type"], "e2-small");
    let keys = strs(&c["ssh_keys"]);
    assert_eq!(keys.len(), 3, "instance keys plus project keys: {keys:?}");
    assert!(keys.iter().all(|k| !k.contains("google-ssh")));
    assert_eq!(iface(&c, "42:01:0a:80:00:05")["mtu"], 1460);
    assert!(fake
        .requests()
        .iter()
        .all(|r| r["headers"]["metadata-flavor"] == "Google"));
}

#[test]
fn azure_two_nics_and_the_vf_is_not_chosen() {
    let (c, fake, _) = cloud_of("azure-gen2", "azure", &[]);
    assert_basics(
        &c,
        "azure",
        "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
        Some("vm-web-1"),
        Some("westeurope"),
    );
    assert_eq!(c["instance_type"], "Standard_B2s");
    assert_eq!(c["ssh_keys"].as_array().unwrap().len(), 2);
    let first = iface(&c, "00:0d:3a:04:75:98");
    // eth0 (hv_netvsc) and its accelerated-networking VF share the MAC; the synthetic NIC wins.
    assert_eq!(first["name"], "eth0");
    assert_eq!(
        strs(&first["addresses"]),
        ["10.0.0.4/24", "fd00:db8::4/128"]
    );
    let second = iface(&c, "00:0d:3a:04:75:99");
    assert_eq!(strs(&second["addresses"]), ["10.0.1.4/24"]);
    for r in fake.requests() {
        assert_eq!(r["headers"]["metadata"], "true");
        assert!(r["query"].as_str().unwrap().contains("api-version="));
    }
}

#[test]
fn digitalocean_static_public_private_and_anchor() {
    let (c, _, _) = cloud_of("digitalocean", "digitalocean", &[]);
    assert_basics(&c, "digitalocean", "412345678", Some("web-1"), Some("ams3"));
    let public = iface(&c, "b2:1f:3a:4c:5d:6e");
    assert_eq!(public["name"], "eth0");
    assert_eq!(public["dhcp4"], false);
    assert_eq!(
        strs(&public["addresses"]),
        [
            "188.166.1.2/18",
            "10.18.0.5/16",
            "2a03:b0c0:2:d0::1234:5001/64"
        ]
    );
    let gws: Vec<&str> = public["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["gateway"].as_str().unwrap())
        .collect();
    assert_eq!(gws, ["188.166.0.1", "2a03:b0c0:2:d0::1"]);
    assert_eq!(strs(&public["dns"]), ["67.207.67.2", "67.207.67.3"]);
    let private = iface(&c, "c6:2e:4b:5d:6e:7f");
    assert_eq!(private["name"], "eth1");
    assert_eq!(strs(&private["addresses"]), ["10.110.0.2/20"]);
    assert!(private["routes"].as_array().unwrap().is_empty());
}

#[test]
fn vultr() {
    let (c, fake, _) = cloud_of("provider-vultr", "vultr", &[]);
    assert_basics(
        &c,
        "vultr",
        "5e2b4a0c-1234-4f6e-9abc-0123456789ab",
        Some("web-1"),
        Some("ams"),
    );
    assert_eq!(iface(&c, "5a:00:04:00:00:02")["mtu"], 1450);
    assert!(fake.requests().iter().all(|r| r["path"] == "/v1.json"));
}

#[test]
fn akamai_token_then_json() {
    let (c, fake, _) = cloud_of("provider-akamai", "akamai", &[]);
    assert_basics(&c, "akamai", "51234567", Some("web-1"), Some("us-ord"));
    assert_eq!(c["instance_type"], "g6-nanode-1");
    assert_eq!(c["ssh_keys"].as_array().unwrap().len(), 2);
    let reqs = fake.requests();
    assert_eq!(reqs[0]["method"], "PUT");
    assert!(reqs[1..]
        .iter()
        .all(|r| r["headers"]["metadata-token"].is_string()));
}

#[test]
fn oracle_vnics() {
    let (c, fake, _) = cloud_of("provider-oracle", "oracle", &[]);
    assert_basics(
        &c,
        "oracle",
        "ocid1.instance.oc1.phx.anyhqljexampleuniqueid",
        Some("web-1"),
        Some("us-phoenix-1"),
    );
    assert_eq!(c["instance_type"], "VM.Standard.E4.Flex");
    let primary = iface(&c, "02:00:17:00:00:01");
    assert_eq!(primary["name"], "ens3");
    assert_eq!(primary["mtu"], 9000);
    assert_eq!(
        strs(&primary["addresses"]),
        ["10.0.0.10/24", "2603:c020:4000:1234::10/64"]
    );
    assert_eq!(primary["routes"][0]["gateway"], "10.0.0.1");
    let secondary = iface(&c, "02:00:17:00:00:02");
    assert_eq!(secondary["name"], "ens5");
    assert_eq!(strs(&secondary["addresses"]), ["10.0.1.10/24"]);
    assert!(fake
        .requests()
        .iter()
        .all(|r| r["headers"]["authorization"] == "Bearer Oracle"));
}

#[test]
fn scaleway() {
    let ud = user_data_file();
    let fake = Fake::start("scaleway", &["--user-data", ud.path().to_str().unwrap()]);
    let c = detect(
        &host("provider-scaleway"),
        &["--metadata-base", &fake.base()],
    )
    .cloud();
    assert_eq!(c["provider"], "scaleway");
    assert_eq!(c["instance_id"], "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0");
    assert_eq!(c["region"], "fr-par");
    assert_eq!(c["zone"], "fr-par-1");
    assert_eq!(c["instance_type"], "DEV1-S");
    // One key from ssh_public_keys, one from an AUTHORIZED_KEY tag.
    let keys = strs(&c["ssh_keys"]);
    assert!(keys.iter().any(|k| k.contains(K1)) && keys.iter().any(|k| k.contains(K2)));
    assert_eq!(
        iface(&c, "de:00:00:00:00:01")["routes"][0]["gateway"],
        "2001:bc8:1234:5678::"
    );
    assert!(strs(&c["notes"])
        .iter()
        .any(|n| n.starts_with("user-data-not-checked")));
}

#[test]
fn openstack_network_data_with_static_routes() {
    let (c, _, _) = cloud_of("provider-openstack", "openstack", &[]);
    assert_basics(
        &c,
        "openstack",
        "83679162-1378-4288-a2d4-70e13ec132aa",
        Some("web-1.novalocal"),
        None,
    );
    assert_eq!(c["zone"], "nova");
    assert_eq!(c["instance_type"], "m1.small");
    let a = iface(&c, "fa:16:3e:00:00:01");
    assert_eq!(a["mtu"], 1450);
    assert_eq!(
        strs(&a["addresses"]),
        ["192.0.2.10/24", "2001:db8:10::10/64"]
    );
    assert_eq!(a["routes"].as_array().unwrap().len(), 2);
    assert_eq!(strs(&a["dns"]), ["192.0.2.53", "2001:db8:10::53"]);
    let b = iface(&c, "fa:16:3e:00:00:02");
    assert_eq!(b["routes"][0]["dst"], "10.30.0.0/16");
    assert_eq!(b["routes"][0]["gateway"], "10.20.0.1");
    assert_eq!(b["routes"][0]["onlink"], false);
}

#[test]
fn exoscale() {
    let (c, _, _) = cloud_of("provider-exoscale", "exoscale", &[]);
    assert_basics(
        &c,
        "exoscale",
        "8a2b3c4d-0000-4000-8000-123456789abc",
        Some("web-1"),
        Some("ch-gva-2"),
    );
    assert_eq!(c["instance_type"], "standard.small");
    assert_eq!(c["ssh_keys"].as_array().unwrap().len(), 2);
}

#[test]
fn upcloud_floating_ip_is_static() {
    let ud = user_data_file();
    let fake = Fake::start("upcloud", &["--user-data", ud.path().to_str().unwrap()]);
    let c = detect(
        &host("provider-upcloud"),
        &["--metadata-base", &fake.base()],
    )
    .cloud();
    assert_eq!(c["instance_id"], "00133099-f1fd-4ed3-8f5f-9d5f2e1c9b1a");
    assert_eq!(c["region"], "fi-hel2");
    assert_eq!(c["user_data_present"], true);
    let public = iface(&c, "de:ad:be:ef:00:01");
    assert_eq!(public["dhcp4"], true);
    assert_eq!(strs(&public["addresses"]), ["94.237.2.3/32"]);
}

#[test]
fn alibaba() {
    let (c, _, _) = cloud_of("provider-alibaba", "alibaba", &[]);
    assert_basics(
        &c,
        "alibaba",
        "i-bp1abcdefghijklmnop",
        Some("iZbp1abcdefghijklmnopZ"),
        Some("cn-hangzhou"),
    );
    assert_eq!(c["zone"], "cn-hangzhou-i");
    assert_eq!(c["instance_type"], "ecs.t6-c1m1.large");
    assert_eq!(
        c["ssh_keys"].as_array().unwrap().len(),
        1,
        "the repeated key is deduplicated"
    );
    let nic = iface(&c, "00:16:3e:00:00:01");
    assert_eq!(strs(&nic["addresses"]), ["172.16.0.10/24"]);
    assert_eq!(strs(&nic["dns"]), ["100.100.2.136", "100.100.2.138"]);
}

#[test]
fn nocloud_seedfrom_url() {
    let (c, fake, _) = cloud_of("provider-nocloud", "nocloud", &[]);
    assert_eq!(c["provider"], "nocloud");
    assert!(strs(&c["source"]).contains(&"cmdline:ds=nocloud".to_owned()));
    assert_eq!(c["instance_id"], "iid-local01");
    assert_eq!(c["hostname"], "web-1");
    assert_eq!(c["user_data_present"], true);
    let nic = iface(&c, "52:54:00:12:34:56");
    assert_eq!(nic["name"], "ens3");
    assert_eq!(nic["routes"][0]["gateway"], "192.168.122.1");
    assert!(fake
        .requests()
        .iter()
        .all(|r| r["path"].as_str().unwrap().starts_with("/seed/")));
}

#[test]
fn none_when_nothing_answers() {
    let fake = Fake::start("none", &[]);
    let c = detect(&host("provider-none"), &["--metadata-base", &fake.base()]).cloud();
    assert_eq!(c["provider"], "none");
    assert_eq!(strs(&c["source"]), ["probe:no-answer"]);
    // Every candidate was asked.
    assert!(fake.requests().len() >= 13);
}

#[test]
fn probing_finds_a_cloud_dmi_does_not_name() {
    let fake = Fake::start("hetzner", &[]);
    let c = detect(&host("provider-none"), &["--metadata-base", &fake.base()]).cloud();
    assert_eq!(c["provider"], "hetzner");
    assert_eq!(strs(&c["source"]), ["probe:hetzner", "metadata"]);
}

#[test]
fn dmi_only_names_every_fixture() {
    let cases = [
        ("aws-nitro-x86_64", "aws"),
        ("aws-graviton-aarch64", "aws"),
        ("azure-gen2", "azure"),
        ("gcp", "gcp"),
        ("hetzner-x86_64", "hetzner"),
        ("hetzner-arm64", "hetzner"),
        ("digitalocean", "digitalocean"),
        ("provider-vultr", "vultr"),
        ("provider-akamai", "akamai"),
        ("provider-oracle", "oracle"),
        ("provider-scaleway", "scaleway"),
        ("provider-openstack", "openstack"),
        ("provider-exoscale", "exoscale"),
        ("provider-upcloud", "upcloud"),
        ("provider-alibaba", "alibaba"),
        ("provider-nocloud", "nocloud"),
        ("provider-none", "none"),
        // A container sees the host's DMI; it is ignored.
        ("lxc", "none"),
    ];
    for (fixture, want) in cases {
        let c = detect(&host(fixture), &["--metadata-timeout", "0"]).cloud();
        assert_eq!(c["provider"], want, "{fixture}: {c:#}");
        assert!(strs(&c["notes"]).contains(&"metadata-skipped".to_owned()));
    }
}

#[test]
fn forced_provider_skips_identification() {
    let fake = Fake::start("upcloud", &[]);
    let c = detect(
        &host("provider-none"),
        &["--metadata-base", &fake.base(), "--provider", "upcloud"],
    )
    .cloud();
    assert_eq!(c["provider"], "upcloud");
    assert_eq!(strs(&c["source"]), ["forced:--provider", "metadata"]);
    let bad = detect(&host("provider-none"), &["--provider", "nimbus"]);
    assert_eq!(bad.code, 2);
}

// ---- faults -------------------------------------------------------------------------------

/// Runs `detect` on `fixture` against `provider`'s fake with `faults`.
fn with_faults(fixture: &str, provider: &str, faults: &[&str], timeout: &str) -> (Run, Fake) {
    let mut args = Vec::new();
    for f in faults {
        args.extend(["--fault", f]);
    }
    let fake = Fake::start(provider, &args);
    let run = detect(
        &host(fixture),
        &[
            "--metadata-base",
            &fake.base(),
            "--metadata-timeout",
            timeout,
        ],
    );
    (run, fake)
}

#[test]
fn transient_faults_are_retried_to_success() {
    // One family each: JSON document, YAML document, text tree with token, text leaves.
    for (fixture, provider) in [
        ("digitalocean", "digitalocean"),
        ("hetzner-x86_64", "hetzner"),
        ("aws-nitro-x86_64", "aws"),
        ("gcp", "gcp"),
    ] {
        for fault in ["500:1", "503:2", "reset:1", "429:1", "timeout:1"] {
            let (run, fake) = with_faults(fixture, provider, &[fault], "30");
            let c = run.cloud();
            assert!(
                strs(&c["source"]).contains(&"metadata".to_owned()),
                "{provider} {fault}: {c:#}"
            );
            assert!(c["instance_id"].is_string(), "{provider} {fault}");
            let faulted = fake
                .requests()
                .iter()
                .filter(|r| !r["fault"].is_null())
                .count();
            assert!(faulted >= 1, "{provider} {fault}: the fault never fired");
            if fault == "429:1" {
                // Retry-After: 1 was honoured.
                assert!(
                    run.elapsed >= Duration::from_millis(900),
                    "{provider}: {:?}",
                    run.elapsed
                );
            }
        }
    }
}

#[test]
fn azure_retries_404_and_410_while_imds_starts() {
    for fault in ["404:2", "410:1"] {
        let (run, fake) = with_faults("azure-gen2", "azure", &[fault], "30");
        assert_eq!(
            run.cloud()["instance_id"],
            "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
            "{fault}"
        );
        assert!(
            fake.requests().iter().any(|r| !r["fault"].is_null()),
            "{fault} never fired"
        );
    }
}

#[test]
fn unusable_documents_fail_with_a_documented_reason() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "digitalocean",
            "digitalocean",
            "malformed",
            "metadata-invalid",
        ),
        ("hetzner-x86_64", "hetzner", "malformed", "metadata-invalid"),
        ("provider-oracle", "oracle", "malformed", "metadata-invalid"),
        ("digitalocean", "digitalocean", "empty", "metadata-invalid"),
        ("hetzner-x86_64", "hetzner", "empty", "metadata-invalid"),
        ("azure-gen2", "azure", "missing-field", "metadata-invalid"),
        (
            "hetzner-x86_64",
            "hetzner",
            "missing-field",
            "metadata-invalid",
        ),
        (
            "aws-nitro-x86_64",
            "aws",
            "missing-field",
            "metadata-invalid",
        ),
        (
            "provider-openstack",
            "openstack",
            "missing-field",
            "metadata-invalid",
        ),
        (
            "provider-nocloud",
            "nocloud",
            "missing-field",
            "metadata-invalid",
        ),
        (
            "digitalocean",
            "digitalocean",
            "wrong-content-type",
            "metadata-invalid",
        ),
        ("digitalocean", "digitalocean", "big", "body-too-large"),
        ("hetzner-x86_64", "hetzner", "big-stream", "body-too-large"),
        ("gcp", "gcp", "big-stream", "body-too-large"),
        ("provider-upcloud", "upcloud", "403", "http-status"),
    ];
    for (fixture, provider, fault, reason) in cases {
        let (run, _) = with_faults(fixture, provider, &[fault], "20");
        assert_eq!(run.code, 1, "{provider} {fault}: {}", run.stdout);
        assert!(
            run.stderr.contains(reason),
            "{provider} {fault}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn dmi_names_a_cloud_whose_metadata_is_absent() {
    // Hetzner by DMI, but the service there is some other cloud's (everything 404).
    let (run, _) = with_faults("hetzner-x86_64", "none", &[], "10");
    let c = run.cloud();
    assert_eq!(c["provider"], "hetzner");
    assert_eq!(strs(&c["notes"]), ["metadata-absent"]);
}

#[test]
fn dmi_names_a_cloud_whose_metadata_never_answers() {
    let (run, _) = with_faults("digitalocean", "digitalocean", &["timeout"], "3");
    let c = run.cloud();
    assert_eq!(c["provider"], "digitalocean");
    assert_eq!(strs(&c["notes"]), ["metadata-unreachable"]);
    assert!(run.elapsed < Duration::from_secs(8), "{:?}", run.elapsed);
}

#[test]
fn a_black_hole_does_not_hold_detect_past_the_deadline() {
    // Accepts connections in the kernel backlog but never answers a byte.
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", hole.local_addr().unwrap());
    // DMI silent: the probe budget (5 s) is the bound.
    let run = detect(
        &host("provider-none"),
        &["--metadata-base", &base, "--metadata-timeout", "2"],
    );
    assert_eq!(run.cloud()["provider"], "none");
    assert!(
        run.elapsed < Duration::from_secs(5),
        "probe took {:?}",
        run.elapsed
    );
    // DMI names the cloud: the metadata deadline is the bound.
    let run = detect(
        &host("hetzner-x86_64"),
        &["--metadata-base", &base, "--metadata-timeout", "2"],
    );
    assert_eq!(strs(&run.cloud()["notes"]), ["metadata-unreachable"]);
    assert!(
        run.elapsed < Duration::from_secs(5),
        "fetch took {:?}",
        run.elapsed
    );
    drop(hole);
}

#[test]
fn identity_mismatch_with_dmi_is_refused() {
    let fake = Fake::start(
        "hetzner",
        &["--subst", "instance-id: 51234567=instance-id: 999"],
    );
    let run = detect(&host("hetzner-x86_64"), &["--metadata-base", &fake.base()]);
    assert_eq!(run.code, 1);
    run.says("metadata-mismatch");
}
