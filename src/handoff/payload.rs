//! Building the handoff archive (gzip'd newc) and appending it to the installer's initrd.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use super::cpio::CpioWriter;
use super::netstate::{ip_addr_json, ip_route_json};
use super::*;
use crate::config::secret::Secret;
use crate::facts::{Facts, Family};
use crate::plan::{networkd, Plan};
use crate::{Error, Result};

/// How stage 1 loaded the installer kernel (`nixos-lift/kexec.json`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KexecMethod {
    /// The `kexec_file_load` syscall, made by nixos-lift itself.
    KexecFileLoad,
    /// `kexec_load`, through the installer tarball's static `kexec` binary.
    KexecLoad,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KexecRecord {
    pub method: KexecMethod,
    /// Why the first method was not used, when it fell back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// A second, tiny archive appended after a fallback: its `kexec.json` replaces the first one,
/// since later initramfs entries overwrite earlier ones.
pub fn write_kexec_override(record: &KexecRecord, out: impl Write) -> Result<()> {
    let gz = GzEncoder::new(out, Compression::new(6));
    let mut cpio = CpioWriter::new(gz);
    let path = format!("{INITRD_DIR}/{KEXEC_FILE}");
    to_json(record)
        .and_then(|json| cpio.add_file(&path, 0o644, &json))
        .and_then(|()| cpio.finish())
        .and_then(GzEncoder::finish)
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("writing the kexec record archive", e))
}

/// An SSH host key file from `/etc/ssh`, e.g. `ssh_host_ed25519_key`.
#[derive(Debug, Clone)]
pub struct HostKeyFile {
    pub name: String,
    pub data: Secret<Vec<u8>>,
}

/// Everything that goes into the handoff archive.
#[derive(Debug, Clone)]
pub struct Payload {
    pub plan: Plan,
    pub facts: Facts,
    pub secrets: Secrets,
    /// One OpenSSH public key per entry, deduplicated.
    pub authorized_keys: Vec<String>,
    /// Copied to `ssh/` so the installer's sshd keeps the machine's identity, and to
    /// `nixos-lift/` for stage 2 to install on the target only when `plan.keep_host_keys`.
    pub host_keys: Vec<HostKeyFile>,
    pub machine_id: Option<String>,
    pub kexec: KexecRecord,
    /// The agent binary to carry (normally `/proc/self/exe`).
    pub agent: PathBuf,
}

/// Writes the gzip'd newc archive to `out`.
pub fn write_archive(payload: &Payload, out: impl Write) -> Result<()> {
    let gz = GzEncoder::new(out, Compression::new(6));
    let mut cpio = CpioWriter::new(gz);
    add_all(payload, &mut cpio).map_err(|e| Error::io("writing the handoff archive", e))?;
    cpio.finish()
        .and_then(GzEncoder::finish)
        .and_then(|mut w| w.flush())
        .map_err(|e| Error::io("writing the handoff archive", e))
}

/// One line of [`INDEX_FILE`]: a file the writer put in the archive, and its mode.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexEntry {
    /// Relative to the initramfs root, e.g. `nixos-lift/plan.json`, `addrs.json`.
    pub path: String,
    pub mode: u32,
}

/// One file of the archive.
struct Entry<'a> {
    path: String,
    mode: u32,
    content: Content<'a>,
}

