//! How the HTTP policy (src/http.rs) classifies transport failures, against local servers:
//! a TLS certificate that cannot be trusted is fatal at once and named in the one-line error;
//! a refused connection, a reset and a server that never answers are retried until the deadline,
//! whose error then names the last cause.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;
use nixos_lift::http::{Client, Deadline, Request, RetryPolicy};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use reqwest::Url;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// What the TLS server saw: one entry per connection, "handshake ok" or "handshake failed: …".
type Seen = Arc<Mutex<Vec<String>>>;

/// A loopback HTTPS server presenting `cert` (signed with `key`); each connection that
/// completes the handshake gets a 404. Runs until the test process ends.
fn tls_server(cert: CertificateDer<'static>, key: &KeyPair) -> (SocketAddr, Seen) {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut outcome = Ok(());
            while conn.is_handshaking() {
                match conn.complete_io(&mut tcp) {
                    Ok((0, 0)) => outcome = Err("connection closed".to_string()),
                    Ok(_) => continue,
                    Err(e) => outcome = Err(e.to_string()),
                }
                break;
            }
            match outcome {
                Ok(()) => {
                    log.lock().unwrap().push("handshake ok".into());
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf);
                    let _ = tls.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
                Err(e) => log.lock().unwrap().push(format!("handshake failed: {e}")),
            }
        }
    });
    (addr, seen)
}

/// What the server saw, once it has logged the connections the client made (it records each
/// handshake's outcome as the client hangs up, which can be just after the client exits).
fn settled(seen: &Seen) -> Vec<String> {
    let start = Instant::now();
    while seen.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    seen.lock().unwrap().clone()
}

fn ca() -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "nixos-lift test CA");
    (params.self_signed(&key).unwrap(), key)
}

/// A leaf for `names`, signed by `ca` when given, else self-signed.
fn leaf(
    names: &[&str],
    ca: Option<&(rcgen::Certificate, KeyPair)>,
    edit: impl FnOnce(&mut CertificateParams),
) -> (CertificateDer<'static>, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    edit(&mut params);
    let cert = match ca {
        Some((ca_cert, ca_key)) => params.signed_by(&key, ca_cert, ca_key).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    (cert.der().clone(), key)
}

struct Run {
    code: i32,
    stderr: String,
    elapsed: Duration,
}

/// `detect --provider hetzner` with its metadata at `https://addr`, trusting only `ca_file`'s
/// certificates besides the built-in roots.
fn detect_over_tls(addr: SocketAddr, ca_file: &Path) -> Run {
    let root =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts/hetzner-x86_64");
    let start = Instant::now();
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args([
            "detect",
            "--format",
            "json",
            "--provider",
            "hetzner",
            "--root",
        ])
        .arg(root)
        .arg("--metadata-base")
        .arg(format!("https://{addr}"))
        .args(["--metadata-timeout", "20"])
        .env("SSL_CERT_FILE", ca_file)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

/// Runs detect against a server presenting `cert`, trusting `ca`, and checks that it failed at
/// once, after one handshake, with a one-line error naming `cause`.
fn assert_certificate_refused(cert: (CertificateDer<'static>, KeyPair), ca_pem: &str, cause: &str) {
    let (addr, seen) = tls_server(cert.0, &cert.1);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let run = detect_over_tls(addr, &ca_file);
    assert_eq!(run.code, 1, "detect must fail: {}", run.stderr);
    let expected =
        format!("TLS certificate verification failed: invalid peer certificate: {cause}");
    let error_line = run
        .stderr
        .lines()
        .find(|l| l.contains(&expected))
        .unwrap_or_else(|| panic!("no line says {expected:?}: {}", run.stderr));
    assert!(
        error_line.contains(&format!("https://{addr}/hetzner/v1/")),
        "the error names the URL: {error_line}"
    );
    assert!(
        !run.stderr.contains("no answer within"),
        "a certificate error is not a timeout: {}",
        run.stderr
    );
    let seen = settled(&seen);
    assert_eq!(seen.len(), 1, "one handshake, not retried: {seen:?}");
    assert!(seen[0].starts_with("handshake failed"), "{seen:?}");
    assert!(
        run.elapsed < Duration::from_secs(10),
        "failed at once, not at the 20 s deadline: {:?}",
        run.elapsed
    );
}

#[test]
fn a_self_signed_certificate_is_fatal_and_named() {
    // The trust file holds an unrelated CA: the server's self-signed certificate is unknown.
    let (other_ca, _) = ca();
    let cert = leaf(&["127.0.0.1"], None, |_| {});
    assert_certificate_refused(cert, &other_ca.pem(), "UnknownIssuer");
}

#[test]
fn an_expired_certificate_is_fatal_and_named() {
    let ca = ca();
    let cert = leaf(&["127.0.0.1"], Some(&ca), |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    assert_certificate_refused(cert, &ca.0.pem(), "certificate expired");
}

#[test]
fn a_certificate_for_another_name_is_fatal_and_named() {
    let ca = ca();
    let cert = leaf(&["metadata.example.org"], Some(&ca), |_| {});
    assert_certificate_refused(
        cert,
        &ca.0.pem(),
        "certificate not valid for name \"127.0.0.1\"",
    );
}

#[test]
fn a_trusted_certificate_gets_through_the_handshake() {
    // The control for the three refusals: the same server and trust file set-up works when the
    // certificate is sound, so they fail for the reason they name.
    let ca = ca();
    let cert = leaf(&["127.0.0.1"], Some(&ca), |_| {});
    let (addr, seen) = tls_server(cert.0, &cert.1);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.0.pem()).unwrap();
    let run = detect_over_tls(addr, &ca_file);
    assert!(!run.stderr.contains("TLS"), "{}", run.stderr);
    let seen = settled(&seen);
    assert!(
        seen.first().is_some_and(|s| s == "handshake ok"),
        "{seen:?}"
    );
}

/// A server that accepts connections and treats each with `act`, counting them.
fn tcp_server(act: fn(TcpStream)) -> (SocketAddr, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(Mutex::new(0u32));
    let seen = count.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            *seen.lock().unwrap() += 1;
            std::thread::spawn(move || act(tcp));
        }
    });
    (addr, count)
}

