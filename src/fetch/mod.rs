//! Fetching the installer: a streaming download with resume (HTTP Range), a size cap and the
//! sha256 computed while the bytes arrive; nothing is used until the digest matches.

pub mod extract;

use std::fs::File;
use std::io::{IsTerminal, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// Larger than any installer (nixos-images' is ~450 MB); a wrong URL must not fill RAM.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;
const ATTEMPTS: u32 = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A stalled transfer: no byte for this long ends the attempt (it is then resumed).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const OVERALL_DEADLINE: Duration = Duration::from_secs(3600);

/// What was downloaded, verified.
#[derive(Debug)]
pub struct Downloaded {
    pub bytes: u64,
    pub sha256: String,
    pub elapsed: Duration,
}

/// Statuses worth another attempt; the list `curl --retry` uses.
fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `url` into `dest` (created fresh), verifying `sha256` when given.
/// On a digest mismatch `dest` is removed and the error names both digests.
pub fn download(
    url: &str,
    dest: &Path,
    sha256: Option<&str>,
    max_bytes: u64,
) -> Result<Downloaded> {
    let start = Instant::now();
    let result = if let Some(path) = url.strip_prefix("file://") {
        copy_local(Path::new(path), dest, max_bytes)
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the async runtime", e))?
            .block_on(download_http(url, dest, max_bytes))
    };
    let (bytes, digest) = match result {
        Ok(ok) => ok,
        Err(e) => {
            let _ = std::fs::remove_file(dest);
            return Err(e);
        }
    };
    if let Some(want) = sha256 {
        if !want.eq_ignore_ascii_case(&digest) {
            let _ = std::fs::remove_file(dest);
            return Err(Error::Verification(format!(
                "verifying {url}: sha256 mismatch: got {digest}, pinned {want}; nothing was \
                 used and nothing changed (way out: pin the digest of the tarball the URL \
                 serves, or fix the URL)"
            )));
        }
        tracing::info!(%url, bytes, "installer sha256 verified: {digest}");
    } else {
        tracing::warn!(%url, bytes, "installer not pinned (allow_unpinned): sha256 {digest}");
    }
    Ok(Downloaded {
        bytes,
        sha256: digest,
        elapsed: start.elapsed(),
    })
}

fn copy_local(src: &Path, dest: &Path, max_bytes: u64) -> Result<(u64, String)> {
    let ctx = || format!("reading {}", src.display());
    let mut input = File::open(src).map_err(|e| Error::io(ctx(), e))?;
    let mut out = create(dest)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = std::io::Read::read(&mut input, &mut buf).map_err(|e| Error::io(ctx(), e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > max_bytes {
            return Err(too_big(max_bytes));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| Error::io(format!("writing {}", dest.display()), e))?;
    }
    Ok((total, hex(&hasher.finalize())))
}

fn create(dest: &Path) -> Result<File> {
    File::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| Error::io(format!("creating {}", dest.display()), e))
}

fn too_big(max: u64) -> Error {
    Error::Other(format!(
        "downloading the installer: larger than the {} MiB cap",
        max >> 20
    ))
}

async fn download_http(url: &str, dest: &Path, max_bytes: u64) -> Result<(u64, String)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::limited(5))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| Error::Other(format!("building the HTTP client: {e}")))?;
    let mut out = create(dest)?;
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    let mut total: Option<u64> = None;
    let deadline = Instant::now() + OVERALL_DEADLINE;
    let mut progress = Progress::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut req = client.get(url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let outcome: std::result::Result<(), (bool, String)> = async {
            let mut resp = req.send().await.map_err(|e| (true, e.to_string()))?;
            let status = resp.status().as_u16();
            match status {
                200 if have > 0 => {
                    // The server ignored Range: start over.
                    tracing::info!(%url, "server does not resume; downloading from the start");
                    have = 0;
                    hasher = Sha256::new();
                    out.set_len(0).map_err(|e| (false, e.to_string()))?;
                    out.rewind().map_err(|e| (false, e.to_string()))?;
                }
                200 | 206 => {}
                s => return Err((transient(s), format!("HTTP {s}"))),
            }
            if total.is_none() {
                total = resp.content_length().map(|len| len + have);
            }
            if total.is_some_and(|t| t > max_bytes) {
                return Err((
                    false,
                    format!("larger than the {} MiB cap", max_bytes >> 20),
                ));
            }
            while let Some(chunk) = resp.chunk().await.map_err(|e| (true, e.to_string()))? {
                have += chunk.len() as u64;
                if have > max_bytes {
                    return Err((
                        false,
                        format!("larger than the {} MiB cap", max_bytes >> 20),
                    ));
                }
                hasher.update(&chunk);
                out.write_all(&chunk).map_err(|e| (false, e.to_string()))?;
                progress.update(have, total);
            }
            match total {
                Some(t) if have < t => {
                    Err((true, format!("connection closed at {have} of {t} bytes")))
                }
                _ => Ok(()),
            }
        }
        .await;
        match outcome {
            Ok(()) => break,
            Err((retry, why)) if retry && attempt < ATTEMPTS && Instant::now() < deadline => {
                let wait = Duration::from_secs(1 << attempt.min(5));
                tracing::warn!(%url, attempt, "downloading the installer: {why}; resuming at byte {have} in {} s", wait.as_secs());
                tokio::time::sleep(wait).await;
            }
            Err((_, why)) => {
                return Err(Error::Other(format!(
                    "downloading {url}: {why} (attempt {attempt})"
                )))
            }
        }
    }
    progress.finish(have);
    Ok((have, hex(&hasher.finalize())))
}

/// A bar on a terminal; otherwise one log line per 10 %.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    next_tenth: u64,
}

impl Progress {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        });
        Self { bar, next_tenth: 1 }
    }

    fn update(&mut self, have: u64, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            if let Some(t) = total {
                bar.set_length(t);
            }
            bar.set_position(have);
            return;
        }
        let Some(t) = total.filter(|t| *t > 0) else {
            return;
        };
        while self.next_tenth <= 10 && have * 10 >= t * self.next_tenth {
            tracing::info!(
                "downloading the installer: {} % ({} of {} MiB)",
                self.next_tenth * 10,
                have >> 20,
                t >> 20
            );
            self.next_tenth += 1;
        }
    }

    fn finish(&self, have: u64) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        tracing::info!("downloaded the installer: {} MiB", have >> 20);
    }
}
