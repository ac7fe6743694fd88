//! Fetching the installer in one pass: download, sha256 and unpacking together, both tarball
//! layouts, nothing kept unless the digest matches, and resume over HTTP against a loopback
//! server that drops, refuses and redirects. `run` refusing before any download closes it.
//! Nothing here loads a kernel: `run` stops at its guards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use assert_cmd::cargo::CommandCargoExt;
use nixos_lift::config::{InstallerSource, Sha256};
use nixos_lift::fetch::extract::Layout;
use nixos_lift::fetch::{fetch_installer, hex};

mod common;
use common::upstream::{substituted, PARAMS, TOPLEVEL};
use sha2::Digest;

fn tarball_bytes(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        // The raw name, so that a hostile `../` name can be written too.
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append(&header, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Incompressible bytes (xorshift), so the gzip stream is as long as the data.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn digest(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// [`fetch_installer`]'s pin and source, checked as the config checks them.
fn pin(hex: String) -> Sha256 {
    Sha256::try_from(hex).unwrap()
}

fn source(url: String) -> InstallerSource {
    InstallerSource::try_from(url).unwrap()
}

/// Writes `bytes` as a file and returns its `file://` URL.
fn local(dir: &Path, bytes: &[u8]) -> String {
    let path = dir.join("installer.tar.gz");
    std::fs::write(&path, bytes).unwrap();
    format!("file://{}", path.display())
}

/// Every file under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

const RUN: &[u8] = b"#!/bin/sh\nkexec --load bzImage --command-line \"init=/nix/store/x-system/init console=tty0 console=ttyS0,115200\"\n";

fn nixos_images(kernel: &[u8], initrd: &[u8]) -> Vec<u8> {
    tarball_bytes(&[
        ("kexec/bzImage", kernel),
        ("kexec/initrd", initrd),
        ("kexec/ip", b"\x7fELF ip"),
        ("kexec/kexec", b"\x7fELF kexec"),
        ("kexec/run", RUN),
        ("README.md", b"not under kexec/"),
        ("../escape", b"outside"),
    ])
}

#[test]
fn nixos_images_layout_keeps_only_what_stage1_uses() {
    let dir = tempfile::tempdir().unwrap();
    let tb = nixos_images(b"kernel", b"initrd");
    let staging = dir.path().join("staging");
    let got = fetch_installer(
        &source(local(dir.path(), &tb)),
        Some(&pin(digest(&tb))),
        &staging,
        1 << 30,
    )
    .unwrap();
    let inst = got.installer;
    assert_eq!(inst.layout, Layout::NixosImages);
    assert_eq!(
        inst.cmdline,
        "init=/nix/store/x-system/init console=tty0 console=ttyS0,115200"
    );
    assert_eq!(std::fs::read(&inst.kernel).unwrap(), b"kernel");
    assert_eq!(std::fs::read(&inst.initrd).unwrap(), b"initrd");
    assert_eq!(
        std::fs::read(inst.kexec_tool.unwrap()).unwrap(),
        b"\x7fELF kexec"
    );
    // kexec/ip, kexec/run, the member outside kexec/ and the escaping one are gone or never written.
    assert_eq!(
        files(&staging),
        ["kexec/bzImage", "kexec/initrd", "kexec/kexec"]
    );
    assert!(!dir.path().join("escape").exists());
    assert_eq!(got.bytes, tb.len() as u64);
    assert_eq!(got.sha256, digest(&tb));
}

#[test]
fn manifest_layout_sorted_after_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = br#"{"version":1,"kernel":"kexec/Image","initrd":"kexec/initrd.zst","init":"/nix/store/y/init","kernel_params":["console=ttyS0,115200"],"cmdline":"init=/nix/store/y/init console=ttyS0,115200"}"#;
    // nix/installer sorts by name: the manifest comes after the kernel and the initrd.
    let tb = tarball_bytes(&[
        ("./kexec/Image", b"kernel"),
        ("./kexec/initrd.zst", b"initrd"),
        ("./kexec/manifest.json", manifest),
    ]);
    let staging = dir.path().join("staging");
    let inst = fetch_installer(
        &source(local(dir.path(), &tb)),
        Some(&pin(digest(&tb))),
        &staging,
        1 << 30,
    )
    .unwrap()
    .installer;
    assert_eq!(inst.layout, Layout::Manifest);
    assert_eq!(inst.cmdline, "init=/nix/store/y/init console=ttyS0,115200");
    assert!(inst.kexec_tool.is_none());
    assert!(inst.kernel.ends_with("kexec/Image"));
    assert_eq!(files(&staging), ["kexec/Image", "kexec/initrd.zst"]);
}

#[test]
fn missing_kernel_is_an_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tb = tarball_bytes(&[("kexec/initrd", b"x"), ("kexec/run", RUN)]);
    let staging = dir.path().join("staging");
    let err = fetch_installer(
        &source(local(dir.path(), &tb)),
        Some(&pin(digest(&tb))),
        &staging,
        1 << 30,
    )
    .unwrap_err();
    assert_eq!(err.reason(), "installer-invalid", "{err}");
    assert!(err.to_string().contains("bzImage"), "{err}");
    assert!(!staging.exists());
}

#[test]
fn sha256_mismatch_is_refused_and_removes_the_staging_dir() {
    let dir = tempfile::tempdir().unwrap();
    let tb = nixos_images(b"kernel", b"initrd");
    let url = local(dir.path(), &tb);
    let staging = dir.path().join("staging");
    let err = fetch_installer(
        &source(url.clone()),
        Some(&pin("0".repeat(64))),
        &staging,
        1 << 30,
    )
    .unwrap_err();
    assert_eq!(err.reason(), "sha256-mismatch");
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains(&digest(&tb)), "{err}");
    assert!(!staging.exists());
    let err = fetch_installer(&source(url), None, &staging, 100).unwrap_err();
    assert_eq!(err.reason(), "body-too-large", "{err}");
    assert!(!staging.exists());
}

