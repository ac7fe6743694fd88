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
use crate::facts::{Facts, Family};
use crate::plan::Plan;
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
#[derive(Clone)]
pub struct HostKeyFile {
    pub name: String,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for HostKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKeyFile({})", self.name)
    }
}

/// Everything that goes into the handoff archive.
#[derive(Debug, Clone)]
pub struct Payload {
    pub plan: Plan,
    pub facts: Facts,
    pub network: NetworkHandoff,
    pub secrets: Secrets,
    /// One OpenSSH public key per entry, deduplicated.
    pub authorized_keys: Vec<String>,
    /// Copied to `ssh/` so the installer's sshd keeps the machine's identity; stage 2 installs
    /// them on the target only when `plan.keep_host_keys`.
    pub host_keys: Vec<HostKeyFile>,
    pub machine_id: Option<String>,
    pub kexec: KexecRecord,
    /// The agent binary to carry (normally `/proc/self/exe`).
    pub agent: PathBuf,
}

/// Paths (relative to the initramfs root) the payload will contain, for `plan.handoff`.
pub fn planned_paths(host_keys: &[String], with_machine_id: bool) -> Vec<String> {
    let own = |f: &str| format!("{INITRD_DIR}/{f}");
    let mut paths = vec![
        own(PLAN_FILE),
        own(FACTS_FILE),
        own(NETWORK_FILE),
        own(SECRETS_FILE),
        own(AUTHORIZED_KEYS_FILE),
        own(AGENT_FILE),
        own(KEXEC_FILE),
        ADDRS_FILE.to_string(),
        ROUTES_V4_FILE.to_string(),
        ROUTES_V6_FILE.to_string(),
        format!("ssh/{AUTHORIZED_KEYS_FILE}"),
    ];
    paths.extend(host_keys.iter().map(|k| format!("ssh/{k}")));
    if with_machine_id {
        paths.push(own(MACHINE_ID_FILE));
        paths.push(MACHINE_ID_FILE.to_string());
    }
    paths
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

fn add_all<W: Write>(p: &Payload, cpio: &mut CpioWriter<W>) -> io::Result<()> {
    let own = |f: &str| format!("{INITRD_DIR}/{f}");
    cpio.add_dir(INITRD_DIR, 0o700)?;
    cpio.add_file(&own(PLAN_FILE), 0o644, &to_json(&p.plan)?)?;
    cpio.add_file(&own(FACTS_FILE), 0o644, &to_json(&p.facts)?)?;
    cpio.add_file(&own(NETWORK_FILE), 0o644, &to_json(&p.network)?)?;
    cpio.add_file(&own(SECRETS_FILE), 0o600, &to_json(&p.secrets)?)?;
    let keys: String = p.authorized_keys.iter().map(|k| format!("{k}\n")).collect();
    cpio.add_file(&own(AUTHORIZED_KEYS_FILE), 0o600, keys.as_bytes())?;

    cpio.add_file(&own(KEXEC_FILE), 0o644, &to_json(&p.kexec)?)?;

    let mut agent = File::open(&p.agent)?;
    let size = agent.metadata()?.len();
    cpio.add_file_from(&own(AGENT_FILE), 0o755, size, &mut agent)?;

    // nixos-images' restore-network and restore-state read these at the initramfs root.
    let net = &p.network.observed;
    cpio.add_file(ADDRS_FILE, 0o644, &to_json(&ip_addr_json(&net.interfaces))?)?;
    let v4 = ip_route_json(&net.routes, Family::Inet);
    cpio.add_file(ROUTES_V4_FILE, 0o644, &to_json(&v4)?)?;
    let v6 = ip_route_json(&net.routes, Family::Inet6);
    cpio.add_file(ROUTES_V6_FILE, 0o644, &to_json(&v6)?)?;
    cpio.add_dir("ssh", 0o700)?;
    cpio.add_file(
        &format!("ssh/{AUTHORIZED_KEYS_FILE}"),
        0o600,
        keys.as_bytes(),
    )?;
    for key in &p.host_keys {
        let mode = if key.name.ends_with(".pub") {
            0o644
        } else {
            0o600
        };
        cpio.add_file(&format!("ssh/{}", key.name), mode, &key.data)?;
    }
    if let Some(id) = &p.machine_id {
        let line = format!("{}\n", id.trim());
        cpio.add_file(&own(MACHINE_ID_FILE), 0o444, line.as_bytes())?;
        cpio.add_file(MACHINE_ID_FILE, 0o444, line.as_bytes())?;
    }
    Ok(())
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
            if !name.starts_with("ssh_host_") || !e.file_type().ok()?.is_file() {
                return None;
            }
            let mut data = Vec::new();
            File::open(e.path()).ok()?.read_to_end(&mut data).ok()?;
            Some(HostKeyFile { name, data })
        })
        .collect();
    keys.sort_by(|a, b| a.name.cmp(&b.name));
    keys
}
