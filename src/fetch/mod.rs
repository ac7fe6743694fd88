//! Fetching the installer in one pass: the download streams (resuming with HTTP Range, under a
//! size cap) into a sha256 hasher and, on another thread, into gunzip and tar, which write the
//! `kexec/` members to a staging directory in RAM. Nothing unpacked is used until the digest of
//! the whole download matches the pin; on any failure the staging directory is removed.

pub mod extract;
mod progress;

use std::fs::File;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::config::{InstallerSource, Sha256 as PinnedSha256};
use crate::http::{Client, Deadline, Request, RetryPolicy, Sink};
use crate::plan::memory::InstallerSize;
use crate::{Error, Result};
use extract::Installer;
use progress::Progress;

/// Larger than any installer (nixos-images' is ~450 MB); a wrong URL must not run for ever.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;
/// The whole download, every attempt and pause included.
const OVERALL_DEADLINE: Duration = Duration::from_secs(3600);
/// Asking the installer's size before the download (every attempt of the HEAD).
const SIZE_DEADLINE: Duration = Duration::from_secs(30);
/// Chunks in flight between the download and the unpacking thread: the bound on what the
/// pipeline buffers (hyper's chunks are at most a few hundred KiB).
const QUEUED_CHUNKS: usize = 16;
const LOCAL_CHUNK: usize = 1 << 20;

/// The installer, downloaded, verified and unpacked.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: u64,
    pub sha256: String,
    pub elapsed: Duration,
    pub installer: Installer,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads the installer tarball at `url` (https, http or `file://`) and unpacks it into
/// `staging` (created; it must not exist) in the same pass. The result is returned only when the
/// download's sha256 equals `sha256` (skipped when `None`: `allow_unpinned`); otherwise, and on
/// any other failure, `staging` is removed and the error says why.
pub fn fetch_installer(
    url: &InstallerSource,
    sha256: Option<&PinnedSha256>,
    staging: &Path,
    max_bytes: u64,
) -> Result<Fetched> {
    let start = Instant::now();
    std::fs::create_dir(staging)
        .map_err(|e| Error::io(format!("creating {}", staging.display()), e))?;
    match fetch_into(url, sha256, staging, max_bytes) {
        Ok((bytes, sha256, installer)) => Ok(Fetched {
            bytes,
            sha256,
            elapsed: start.elapsed(),
            installer,
        }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(staging);
            Err(e)
        }
    }
}

fn fetch_into(
    url: &InstallerSource,
    pin: Option<&PinnedSha256>,
    staging: &Path,
    max_bytes: u64,
) -> Result<(u64, String, Installer)> {
    let (chunks, queue) = sync_channel::<Bytes>(QUEUED_CHUNKS);
    let dir = staging.to_path_buf();
    let unpacker = std::thread::Builder::new()
        .name("unpack".into())
        .spawn(move || extract::unpack(Queue::new(queue), &dir))
        .map_err(|e| Error::io("starting the unpacking thread", e))?;
    let mut tee = Tee {
        hasher: Sha256::new(),
        unpack: Some(chunks),
        progress: Progress::new(),
    };
    let downloaded = match url.local_path() {
        Some(path) => read_local(&path, max_bytes, &mut tee),
        None => download(url.url(), max_bytes, &mut tee),
    };
    let Tee {
        hasher,
        unpack,
        progress,
    } = tee;
    // End of input for the unpacker, which then finishes (or fails on a truncated tarball).
    drop(unpack);
    let unpacked = unpacker.join().unwrap_or_else(|_| {
        Err(Error::Other(
            "unpacking the installer: the unpacking thread panicked".into(),
        ))
    });
    let bytes = downloaded?;
    progress.finish(bytes);
    let digest = hex(&hasher.finalize());
    // The digest first: a wrong file explains a tarball that does not unpack.
    match pin {
        Some(want) if !want.as_hex().eq_ignore_ascii_case(&digest) => {
            return Err(Error::Verification(format!(
                "verifying {url}: sha256 mismatch: got {digest}, pinned {want}; nothing was \
                 used and nothing changed (way out: pin the digest of the tarball the URL \
                 serves, or fix the URL)"
            )));
        }
        Some(_) => tracing::info!(%url, bytes, "installer sha256 verified: {digest}"),
        None => {
            tracing::warn!(%url, bytes, "installer not pinned (allow_unpinned): sha256 {digest}")
        }
    }
    unpacked?;
    let installer = extract::resolve(staging)?;
    extract::prune(staging, &installer)?;
    Ok((bytes, digest, installer))
}

