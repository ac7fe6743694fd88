//! Progress events over HTTP: the report policy's POST with a JSON body and a bearer token,
//! its retries, the reporter's queue (order, held events, identity, GCP's guest attribute), its
//! bounded waits against a receiver that never answers, and `run` sending stage 1's `failed`
//! event when a guard refuses. Everything talks to a loopback server in this file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use nixos_lift::config::{HttpUrl, Secret};
use nixos_lift::http::{Client, Deadline, Request, RetryPolicy};
use nixos_lift::report::{MemorySink, RemoteTargets, Reporter, Status};
use nixos_lift::Error;
use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Lowercased names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Clone, Copy)]
enum Act {
    Status(u16),
    /// Read the request, then answer nothing and keep the connection open.
    Hang,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A loopback server: request `n` gets `acts[n]` (the last one repeats). Returns its base URL.
fn serve(acts: Vec<Act>) -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            if reader.read_line(&mut first).unwrap_or(0) == 0 {
                continue;
            }
            let mut parts = first.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((n, v)) = line.split_once(':') {
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let n = {
                let mut log = seen.lock().unwrap();
                log.push(Seen {
                    method,
                    path,
                    headers,
                    body,
                });
                log.len() - 1
            };
            match acts[n.min(acts.len() - 1)] {
                Act::Status(code) => {
                    let mut s = stream;
                    let _ = s.write_all(
                        format!(
                            "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                }
                Act::Hang => held.push(stream),
            }
        }
    });
    (base, log)
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn post(base: &str, token: &str) -> Request {
    let url = format!("{base}/events").parse().unwrap();
    Request::post_json(url, &json!({"stage": 1, "phase": "plan"}))
        .unwrap()
        .secret_header("authorization", &format!("Bearer {token}"))
        .unwrap()
}

#[test]
fn post_json_sends_the_body_and_the_token_and_never_prints_it() {
    let (base, log) = serve(vec![Act::Status(204)]);
    let token = "whk-test-9f8e7d6c";
    let req = post(&base, token);
    assert!(!format!("{req:?}").contains(token), "{req:?}");
    let client = Client::new(RetryPolicy::report(), None).unwrap();
    let got = run(client.fetch(&req, Deadline::after(Duration::from_secs(20)))).unwrap();
    assert_eq!(got.map(|b| b.status), Some(204));
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/events")
    );
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[0].header("authorization"),
        Some(&*format!("Bearer {token}"))
    );
    assert_eq!(seen[0].json(), json!({"stage": 1, "phase": "plan"}));
}

#[test]
fn the_report_policy_retries_transient_answers_three_times_at_most() {
    let client = Client::new(RetryPolicy::report(), None).unwrap();
    let deadline = || Deadline::after(Duration::from_secs(20));

    let (base, log) = serve(vec![Act::Status(503), Act::Status(204)]);
    assert!(run(client.fetch(&post(&base, "t"), deadline())).is_ok());
    assert_eq!(log.lock().unwrap().len(), 2, "one retry after a 503");

    let (base, log) = serve(vec![Act::Status(503)]);
    let err = run(client.fetch(&post(&base, "t"), deadline())).unwrap_err();
    assert_eq!(log.lock().unwrap().len(), 3, "{err}");
    assert!(err.to_string().contains("3 attempts"), "{err}");

    let (base, log) = serve(vec![Act::Status(401)]);
    let err = run(client.fetch(&post(&base, "secret-token"), deadline())).unwrap_err();
    assert_eq!(log.lock().unwrap().len(), 1, "a 401 is final");
    assert!(!err.to_string().contains("secret-token"), "{err}");
    // Every seen request carried the same body: it is sent again with each attempt.
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .all(|s| s.json()["phase"] == "plan"));
}

