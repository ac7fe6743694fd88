//! Fetching the installer: sha256 verified before use, both tarball layouts unpacked, and `run`
//! refusing before any download. Nothing here loads a kernel: `run` stops at its guards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use nixos_lift::fetch::{download, extract::extract, hex};
use sha2::Digest;

fn tarball(dir: &Path, files: &[(&str, &[u8])]) -> std::path::PathBuf {
    let path = dir.join("installer.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, name, *data).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

const RUN: &[u8] = b"#!/bin/sh\nkexec --load bzImage --command-line \"init=/nix/store/x-system/init console=tty0 console=ttyS0,115200\"\n";

#[test]
fn nixos_images_layout() {
    let dir = tempfile::tempdir().unwrap();
    let tb = tarball(
        dir.path(),
        &[
            ("kexec/bzImage", b"kernel"),
            ("kexec/initrd", b"initrd"),
            ("kexec/run", RUN),
            ("kexec/kexec", b"\x7fELF"),
            ("kexec/ip", b"\x7fELF"),
        ],
    );
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let inst = extract(&tb, &out).unwrap();
    assert_eq!(inst.layout, "nixos-images");
    assert_eq!(
        inst.cmdline,
        "init=/nix/store/x-system/init console=tty0 console=ttyS0,115200"
    );
    assert_eq!(std::fs::read(&inst.kernel).unwrap(), b"kernel");
    assert_eq!(std::fs::read(&inst.initrd).unwrap(), b"initrd");
    assert!(inst.kexec_tool.is_some());
}

#[test]
fn manifest_layout() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = br#"{"version":1,"kernel":"kexec/Image","initrd":"kexec/initrd.zst","init":"/nix/store/y/init","kernel_params":["console=ttyS0,115200"],"cmdline":"init=/nix/store/y/init console=ttyS0,115200"}"#;
    let tb = tarball(
        dir.path(),
        &[
            ("./kexec/manifest.json", manifest),
            ("./kexec/Image", b"kernel"),
            ("./kexec/initrd.zst", b"initrd"),
        ],
    );
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let inst = extract(&tb, &out).unwrap();
    assert_eq!(inst.layout, "nixos-lift manifest");
    assert_eq!(inst.cmdline, "init=/nix/store/y/init console=ttyS0,115200");
    assert!(inst.kexec_tool.is_none());
    assert!(inst.kernel.ends_with("kexec/Image"));
}

#[test]
fn missing_kernel_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tb = tarball(dir.path(), &[("kexec/initrd", b"x"), ("kexec/run", RUN)]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let err = extract(&tb, &out).unwrap_err().to_string();
    assert!(err.contains("bzImage"), "{err}");
}

#[test]
fn sha256_mismatch_is_refused_and_removes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    std::fs::write(&src, b"installer bytes").unwrap();
    let good = hex(&sha2::Sha256::digest(b"installer bytes"));
    let url = format!("file://{}", src.display());
    let dest = dir.path().join("dl");
    let ok = download(&url, &dest, Some(&good), 1 << 20).unwrap();
    assert_eq!(ok.sha256, good);
    std::fs::remove_file(&dest).unwrap();
    let err = download(&url, &dest, Some(&"0".repeat(64)), 1 << 20).unwrap_err();
    assert_eq!(err.reason(), "sha256-mismatch");
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains(&good));
    assert!(!dest.exists());
    let err = download(&url, &dest, None, 4).unwrap_err();
    assert!(err.to_string().contains("cap"), "{err}");
}

#[test]
fn http_download_verifies_against_a_local_server() {
    use std::io::{Read, Write};
    let body = vec![7u8; 300_000];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = body.clone();
    // First connection: 503 (transient), second: a body cut short, third: Range resume.
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().take(3).enumerate() {
            let mut s = stream.unwrap();
            let mut req = [0u8; 2048];
            let len = s.read(&mut req).unwrap();
            let req = String::from_utf8_lossy(&req[..len]).to_string();
            match n {
                0 => {
                    let _ = s.write_all(
                        b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                }
                1 => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        served.len()
                    );
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(&served[..100_000]);
                }
                _ => {
                    assert!(
                        req.to_ascii_lowercase().contains("range: bytes=100000-"),
                        "{req}"
                    );
                    let rest = &served[100_000..];
                    let head = format!("HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes 100000-{}/{}\r\nconnection: close\r\n\r\n", rest.len(), served.len() - 1, served.len());
                    let _ = s.write_all(head.as_bytes());
                    let _ = s.write_all(rest);
                }
            }
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("dl");
    let want = hex(&sha2::Sha256::digest(&body));
    let got = download(
        &format!("http://{addr}/i.tar.gz"),
        &dest,
        Some(&want),
        1 << 30,
    )
    .unwrap();
    assert_eq!(got.bytes, body.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
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