/// The download's one consumer: every byte goes to the hasher and to the unpacking thread.
struct Tee {
    hasher: Sha256,
    /// `None` once the unpacker stopped (its error is reported after the digest check).
    unpack: Option<SyncSender<Bytes>>,
    progress: Progress,
}

impl Sink for Tee {
    fn length(&mut self, total: u64) {
        self.progress.set_total(total);
    }

    fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.hasher.update(&chunk);
        self.progress.update(chunk.len() as u64);
        if let Some(unpack) = &self.unpack {
            if unpack.send(chunk).is_err() {
                self.unpack = None;
            }
        }
        Ok(())
    }
}

/// The unpacking thread's input: the chunks, in order, until the download side hangs up.
struct Queue {
    chunks: Receiver<Bytes>,
    current: Bytes,
}

impl Queue {
    fn new(chunks: Receiver<Bytes>) -> Self {
        Self {
            chunks,
            current: Bytes::new(),
        }
    }
}

impl Read for Queue {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Queue {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.current.is_empty() {
            match self.chunks.recv() {
                Ok(chunk) => self.current = chunk,
                Err(_) => break,
            }
        }
        Ok(&self.current)
    }

    fn consume(&mut self, n: usize) {
        self.current = self.current.slice(n..);
    }
}

fn read_local(src: &Path, max_bytes: u64, sink: &mut dyn Sink) -> Result<u64> {
    let ctx = || format!("reading {}", src.display());
    let mut input = File::open(src).map_err(|e| Error::io(ctx(), e))?;
    if let Ok(meta) = input.metadata() {
        sink.length(meta.len());
    }
    let mut total = 0u64;
    loop {
        let mut buf = vec![0u8; LOCAL_CHUNK];
        let n = input.read(&mut buf).map_err(|e| Error::io(ctx(), e))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if total > max_bytes {
            return Err(Error::BodyTooLarge {
                url: src.display().to_string(),
                limit: max_bytes,
            });
        }
        buf.truncate(n);
        sink.write(Bytes::from(buf))?;
    }
}

fn download(url: &reqwest::Url, max_bytes: u64, sink: &mut dyn Sink) -> Result<u64> {
    let req = Request::get(url.clone());
    let client = Client::new(RetryPolicy::download(), None)?;
    let deadline = Deadline::after(OVERALL_DEADLINE);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?
        .block_on(client.stream(&req, deadline, max_bytes, sink))?
        .ok_or_else(|| Error::Http {
            method: "GET".into(),
            url: url.to_string(),
            status: 404,
        })
}

/// The installer's size before downloading it: the file's for `file://`, else the
/// `Content-Length` of a HEAD (redirects followed). Never fails: an unknown size is assumed
/// ([`InstallerSize::assumed`]) and the reason kept, so the plan can say so.
pub fn installer_size(url: &InstallerSource) -> InstallerSize {
    if let Some(path) = url.local_path() {
        return match std::fs::metadata(&path) {
            Ok(meta) => InstallerSize {
                bytes: meta.len(),
                source: "file size".into(),
            },
            Err(e) => InstallerSize::assumed(&format!("reading {}: {e}", path.display())),
        };
    }
    match head_length(url.url()) {
        Ok(bytes) => InstallerSize {
            bytes,
            source: "Content-Length".into(),
        },
        Err(why) => {
            tracing::warn!("could not learn the installer's size ({why}); assuming the largest");
            InstallerSize::assumed(&why)
        }
    }
}

fn head_length(url: &reqwest::Url) -> std::result::Result<u64, String> {
    let client = Client::new(RetryPolicy::size_probe(), None).map_err(|e| e.to_string())?;
    let response = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?
        .block_on(client.send(&Request::head(url.clone()), Deadline::after(SIZE_DEADLINE)))
        .map_err(|e| format!("HEAD: {e}"))?
        .ok_or("HEAD answered 404")?;
    // The header itself: a HEAD response has no body for reqwest to measure.
    response
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(|| "HEAD gave no Content-Length".to_string())
}
