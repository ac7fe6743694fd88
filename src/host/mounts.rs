//! What is mounted and swapped on, from `/proc/self/mountinfo` and `/proc/swaps`.

use super::SysRoot;

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    /// `MAJ:MIN` of the mounted device (`0:N` for btrfs subvolumes, overlay, tmpfs).
    pub dev: String,
    pub mount_point: String,
    pub fs_type: String,
    /// The mount source as the kernel shows it, e.g. `/dev/nvme0n1p1` or `overlay`.
    pub source: String,
}

#[derive(Debug, Clone, Default)]
pub struct MountTable {
    pub mounts: Vec<Mount>,
    /// Paths of swap devices and files.
    pub swaps: Vec<String>,
}

impl MountTable {
    pub fn read(root: &SysRoot) -> Self {
        let mounts = root
            .read_string("/proc/self/mountinfo")
            .map(|t| t.lines().filter_map(parse_mountinfo_line).collect())
            .unwrap_or_default();
        let swaps = root
            .read_string("/proc/swaps")
            .map(|t| {
                t.lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().next().map(unescape_octal))
                    .collect()
            })
            .unwrap_or_default();
        Self { mounts, swaps }
    }

    /// Mountpoints of the block device `name` with device number `dev`.
    pub fn mountpoints(&self, name: &str, dev: Option<&str>) -> Vec<String> {
        let path = format!("/dev/{name}");
        let mut points: Vec<String> = self
            .mounts
            .iter()
            .filter(|m| Some(m.dev.as_str()) == dev || m.source == path)
            .map(|m| m.mount_point.clone())
            .collect();
        points.dedup();
        points
    }

    pub fn is_swap(&self, name: &str) -> bool {
        let path = format!("/dev/{name}");
        self.swaps.contains(&path)
    }

    /// The mount that is `/` now: the last one listed, since later mounts cover earlier ones.
    pub fn root_mount(&self) -> Option<&Mount> {
        self.mounts.iter().rev().find(|m| m.mount_point == "/")
    }
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw` (proc(5)).
fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split_whitespace().collect();
    let mut right = right.split_whitespace();
    let dev = left.get(2)?;
    dev.split_once(':')?;
    Some(Mount {
        dev: dev.to_string(),
        mount_point: unescape_octal(left.get(4)?),
        fs_type: right.next()?.to_string(),
        source: unescape_octal(right.next()?),
    })
}

/// The kernel writes space, tab, newline and backslash in paths as `\040`-style octal.
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let m = parse_mountinfo_line(
            "29 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw,discard",
        );
        assert_eq!(
            m,
            Some(Mount {
                dev: "259:1".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
                source: "/dev/nvme0n1p1".into(),
            })
        );
        let spaced = parse_mountinfo_line("1 2 8:17 / /mnt/my\\040data rw - xfs /dev/sdb1 rw");
        assert_eq!(
            spaced.map(|m| m.mount_point).as_deref(),
            Some("/mnt/my data")
        );
        assert_eq!(parse_mountinfo_line("garbage"), None);
        assert_eq!(parse_mountinfo_line("1 2 nodev / / rw - ext4 x rw"), None);
    }
}
