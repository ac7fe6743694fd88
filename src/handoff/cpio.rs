//! A newc ("070701") cpio writer and reader, enough for an initramfs appended to another.
//!
//! The kernel's initramfs unpacker wants: parents before children, type bits in `mode`,
//! header+name and data each padded to 4 bytes, and a `TRAILER!!!` entry. mtime is always 0 so
//! the same payload gives the same bytes.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
/// Anything larger is not a handoff file; a corrupt header must not make the reader allocate GBs.
const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// Writes a newc archive to `W`; directories are created on demand, parents first.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    dirs: BTreeSet<String>,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            next_ino: 1,
            dirs: BTreeSet::new(),
            written: 0,
        }
    }

    /// Adds a directory (and its parents) unless already present.
    pub fn add_dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let path = normalise(path)?;
        self.add_parents(path)?;
        if self.dirs.insert(path.to_string()) {
            self.header(path, S_IFDIR | (mode & 0o7777), 2, 0)?;
        }
        Ok(())
    }

    /// Adds a regular file with `data`.
    pub fn add_file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.add_file_from(path, mode, data.len() as u64, &mut &data[..])
    }

    /// Adds a regular file of exactly `size` bytes read from `data`, streaming.
    pub fn add_file_from(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let path = normalise(path)?;
        let size32 = u32::try_from(size)
            .map_err(|_| invalid(format!("{path}: {size} bytes is too large for newc")))?;
        self.add_parents(path)?;
        self.header(path, S_IFREG | (mode & 0o7777), 1, size32)?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path}: expected {size} bytes, got {copied}"),
            ));
        }
        self.written += copied;
        self.pad()
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_ino = 0;
        self.header(TRAILER, 0, 1, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn add_parents(&mut self, path: &str) -> io::Result<()> {
        let mut end = 0;
        while let Some(pos) = path[end..].find('/') {
            let parent = &path[..end + pos];
            if self.dirs.insert(parent.to_string()) {
                self.header(parent, S_IFDIR | 0o755, 2, 0)?;
            }
            end += pos + 1;
        }
        Ok(())
    }

    fn header(&mut self, name: &str, mode: u32, nlink: u32, size: u32) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let namesize = name.len() as u32 + 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0];
        let mut header = String::with_capacity(HEADER_LEN);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.written += (HEADER_LEN + name.len() + 1) as u64;
        self.pad()
    }

    fn pad(&mut self) -> io::Result<()> {
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.written += pad as u64;
        Ok(())
    }
}

fn normalise(path: &str) -> io::Result<&str> {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    let bad = path.is_empty()
        || path == TRAILER
        || path.ends_with('/')
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(invalid(format!("{path:?}: not a valid archive path")));
    }
    Ok(path)
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// One entry read back from a newc archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == S_IFDIR
    }
}

/// Reads every entry of one newc archive up to its trailer (for `handoff check` and tests).
pub fn read_archive(input: &mut dyn Read) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut offset: u64 = 0;
    loop {
        let mut header = [0u8; HEADER_LEN];
        input.read_exact(&mut header)?;
        if &header[..6] != MAGIC {
            return Err(invalid(format!("bad newc magic at byte {offset}")));
        }
        let field = |i: usize| -> io::Result<u32> {
            let hex = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .map_err(|_| invalid(format!("bad header at byte {offset}")))?;
            u32::from_str_radix(hex, 16)
                .map_err(|_| invalid(format!("bad header at byte {offset}")))
        };
        let (mode, size, namesize) = (field(1)?, u64::from(field(6)?), field(11)? as usize);
        if namesize == 0 || namesize > 4096 || size > MAX_ENTRY_BYTES {
            return Err(invalid(format!("implausible entry at byte {offset}")));
        }
        let mut name = vec![0u8; namesize];
        input.read_exact(&mut name)?;
        name.pop();
        let path = String::from_utf8(name)
            .map_err(|_| invalid(format!("non-UTF-8 name at byte {offset}")))?;
        offset += (HEADER_LEN + namesize) as u64;
        skip_pad(input, &mut offset)?;
        if path == TRAILER {
            return Ok(entries);
        }
        let mut data = vec![0u8; size as usize];
        input.read_exact(&mut data)?;
        offset += size;
        skip_pad(input, &mut offset)?;
        entries.push(Entry { path, mode, data });
    }
}

fn skip_pad(input: &mut dyn Read, offset: &mut u64) -> io::Result<()> {
    let pad = ((4 - (*offset % 4)) % 4) as usize;
    input.read_exact(&mut [0u8; 3][..pad])?;
    *offset += pad as u64;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new());
        w.add_file("nixos-lift/plan.json", 0o644, b"{}\n").unwrap();
        w.add_file("nixos-lift/secrets.json", 0o600, b"{\"a\":1}")
            .unwrap();
        w.add_file("ssh/authorized_keys", 0o600, b"ssh-ed25519 AAAA x\n")
            .unwrap();
        w.add_dir("ssh", 0o700).unwrap();
        w.add_file("machine-id", 0o444, b"0123456789abcdef0123456789abcdef\n")
            .unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn round_trip_keeps_order_modes_and_bytes() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        let entries = read_archive(&mut &bytes[..]).unwrap();
        let paths: Vec<_> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "nixos-lift",
                "nixos-lift/plan.json",
                "nixos-lift/secrets.json",
                "ssh",
                "ssh/authorized_keys",
                "machine-id"
            ]
        );
        assert!(entries[0].is_dir());
        assert_eq!(entries[2].mode, 0o100600);
        assert_eq!(entries[2].data, b"{\"a\":1}");
        assert_eq!(entries[4].data, b"ssh-ed25519 AAAA x\n");
    }

    #[test]
    fn output_is_deterministic() {
        assert_eq!(sample(), sample());
    }

    #[test]
    fn rejects_escaping_and_empty_paths() {
        let mut w = CpioWriter::new(Vec::new());
        for bad in ["", "../etc/passwd", "a//b", "a/./b", "dir/", "TRAILER!!!"] {
            assert!(w.add_file(bad, 0o644, b"x").is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn short_reader_is_an_error() {
        let mut w = CpioWriter::new(Vec::new());
        let err = w
            .add_file_from("f", 0o644, 10, &mut &b"abc"[..])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn reader_rejects_garbage() {
        let garbage = [b'x'; 200];
        assert!(read_archive(&mut &garbage[..]).is_err());
    }

    #[test]
    fn gnu_cpio_lists_the_archive() {
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            // The cargo suite installs cpio; in CI its absence is a failure, not a skip.
            assert!(std::env::var_os("CI").is_none(), "cpio is not installed");
            eprintln!("cpio not installed; skipping the GNU cpio check");
            return;
        };
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let listing = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            listing.lines().collect::<Vec<_>>(),
            [
                "nixos-lift",
                "nixos-lift/plan.json",
                "nixos-lift/secrets.json",
                "ssh",
                "ssh/authorized_keys",
                "machine-id"
            ]
        );
    }
}