#[test]
fn a_wrong_file_is_reported_as_a_digest_mismatch_not_as_bad_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let page = b"<html>404 but served as 200</html>".repeat(1000);
    let staging = dir.path().join("staging");
    let want = digest(&nixos_images(b"k", b"i"));
    let err = fetch_installer(
        &source(local(dir.path(), &page)),
        Some(&pin(want)),
        &staging,
        1 << 30,
    )
    .unwrap_err();
    assert_eq!(err.reason(), "sha256-mismatch", "{err}");
    assert!(!staging.exists());
}

#[test]
fn a_pinned_but_truncated_tarball_fails_to_unpack_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tb = nixos_images(&noise(200_000, 1), b"initrd");
    let cut = &tb[..tb.len() / 2];
    let staging = dir.path().join("staging");
    let err = fetch_installer(
        &source(local(dir.path(), cut)),
        Some(&pin(digest(cut))),
        &staging,
        1 << 30,
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("unpacking the installer"), "{err}");
    assert!(!staging.exists());
}

/// What the loopback server does with one connection.
#[derive(Clone)]
enum Act {
    Status(u16),
    /// 200 with the full length announced, then the connection closes after this many bytes.
    CutAt(usize),
    /// 206 from the requested offset (or 200 without Range).
    HonourRange,
    /// 200 with the whole body, Range or not.
    IgnoreRange,
    /// 206 claiming an offset other than the one requested.
    WrongRange,
    Redirect(&'static str),
}

/// Serves `body` on loopback, one act per connection (the last repeats); records the requests.
fn serve(body: Vec<u8>, acts: Vec<Act>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let mut s = stream.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let req = String::from_utf8_lossy(&head).to_ascii_lowercase();
            seen.lock().unwrap().push(req.clone());
            let from: usize = req
                .split("range: bytes=")
                .nth(1)
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let len = body.len();
            let act = acts[n.min(acts.len() - 1)].clone();
            let (head, data): (String, &[u8]) = match act {
                Act::Status(code) => (format!("HTTP/1.1 {code} X\r\ncontent-length: 0\r\n"), &[]),
                Act::CutAt(at) => (
                    format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n"),
                    &body[..at],
                ),
                Act::HonourRange if from > 0 => (
                    format!(
                        "HTTP/1.1 206 Partial\r\ncontent-length: {}\r\ncontent-range: bytes {from}-{}/{len}\r\n",
                        len - from,
                        len - 1
                    ),
                    &body[from..],
                ),
                Act::HonourRange | Act::IgnoreRange => {
                    (format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n"), &body)
                }
                Act::WrongRange => (
                    format!(
                        "HTTP/1.1 206 Partial\r\ncontent-length: {len}\r\ncontent-range: bytes 0-{}/{len}\r\n",
                        len - 1
                    ),
                    &body,
                ),
                Act::Redirect(to) => (
                    format!("HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\n"),
                    &[],
                ),
            };
            let _ = s.write_all(format!("{head}connection: close\r\n\r\n").as_bytes());
            let _ = s.write_all(data);
        }
    });
    (addr, log)
}

