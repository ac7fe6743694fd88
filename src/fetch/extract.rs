//! Unpacking the installer tarball as it streams in, and resolving its layout once the digest
//! matched: nixos-images' (`kexec/bzImage`, `kexec/initrd`, `kexec/run`, `kexec/kexec`) or
//! nixos-lift's (`kexec/manifest.json` naming the kernel, initrd, command line and `kexec`).

use std::fs::File;
use std::io::{BufRead, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::bufread::MultiGzDecoder;
use serde::Deserialize;

use crate::handoff::MANIFEST_FILE;
use crate::{Error, Result};

/// The directory both layouts keep everything in. Only regular files under it are written while
/// the tarball streams; the manifest cannot narrow that down then, because nix/installer sorts
/// the tarball by name and `kexec/manifest.json` arrives after the kernel and the initrd.
/// [`prune`] removes what the layout does not name once the digest matched.
const MEMBER_DIR: &str = "kexec";
/// More than any installer unpacks to (nixos-images' is ~470 MB); a gzip bomb stops here rather
/// than at a full tmpfs.
pub const MAX_UNPACKED: u64 = 4 << 30;

/// `kexec/manifest.json` in nixos-lift's own installer tarball, as `nix/installer` writes it.
/// Only the fields stage 1 needs are read; the build also records informational ones
/// (`name`, `system`, `init`, `kernel_params` as a list, ...), which a newer installer may extend.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub kernel: String,
    pub initrd: String,
    /// The whole kernel command line, `init=` included.
    pub cmdline: String,
    #[serde(default)]
    pub kexec: Option<String>,
}

/// The unpacked installer, all paths inside the work directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installer {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// The tarball's static kexec-tools, when it has one (fallback to `kexec_load`).
    pub kexec_tool: Option<PathBuf>,
    pub layout: &'static str,
}

/// Unpacks the gzip'd tar read from `input` into `dir`: regular files under `kexec/` whose
/// paths stay inside, nothing else. Reads `input` to its end, so that a caller hashing the same
/// bytes sees all of them, and checks the gzip trailer. Returns the bytes written.
pub fn unpack(input: impl BufRead, dir: &Path) -> Result<u64> {
    let ctx = |what: &str| format!("unpacking the installer: {what}");
    let mut archive = tar::Archive::new(MultiGzDecoder::new(input));
    let mut buf = vec![0u8; 256 << 10];
    let mut written = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| Error::io(ctx("reading the tarball"), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io(ctx("reading the tarball"), e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| Error::io(ctx("reading a member's name"), e))?
            .into_owned();
        let Some(rel) = clean(&path).filter(|rel| rel.starts_with(MEMBER_DIR)) else {
            continue;
        };
        let out = dir.join(&rel);
        let name = rel.display().to_string();
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(ctx(&name), e))?;
        }
        let mut dest = File::create(&out).map_err(|e| Error::io(ctx(&name), e))?;
        loop {
            let n = entry.read(&mut buf).map_err(|e| Error::io(ctx(&name), e))?;
            if n == 0 {
                break;
            }
            written += n as u64;
            if written > MAX_UNPACKED {
                return Err(Error::Other(ctx(&format!(
                    "more than {} MiB; not an installer",
                    MAX_UNPACKED >> 20
                ))));
            }
            dest.write_all(&buf[..n])
                .map_err(|e| Error::io(ctx(&name), e))?;
        }
    }
    // The tar's end is not the file's: read the rest, which also checks the gzip CRC.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())
        .map_err(|e| Error::io(ctx("reading past the tar's end"), e))?;
    Ok(written)
}

/// A relative path without `..`, `.` or root; `None` for anything else.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// The layout unpacked in `dir`; call it only after the digest matched.
pub fn resolve(dir: &Path) -> Result<Installer> {
    let missing = |what: &str| {
        Error::Other(format!(
            "unpacking the installer: {what} is missing; expected nixos-images' kexec/ layout or \
             kexec/manifest.json"
        ))
    };
    let inside = |rel: &str| -> Result<PathBuf> {
        let rel = clean(Path::new(rel)).ok_or_else(|| missing(rel))?;
        let path = dir.join(rel);
        path.is_file()
            .then_some(path.clone())
            .ok_or_else(|| missing(&path.display().to_string()))
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let installer = if manifest_path.is_file() {
        let text =
            std::fs::read(&manifest_path).map_err(|e| Error::io("reading the manifest", e))?;
        let m: Manifest = serde_json::from_slice(&text)
            .map_err(|e| Error::Other(format!("reading {MANIFEST_FILE}: {e}")))?;
        if m.version != 1 {
            return Err(Error::Other(format!(
                "{MANIFEST_FILE}: version {} (this agent reads 1)",
                m.version
            )));
        }
        Installer {
            kernel: inside(&m.kernel)?,
            initrd: inside(&m.initrd)?,
            cmdline: m.cmdline.trim().to_string(),
            kexec_tool: m.kexec.as_deref().map(inside).transpose()?,
            layout: "nixos-lift manifest",
        }
    } else {
        let run = std::fs::read_to_string(inside("kexec/run")?)
            .map_err(|e| Error::io("reading kexec/run", e))?;
        let cmdline = cmdline_from_run(&run).ok_or_else(|| missing("init= in kexec/run"))?;
        Installer {
            kernel: inside("kexec/bzImage")?,
            initrd: inside("kexec/initrd")?,
            cmdline,
            kexec_tool: inside("kexec/kexec").ok(),
            layout: "nixos-images",
        }
    };
    Ok(installer)
}

/// Removes the unpacked files `installer` does not use (nixos-images' `kexec/ip`, say), so that
/// only what stage 1 needs stays in RAM.
pub fn prune(dir: &Path, installer: &Installer) -> Result<()> {
    let keep: Vec<&Path> = [&installer.kernel, &installer.initrd]
        .into_iter()
        .chain(installer.kexec_tool.as_ref())
        .map(PathBuf::as_path)
        .collect();
    prune_dir(&dir.join(MEMBER_DIR), &keep)
}

fn prune_dir(dir: &Path, keep: &[&Path]) -> Result<()> {
    let ctx = || format!("tidying {}", dir.display());
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(ctx(), e))? {
        let path = entry.map_err(|e| Error::io(ctx(), e))?.path();
        if path.is_dir() {
            prune_dir(&path, keep)?;
        } else if !keep.contains(&path.as_path()) {
            std::fs::remove_file(&path).map_err(|e| Error::io(ctx(), e))?;
        }
    }
    Ok(())
}

