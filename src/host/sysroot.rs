//! `SysRoot`: the one root every host read goes through, and tolerant readers on top of it.
//!
//! The readers never fail: a value that is missing, unreadable (EACCES for a normal user),
//! empty or garbage is `None`. Inspection decides what an absent value means.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// No sysfs, procfs or /etc file we read is near this; it bounds memory on a hostile tree.
const MAX_READ_BYTES: u64 = 1 << 20;

/// The root all host reads go through (`--root`), so fixture trees and rehearsals work.
#[derive(Debug, Clone)]
pub struct SysRoot(PathBuf);

impl SysRoot {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    /// `path` is absolute as seen on the host, e.g. `/sys/block`.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        self.0.join(rel)
    }

    /// True when reading the live machine rather than a fixture tree.
    pub fn is_host(&self) -> bool {
        // `--root //` or a symlink to / is still the live machine.
        fs::canonicalize(&self.0).is_ok_and(|p| p == Path::new("/"))
    }

    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        self.join(path).exists()
    }

    /// Raw bytes, at most [`MAX_READ_BYTES`].
    pub fn read_bytes(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        read_bytes(&self.join(path))
    }

    /// The trimmed text of a file; `None` when missing, unreadable or blank.
    pub fn read_string(&self, path: impl AsRef<Path>) -> Option<String> {
        read_string(&self.join(path))
    }

    /// A trimmed value parsed as `T`; garbage is `None`.
    pub fn read_parse<T: FromStr>(&self, path: impl AsRef<Path>) -> Option<T> {
        read_parse(&self.join(path))
    }

    /// A sysfs boolean (`0`/`1`).
    pub fn read_flag(&self, path: impl AsRef<Path>) -> Option<bool> {
        read_flag(&self.join(path))
    }

    /// Entry names of a directory, sorted; empty when it is missing or unreadable.
    pub fn list_dir(&self, path: impl AsRef<Path>) -> Vec<String> {
        list_dir(&self.join(path))
    }

    /// The last component of a symlink's target (`../../nvme0n1` → `nvme0n1`).
    pub fn link_name(&self, path: impl AsRef<Path>) -> Option<String> {
        link_name(&self.join(path))
    }

    /// The symlink-resolved path inside the tree; `None` when it does not resolve.
    pub fn canonical(&self, path: impl AsRef<Path>) -> Option<PathBuf> {
        fs::canonicalize(self.join(path)).ok()
    }
}

pub fn read_bytes(path: &Path) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    fs::File::open(path)
        .ok()?
        .take(MAX_READ_BYTES)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

pub fn read_string(path: &Path) -> Option<String> {
    text(&read_bytes(path)?)
}

/// Bytes as trimmed text (invalid UTF-8 replaced); `None` when blank.
pub fn text(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

pub fn read_parse<T: FromStr>(path: &Path) -> Option<T> {
    read_string(path)?.parse().ok()
}

pub fn read_flag(path: &Path) -> Option<bool> {
    match read_string(path)?.as_str() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

pub fn list_dir(path: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(path) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

pub fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target.file_name()?.to_str().map(str::to_string)
}

/// Undoes udev's `\xHH` escaping in `/dev/disk/by-label` names (a space is `\x20`).
pub fn unescape_udev(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 2..i + 4)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (
            bytes[i],
            bytes.get(i + 1),
            hex.and_then(|h| u8::from_str_radix(h, 16).ok()),
        ) {
            (b'\\', Some(b'x'), Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("num"), "4096\n").unwrap();
        fs::write(dir.path().join("garbage"), b"\xff\xfe 12x\n").unwrap();
        fs::write(dir.path().join("blank"), " \n\0").unwrap();
        fs::write(dir.path().join("flag"), "1\n").unwrap();
        fs::create_dir(dir.path().join("adir")).unwrap();
        std::os::unix::fs::symlink("../../nvme0n1", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("dangling")).unwrap();
        dir
    }

    #[test]
    fn values_parse_or_are_absent() {
        let dir = tree();
        let root = SysRoot::new(dir.path());
        assert_eq!(root.read_parse::<u32>("/num"), Some(4096));
        assert_eq!(root.read_parse::<u32>("/garbage"), None);
        assert_eq!(root.read_string("/blank"), None);
        assert_eq!(root.read_flag("/flag"), Some(true));
        assert_eq!(root.read_flag("/num"), None);
        assert_eq!(root.link_name("/link").as_deref(), Some("nvme0n1"));
    }

    #[test]
    fn inaccessible_paths_are_absent_not_errors() {
        let dir = tree();
        let root = SysRoot::new(dir.path());
        // A directory where a file is expected (EISDIR), a path through a file (ENOTDIR),
        // a dangling link (a device that vanished) and a missing file.
        assert_eq!(root.read_string("/adir"), None);
        assert_eq!(root.read_string("/num/below"), None);
        assert_eq!(root.read_string("/dangling"), None);
        assert_eq!(root.read_string("/missing"), None);
        assert!(root.list_dir("/num").is_empty());
        assert!(root.list_dir("/dangling").is_empty());
        assert_eq!(root.link_name("/num"), None);
        assert_eq!(root.canonical("/dangling"), None);
    }

    #[test]
    fn udev_escapes_are_decoded() {
        assert_eq!(unescape_udev(r"my\x20disk"), "my disk");
        assert_eq!(unescape_udev(r"bad\x2"), r"bad\x2");
        assert_eq!(unescape_udev("cidata"), "cidata");
    }
}