/// An installer whose kernel and initrd are incompressible, so a cut lands inside them.
fn big_installer() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let kernel = noise(150_000, 7);
    let initrd = noise(400_000, 9);
    (nixos_images(&kernel, &initrd), kernel, initrd)
}

fn fetch_from(addr: SocketAddr, path: &str, tb: &[u8]) -> (nixos_lift::Result<PathBuf>, PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let staging = dir.join("staging");
    let got = fetch_installer(
        &source(format!("http://{addr}{path}")),
        Some(&pin(digest(tb))),
        &staging,
        1 << 30,
    )
    .map(|f| f.installer.initrd);
    (got, dir)
}

#[test]
fn http_resume_continues_the_hash_and_the_unpacking() {
    let (tb, kernel, initrd) = big_installer();
    // A transient 503, then a body cut inside the initrd, then a Range resume.
    let cut = tb.len() / 2;
    let (addr, log) = serve(
        tb.clone(),
        vec![Act::Status(503), Act::CutAt(cut), Act::HonourRange],
    );
    let (got, dir) = fetch_from(addr, "/i.tar.gz", &tb);
    let initrd_path = got.unwrap();
    assert_eq!(std::fs::read(&initrd_path).unwrap(), initrd);
    assert_eq!(
        std::fs::read(dir.join("staging/kexec/bzImage")).unwrap(),
        kernel
    );
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    assert!(
        log[2].contains(&format!("range: bytes={cut}-")),
        "{}",
        log[2]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn http_resume_skips_what_a_server_ignoring_range_sends_again() {
    let (tb, _, initrd) = big_installer();
    let (addr, log) = serve(tb.clone(), vec![Act::CutAt(tb.len() / 3), Act::IgnoreRange]);
    let (got, dir) = fetch_from(addr, "/i.tar.gz", &tb);
    assert_eq!(std::fs::read(got.unwrap()).unwrap(), initrd);
    assert_eq!(log.lock().unwrap().len(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn http_resume_at_the_wrong_offset_is_refused() {
    let (tb, _, _) = big_installer();
    let (addr, _) = serve(tb.clone(), vec![Act::CutAt(tb.len() / 3), Act::WrongRange]);
    let (got, dir) = fetch_from(addr, "/i.tar.gz", &tb);
    let err = got.unwrap_err();
    assert_eq!(err.reason(), "network", "{err}");
    assert!(err.to_string().contains("asked to resume at byte"), "{err}");
    assert!(!dir.join("staging").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn http_redirects_are_followed_up_to_a_limit() {
    let (tb, _, initrd) = big_installer();
    let (addr, log) = serve(
        tb.clone(),
        vec![Act::Redirect("/cdn/i.tar.gz"), Act::HonourRange],
    );
    let (got, dir) = fetch_from(addr, "/release/i.tar.gz", &tb);
    assert_eq!(std::fs::read(got.unwrap()).unwrap(), initrd);
    assert!(log.lock().unwrap()[1].starts_with("get /cdn/i.tar.gz"));
    std::fs::remove_dir_all(dir).unwrap();

    let (addr, log) = serve(tb.clone(), vec![Act::Redirect("/again")]);
    let (got, dir) = fetch_from(addr, "/again", &tb);
    let err = got.unwrap_err();
    assert_eq!(err.reason(), "network", "{err}");
    assert!(err.to_string().contains("more than 5 redirects"), "{err}");
    assert_eq!(log.lock().unwrap().len(), 6);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn http_fatal_status_is_not_retried() {
    let (tb, _, _) = big_installer();
    let (addr, log) = serve(tb.clone(), vec![Act::Status(403)]);
    let (got, dir) = fetch_from(addr, "/i.tar.gz", &tb);
    let err = got.unwrap_err();
    assert_eq!(err.reason(), "http-status", "{err}");
    assert_eq!(log.lock().unwrap().len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn fetch_installer_command_prints_the_layout_or_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tb = nixos_images(b"kernel", b"initrd");
    let url = local(dir.path(), &tb);
    let dest = dir.path().join("dest");
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args([
            "fetch-installer",
            "--format",
            "json",
            "--url",
            &url,
            "--sha256",
        ])
        .arg(digest(&tb))
        .arg("--dest")
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["installer"]["layout"], "nixos-images");
    assert_eq!(json["verified"], true);
    assert_eq!(json["sha256"], digest(&tb));
    assert_eq!(
        files(&dest),
        ["kexec/bzImage", "kexec/initrd", "kexec/kexec"]
    );

    let again = dir.path().join("again");
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["fetch-installer", "--url", &url, "--sha256"])
        .arg("f".repeat(64))
        .arg("--dest")
        .arg(&again)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sha256 mismatch"));
    assert!(!again.exists());
}

#[test]
fn fetch_installer_reports_the_upstream_scripts_whole_cmdline() {
    let dir = tempfile::tempdir().unwrap();
    let tb = tarball_bytes(&[
        ("kexec/bzImage", b"kernel"),
        ("kexec/initrd", b"initrd"),
        ("kexec/kexec", b"\x7fELF kexec"),
        ("kexec/run", substituted(&PARAMS).as_bytes()),
    ]);
    let url = local(dir.path(), &tb);
    // The real upstream script, with nixos-images' own x86_64 parameters.
    let cmdline = format!("init={TOPLEVEL}/init {}", PARAMS.join(" "));
    let cmdline = cmdline.as_str();
    for (format, dest) in [("json", "json"), ("text", "text")] {
        let out = Command::cargo_bin("nixos-lift")
            .unwrap()
            .args([
                "fetch-installer",
                "--format",
                format,
                "--url",
                &url,
                "--sha256",
            ])
            .arg(digest(&tb))
            .arg("--dest")
            .arg(dir.path().join(dest))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if format == "json" {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(json["installer"]["layout"], "nixos-images");
            assert_eq!(json["installer"]["cmdline"], cmdline);
        } else {
            assert!(
                stdout.contains(&format!("\ncmdline: {cmdline}")),
                "{stdout}"
            );
        }
    }
}

#[test]
fn run_refuses_before_any_download() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    // 64 TiB of RAM: the memory guard refuses on any machine, before the download starts.
    std::fs::write(&config, format!(
        "version: 1\nflake: \"github:me/fleet#x\"\nmin_memory: 64TiB\ninstaller:\n  url: \"http://127.0.0.1:9/never-{{arch}}\"\n  sha256:\n    x86_64: \"{0}\"\n    aarch64: \"{0}\"\n",
        "a".repeat(64))).unwrap();
    let out = Command::cargo_bin("nixos-lift")
        .unwrap()
        .args(["run", "--config"])
        .arg(&config)
        .env("NIXOS_LIFT_DETACHED", "1")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(10),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory"));
}

#[test]
fn the_installer_size_is_asked_with_a_head_before_any_download() {
    use nixos_lift::fetch::installer_size;
    let body = noise(123_457, 3);
    let (addr, log) = serve(body.clone(), vec![Act::HonourRange]);
    let size = installer_size(&source(format!("http://{addr}/installer.tar.gz")));
    assert_eq!(size.bytes, body.len() as u64);
    assert_eq!(size.source, "Content-Length");
    let requests = log.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(
        requests[0].starts_with("head /installer.tar.gz "),
        "{requests:?}"
    );

    // A server that does not say: the largest installer is assumed, and why.
    let (addr, _) = serve(body.clone(), vec![Act::Status(405)]);
    let size = installer_size(&source(format!("http://{addr}/installer.tar.gz")));
    assert_eq!(size.bytes, nixos_lift::plan::memory::ASSUMED_INSTALLER);
    assert!(
        size.source.starts_with("assumed: HEAD: "),
        "{}",
        size.source
    );
    assert!(size.source.contains("405"), "{}", size.source);

    let dir = tempfile::tempdir().unwrap();
    let size = installer_size(&source(local(dir.path(), &body)));
    assert_eq!(
        (size.bytes, size.source.as_str()),
        (body.len() as u64, "file size")
    );
}