/// The kernel command line in nixos-images' `kexec/run`: the quoted string starting `init=`.
pub fn cmdline_from_run(script: &str) -> Option<String> {
    let start = script.find("init=")?;
    let quote = script[..start]
        .chars()
        .next_back()
        .filter(|c| *c == '"' || *c == '\'');
    let rest = &script[start..];
    let end = match quote {
        Some(q) => rest.find(q)?,
        None => rest.find(['\n', ' ', '\t']).unwrap_or(rest.len()),
    };
    let line = rest[..end].trim().to_string();
    (line.len() > "init=".len()).then_some(line)
}

/// An arm64 kernel must be an uncompressed `Image` (magic `ARM\x64` at 0x38): both kexec
/// syscalls reject a compressed one with EINVAL, so refuse it here, before anything is loaded.
pub fn check_kernel(kernel: &Path, arch: &str) -> Result<()> {
    if arch != "aarch64" {
        return Ok(());
    }
    let mut head = Vec::with_capacity(64);
    File::open(kernel)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .map_err(|e| Error::io("reading the installer kernel", e))?;
    if head.get(0x38..0x3c) == Some(b"ARM\x64".as_slice()) {
        return Ok(());
    }
    let found = match compression(&head) {
        Some(kind) => format!("a kernel compressed with {kind}"),
        None => "no arm64 Image header (no ARM\\x64 magic at offset 0x38)".to_string(),
    };
    Err(Error::Refused {
        action: "kexec".into(),
        guard: "arm64-image",
        detail: format!(
            "found {found} in {}; needed an uncompressed arm64 Image; way out: build the \
             installer tarball with the kernel's Image, not Image.gz or vmlinuz.efi",
            kernel.file_name().unwrap_or_default().to_string_lossy()
        ),
    })
}

/// The compression a kernel file starts with, by its magic bytes.
fn compression(head: &[u8]) -> Option<&'static str> {
    const MAGICS: [(&[u8], &str); 5] = [
        (&[0x1f, 0x8b], "gzip"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
        (b"BZh", "bzip2"),
    ];
    // CONFIG_EFI_ZBOOT: a PE image ("MZ") whose payload is compressed ("zimg" at offset 4).
    if head.starts_with(b"MZ") && head.get(4..8) == Some(b"zimg".as_slice()) {
        return Some("EFI zboot");
    }
    MAGICS
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, kind)| *kind)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn run_script_params() {
        let script = "#!/bin/sh\nset -eux\n\"$SCRIPT_DIR\"/kexec --load \"$SCRIPT_DIR\"/bzImage \\\n  --initrd=\"$INITRD_TMP/initrd\" --no-checks \\\n  --command-line \"init=/nix/store/abc-nixos-system/init nouveau.modeset=0 console=tty0 console=ttyS0,115200 root=fstab loglevel=4\"\n";
        assert_eq!(
            cmdline_from_run(script).as_deref(),
            Some("init=/nix/store/abc-nixos-system/init nouveau.modeset=0 console=tty0 console=ttyS0,115200 root=fstab loglevel=4")
        );
        assert_eq!(cmdline_from_run("no init here"), None);
    }

    #[test]
    fn paths_stay_inside() {
        assert_eq!(
            clean(Path::new("./kexec/initrd")),
            Some(PathBuf::from("kexec/initrd"))
        );
        assert_eq!(clean(Path::new("../etc/passwd")), None);
        assert_eq!(clean(Path::new("/etc/passwd")), None);
    }

    fn kernel_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bzImage");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn arm64_kernel_must_be_an_uncompressed_image() {
        let mut image = vec![0u8; 128];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        let (_d, path) = kernel_file(&image);
        assert!(check_kernel(&path, "aarch64").is_ok());

        let (_d, path) = kernel_file(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let err = check_kernel(&path, "aarch64").unwrap_err();
        assert_eq!(err.reason(), "arm64-image");
        assert_eq!(err.exit_code(), crate::error::exit::REFUSED);
        let msg = err.to_string();
        assert!(
            msg.contains("found a kernel compressed with gzip in bzImage"),
            "{msg}"
        );
        assert!(msg.contains("needed an uncompressed arm64 Image"), "{msg}");
        assert!(msg.contains("way out: "), "{msg}");

        let mut zboot = b"MZ\0\0zimg".to_vec();
        zboot.resize(128, 0);
        let (_d, path) = kernel_file(&zboot);
        let msg = check_kernel(&path, "aarch64").unwrap_err().to_string();
        assert!(
            msg.contains("found a kernel compressed with EFI zboot"),
            "{msg}"
        );

        let (_d, path) = kernel_file(b"short");
        let msg = check_kernel(&path, "aarch64").unwrap_err().to_string();
        assert!(msg.contains("no arm64 Image header"), "{msg}");
    }

    #[test]
    fn other_arches_are_not_checked() {
        let (_d, path) = kernel_file(&[0x1f, 0x8b]);
        assert!(check_kernel(&path, "x86_64").is_ok());
    }
}