/// The server's connection count once it reaches `want`, or after 2 s: its accept thread can
/// lag behind the client's connects (the kernel's backlog) on a loaded machine.
fn connections(count: &Arc<Mutex<u32>>, want: u32) -> u32 {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let n = *count.lock().unwrap();
        if n >= want || Instant::now() >= until {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fetches `url` with the metadata policy under a short deadline (so retries are quick) and
/// returns the error's message.
fn fetch_error(url: &str, deadline: Duration) -> String {
    let mut policy = RetryPolicy::metadata();
    policy.request_timeout = Duration::from_millis(500);
    policy.backoff_initial = Duration::from_millis(50);
    policy.backoff_max = Duration::from_millis(200);
    let client = Client::new(policy, None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let req = Request::get(Url::parse(url).unwrap());
    match rt.block_on(client.fetch(&req, Deadline::after(deadline))) {
        Ok(body) => panic!("{url}: expected an error, got {body:?}"),
        Err(e) => {
            assert_eq!(e.reason(), "timeout", "transient until the deadline: {e}");
            e.to_string()
        }
    }
}

#[test]
fn a_refused_connection_is_retried_and_named_at_the_deadline() {
    // A port nobody listens on: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let msg = fetch_error(
        &format!("http://127.0.0.1:{port}/meta"),
        Duration::from_secs(2),
    );
    assert!(msg.contains("no answer within the 2s deadline"), "{msg}");
    assert!(
        msg.contains("last attempt:") && msg.to_lowercase().contains("connection refused"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");
}

#[test]
fn a_reset_connection_is_retried() {
    let (addr, count) = tcp_server(|tcp| {
        // Wait for the request, then reset (linger 0 turns the close into an RST).
        let mut buf = [0u8; 1024];
        let mut tcp = tcp;
        let _ = tcp.read(&mut buf);
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        nix::sys::socket::setsockopt(&tcp, nix::sys::socket::sockopt::Linger, &linger).unwrap();
        drop(tcp);
    });
    let msg = fetch_error(&format!("http://{addr}/meta"), Duration::from_secs(2));
    assert!(msg.contains("last attempt:"), "{msg}");
    let n = connections(&count, 2);
    assert!(n >= 2, "a reset is retried: {n} connection(s); {msg}");
}

#[test]
fn a_server_that_never_answers_is_retried_until_the_deadline() {
    let (addr, count) = tcp_server(|tcp| {
        std::thread::sleep(Duration::from_secs(10));
        drop(tcp);
    });
    let started = Instant::now();
    let msg = fetch_error(&format!("http://{addr}/meta"), Duration::from_secs(3));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(msg.contains("timed out)"), "{msg}");
    let n = connections(&count, 2);
    assert!(n >= 2, "a timeout is retried: {n} connection(s); {msg}");
}