#[test]
fn the_reporter_sends_held_and_later_events_in_order_with_identity_and_token() {
    let (base, log) = serve(vec![Act::Status(204)]);
    let mem = MemorySink::default();
    let mut r = Reporter::new(1, vec![Box::new(mem.clone())]);
    // Before the targets are known (stage 1 learns the cloud in its first phase).
    r.event("plan", 1, 5, Status::Running, "identifying", None);
    r.set_identity(Some("i-123".into()), Some("web-1".into()));
    r.start_remote(RemoteTargets {
        webhook_url: Some(HttpUrl::try_from(format!("{base}/events")).unwrap()),
        webhook_token: Some(Secret::new("whk-abc")),
        gcp_metadata_base: Some(base.clone()),
    });
    r.network_ready();
    r.event("download", 2, 5, Status::Running, "downloading", None);
    r.event(
        "download",
        2,
        5,
        Status::Failed,
        "stopped",
        Some(&Error::Verification("sha256 mismatch".into())),
    );
    r.finish(Duration::from_secs(20));

    assert_eq!(
        mem.lines(),
        [
            "nixos-lift: [1/5] identifying ...",
            "nixos-lift: [2/5] downloading ...",
            "nixos-lift: failed at [2/5] download: sha256 mismatch",
        ]
    );
    let seen = log.lock().unwrap().clone();
    let hooks: Vec<&Seen> = seen.iter().filter(|s| s.path == "/events").collect();
    let events: Vec<(String, String)> = hooks
        .iter()
        .map(|s| {
            let b = s.json();
            (
                b["phase"].as_str().unwrap().into(),
                b["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("plan".into(), "running".into()),
            ("download".into(), "running".into()),
            ("download".into(), "failed".into())
        ]
    );
    for s in &hooks {
        assert_eq!(s.header("authorization"), Some("Bearer whk-abc"));
        let b = s.json();
        assert_eq!(
            (b["stage"].clone(), b["total"].clone()),
            (json!(1), json!(5))
        );
        // The held event got the identity learned after it.
        assert_eq!(
            (b["instance_id"].clone(), b["hostname"].clone()),
            (json!("i-123"), json!("web-1"))
        );
    }
    assert_eq!(hooks[2].json()["error"], "sha256 mismatch");
    assert_eq!(hooks[2].json()["reason"], "sha256-mismatch");
    assert_eq!(hooks[1].json()["reason"], Value::Null);

    let attrs: Vec<(String, Option<String>)> = seen
        .iter()
        .filter(|s| s.path != "/events")
        .map(|s| {
            assert_eq!(s.method, "PUT");
            assert_eq!(
                s.path,
                "/computeMetadata/v1/instance/guest-attributes/nixos-lift/status"
            );
            assert_eq!(
                s.header("authorization"),
                None,
                "the token goes to the webhook only"
            );
            (
                String::from_utf8(s.body.clone()).unwrap(),
                s.header("metadata-flavor").map(str::to_string),
            )
        })
        .collect();
    let google = Some("Google".to_string());
    assert_eq!(
        attrs,
        [
            ("1/5 plan".to_string(), google.clone()),
            ("2/5 download".to_string(), google.clone()),
            ("failed download".to_string(), google)
        ]
    );
}

#[test]
fn a_receiver_that_never_answers_costs_only_the_bounded_waits() {
    let (base, log) = serve(vec![Act::Hang]);
    let mut r = Reporter::new(1, Vec::new());
    r.start_remote(RemoteTargets {
        webhook_url: Some(HttpUrl::try_from(format!("{base}/events")).unwrap()),
        ..RemoteTargets::default()
    });
    r.network_ready();
    r.event("kexec", 4, 5, Status::Running, "loading", None);
    r.event("jump", 5, 5, Status::Running, "jumping", None);
    // One event alone takes 3 attempts of 5 s against this receiver.
    let t = Instant::now();
    r.flush(Duration::from_secs(1));
    let flushed = t.elapsed();
    r.finish(Duration::from_secs(1));
    let finished = t.elapsed();
    assert!(flushed < Duration::from_secs(4), "flush took {flushed:?}");
    assert!(
        finished < Duration::from_secs(8),
        "flush and finish took {finished:?}"
    );
    assert!(!log.lock().unwrap().is_empty(), "the event was attempted");
}

#[test]
fn run_sends_stage_one_failed_event_when_a_guard_refuses() {
    let (base, log) = serve(vec![Act::Status(204)]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    // 64 TiB of RAM: the memory guard refuses on any machine, before the download starts.
    std::fs::write(&config, format!(
        "version: 1\nflake: \"github:me/fleet#x\"\nmin_memory: 64TiB\ninstaller:\n  url: \"http://127.0.0.1:9/never-{{arch}}\"\n  sha256:\n    x86_64: \"{0}\"\n    aarch64: \"{0}\"\nreport:\n  webhook_url: \"{base}/events\"\n",
        "a".repeat(64))).unwrap();
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["run", "--metadata-timeout", "0", "--config"])
        .arg(&config)
        .env("NIXOS_LIFT_DETACHED", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{stderr}");
    // The console lines in the documented shape, bare (no log level, no fields).
    assert!(
        stderr.lines().any(|l| l == "nixos-lift: [1/5] identifying this machine and its cloud, and checking the guards ..."),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|l| l
            .starts_with("nixos-lift: failed at [1/5] plan: refusing to install NixOS: ")
            && l.contains("memory")),
        "{stderr}"
    );
    let seen = log.lock().unwrap().clone();
    let events: Vec<Value> = seen.iter().map(Seen::json).collect();
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{}:{}:{}",
                e["stage"],
                e["phase"].as_str().unwrap(),
                e["status"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(summary, ["1:plan:running", "1:plan:failed"], "{stderr}");
    assert!(
        events[1]["error"].as_str().unwrap().contains("memory"),
        "{}",
        events[1]
    );
    assert_eq!(events[1]["reason"], "guard-refused", "{}", events[1]);
    assert_eq!(events[1]["step"], 1);
    assert_eq!(events[1]["total"], 5);
}