enum Content<'a> {
    Bytes(Vec<u8>),
    Borrowed(&'a [u8]),
    /// Streamed from disk (the agent binary).
    File(&'a Path),
}

impl Payload {
    /// Every file of the archive, in order: the one list the archive and its index are made from.
    fn entries(&self) -> io::Result<Vec<Entry<'_>>> {
        let own = |f: &str| format!("{INITRD_DIR}/{f}");
        let entry = |path: String, mode, content| Entry {
            path,
            mode,
            content,
        };
        let keys: Vec<u8> = self
            .authorized_keys
            .iter()
            .flat_map(|k| format!("{k}\n").into_bytes())
            .collect();
        let net = &self.facts.network;
        let mut entries = vec![
            entry(own(PLAN_FILE), 0o644, json(&self.plan)?),
            entry(own(FACTS_FILE), 0o644, json(&self.facts)?),
            entry(own(SECRETS_FILE), 0o600, json(&self.secrets)?),
            entry(
                own(AUTHORIZED_KEYS_FILE),
                0o600,
                Content::Bytes(keys.clone()),
            ),
            entry(own(KEXEC_FILE), 0o644, json(&self.kexec)?),
            entry(own(AGENT_FILE), 0o755, Content::File(&self.agent)),
            // nixos-images' restore-network and restore-state read these at the initramfs root.
            entry(
                ADDRS_FILE.into(),
                0o644,
                json(&ip_addr_json(&net.interfaces))?,
            ),
            entry(
                ROUTES_V4_FILE.into(),
                0o644,
                json(&ip_route_json(&net.routes, Family::Inet))?,
            ),
            entry(
                ROUTES_V6_FILE.into(),
                0o644,
                json(&ip_route_json(&net.routes, Family::Inet6))?,
            ),
            entry(
                format!("ssh/{AUTHORIZED_KEYS_FILE}"),
                0o600,
                Content::Bytes(keys),
            ),
        ];
        for key in &self.host_keys {
            let mode = if key.name.ends_with(".pub") {
                0o644
            } else {
                0o600
            };
            let data = || Content::Borrowed(key.data.expose().as_slice());
            entries.push(entry(format!("ssh/{}", key.name), mode, data()));
            // Stage 2 sees only `nixos-lift/` (the installer copies it); the target gets the
            // keys only when the config asks for them.
            if self.plan.keep_host_keys {
                entries.push(entry(own(&key.name), mode, data()));
            }
        }
        // The installer's nixos-lift-network copies these before networkd starts.
        for unit in networkd::units(&self.plan.network) {
            let path = own(&format!("{NETWORKD_DIR}/{}.network", unit.name));
            entries.push(entry(
                path,
                0o644,
                Content::Bytes(unit.to_ini().into_bytes()),
            ));
        }
        if let Some(conf) = networkd::resolved_conf(&self.plan.network) {
            entries.push(entry(
                own(RESOLVED_FILE),
                0o644,
                Content::Bytes(conf.into_bytes()),
            ));
        }
        if let Some(id) = &self.machine_id {
            let line = format!("{}\n", id.trim()).into_bytes();
            entries.push(entry(
                own(MACHINE_ID_FILE),
                0o444,
                Content::Bytes(line.clone()),
            ));
            entries.push(entry(MACHINE_ID_FILE.into(), 0o444, Content::Bytes(line)));
        }
        Ok(entries)
    }
}

fn json<T: Serialize>(value: &T) -> io::Result<Content<'static>> {
    to_json(value).map(Content::Bytes)
}

fn add_all<W: Write>(p: &Payload, cpio: &mut CpioWriter<W>) -> io::Result<()> {
    cpio.add_dir(INITRD_DIR, 0o700)?;
    cpio.add_dir("ssh", 0o700)?;
    let entries = p.entries()?;
    let index: Vec<IndexEntry> = entries
        .iter()
        .map(|e| IndexEntry {
            path: e.path.clone(),
            mode: e.mode,
        })
        .collect();
    for e in entries {
        match e.content {
            Content::Bytes(data) => cpio.add_file(&e.path, e.mode, &data)?,
            Content::Borrowed(data) => cpio.add_file(&e.path, e.mode, data)?,
            Content::File(path) => {
                let mut file = File::open(path)?;
                let size = file.metadata()?.len();
                cpio.add_file_from(&e.path, e.mode, size, &mut file)?;
            }
        }
    }
    cpio.add_file(
        &format!("{INITRD_DIR}/{INDEX_FILE}"),
        0o644,
        &to_json(&index)?,
    )
}

fn to_json<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Appends zero padding to 4 bytes and the handoff archive to `initrd` in place (stage 1's own
/// unpacked copy, whose digest was checked on the download stream): no second copy of a
/// ~430 MB file. On failure the file is cut back to its original length. Returns the new length.
pub fn append_handoff(initrd: &Path, payload: &Payload) -> Result<u64> {
    let context = || format!("appending the handoff to {}", initrd.display());
    let file = File::options()
        .append(true)
        .open(initrd)
        .map_err(|e| Error::io(context(), e))?;
    let original = file.metadata().map_err(|e| Error::io(context(), e))?.len();
    let written = (|| {
        let mut writer = BufWriter::with_capacity(1 << 20, &file);
        let pad = ((4 - original % 4) % 4) as usize;
        writer
            .write_all(&[0u8; 3][..pad])
            .map_err(|e| Error::io(context(), e))?;
        write_archive(payload, &mut writer)?;
        writer.flush().map_err(|e| Error::io(context(), e))?;
        drop(writer);
        file.sync_all().map_err(|e| Error::io(context(), e))?;
        file.metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(context(), e))
    })();
    if written.is_err() {
        let _ = file.set_len(original);
    }
    written
}

/// Reads `/etc/ssh/ssh_host_*` under `root` (private and public halves).
pub fn read_host_keys(etc_ssh: &Path) -> Vec<HostKeyFile> {
    let Ok(dir) = std::fs::read_dir(etc_ssh) else {
        return Vec::new();
    };
    let mut keys: Vec<HostKeyFile> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(HOST_KEY_PREFIX) || !e.file_type().ok()?.is_file() {
                return None;
            }
            let mut data = Vec::new();
            File::open(e.path()).ok()?.read_to_end(&mut data).ok()?;
            Some(HostKeyFile {
                name,
                data: Secret::new(data),
            })
        })
        .collect();
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    keys
}
