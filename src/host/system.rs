//! Arch, kernel, memory, CPUs, OS release and init: the machine as a whole.

use super::SysRoot;
use crate::facts::{HostArch, OsRelease};

/// `uname -m`. The live machine answers from `uname(2)`; a fixture tree from
/// `/proc/sys/kernel/arch` (the same value, exposed as a sysctl by newer kernels).
pub fn arch(root: &SysRoot) -> HostArch {
    root.read_string("/proc/sys/kernel/arch")
        .or_else(|| {
            root.is_host()
                .then(|| nix::sys::utsname::uname().ok())
                .flatten()
                .and_then(|u| u.machine().to_str().map(str::to_string))
        })
        .map_or_else(HostArch::default, HostArch::from)
}

pub fn kernel_release(root: &SysRoot) -> Option<String> {
    root.read_string("/proc/sys/kernel/osrelease")
}

/// (MemTotal, MemAvailable) in bytes from `/proc/meminfo`; 0 when unknown.
pub fn memory(root: &SysRoot) -> (u64, u64) {
    let text = root.read_string("/proc/meminfo").unwrap_or_default();
    let bytes = |key| meminfo_bytes(&text, key).unwrap_or(0);
    (bytes("MemTotal"), bytes("MemAvailable"))
}

/// MemAvailable in bytes, now (stage 1 samples it while it stages and loads).
pub fn mem_available(root: &SysRoot) -> Option<u64> {
    meminfo_bytes(&root.read_string("/proc/meminfo")?, "MemAvailable")
}

/// Whether process `pid` runs under cloud-init: its cgroup is cloud-init's unit, or an
/// ancestor's name starts with `cloud-init` (walked through `/proc/PID/stat`, up to 16 levels).
pub fn started_by_cloud_init(root: &SysRoot, pid: u32) -> bool {
    let cgroup = root
        .read_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default();
    if cgroup.contains("cloud-final") || cgroup.contains("cloud-init") {
        return true;
    }
    let mut pid = pid;
    for _ in 0..16 {
        let Some(stat) = root.read_string(format!("/proc/{pid}/stat")) else {
            break;
        };
        // `PID (comm) STATE PPID ...`; comm may hold spaces and parentheses.
        let Some(close) = stat.rfind(')') else { break };
        let comm = stat
            .find('(')
            .map(|o| &stat[o + 1..close])
            .unwrap_or_default();
        if comm.starts_with("cloud-init") {
            return true;
        }
        match stat
            .get(close + 2..)
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
        {
            Some(ppid) if ppid > 1 => pid = ppid,
            _ => break,
        }
    }
    false
}

/// One `/proc/meminfo` field (`MemTotal`, `MemAvailable`, ...) in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib.saturating_mul(1024))
}

/// Online CPUs from `/sys/devices/system/cpu/online` (`0-3,6`); 0 when unknown.
pub fn cpu_count(root: &SysRoot) -> u32 {
    root.read_string("/sys/devices/system/cpu/online")
        .and_then(|list| count_cpu_list(&list))
        .unwrap_or(0)
}

fn count_cpu_list(list: &str) -> Option<u32> {
    list.split(',').try_fold(0u32, |acc, part| {
        let n = match part.trim().split_once('-') {
            Some((a, b)) => b.parse::<u32>().ok()?.checked_sub(a.parse::<u32>().ok()?)? + 1,
            None => part.trim().parse::<u32>().map(|_| 1).ok()?,
        };
        acc.checked_add(n)
    })
}

/// `/etc/os-release`, falling back to `/usr/lib/os-release` as os-release(5) says.
pub fn os_release(root: &SysRoot) -> OsRelease {
    let text = root
        .read_string("/etc/os-release")
        .or_else(|| root.read_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
            .filter(|v| !v.is_empty())
    };
    OsRelease {
        id: value("ID"),
        version_id: value("VERSION_ID"),
        pretty_name: value("PRETTY_NAME"),
    }
}

/// PID 1's name is world-readable, unlike its exe link; `/run/systemd/system` is sd_booted(3)'s test.
pub fn pid1_is_systemd(root: &SysRoot) -> bool {
    root.read_string("/proc/1/comm").as_deref() == Some("systemd")
        || root.join("/run/systemd/system").is_dir()
}

pub fn hypervisor(root: &SysRoot) -> Option<String> {
    root.read_string("/sys/hypervisor/type")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3,6"), Some(5));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    /// A `/proc` tree with the given `(pid, stat line, cgroup)` entries.
    #[allow(clippy::unwrap_used)]
    fn procfs(procs: &[(u32, &str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (pid, stat, cgroup) in procs {
            let p = dir.path().join(format!("proc/{pid}"));
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("stat"), format!("{stat}\n")).unwrap();
            std::fs::write(p.join("cgroup"), format!("{cgroup}\n")).unwrap();
        }
        dir
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn mem_available_reads_the_roots_meminfo() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/meminfo"),
            "MemTotal:        4028428 kB\nMemFree:          100000 kB\n\
             MemAvailable:    3581204 kB\n",
        )
        .unwrap();
        let root = SysRoot::new(dir.path());
        assert_eq!(mem_available(&root), Some(3_581_204 * 1024));
        assert_eq!(mem_available(&SysRoot::new(dir.path().join("none"))), None);
    }

    #[test]
    fn cloud_init_is_found_by_cgroup_or_ancestor() {
        let session = "0::/user.slice/user-0.slice/session-1.scope";
        // Started by hand from a shell: no cloud-init anywhere up to PID 1.
        let by_hand = procfs(&[
            (300, "300 (nixos-lift) S 200 300 200 0", session),
            (200, "200 (bash) S 1 200 200 0", session),
        ]);
        assert!(!started_by_cloud_init(&SysRoot::new(by_hand.path()), 300));
        // runcmd: cloud-final.service's cgroup says so.
        let unit = procfs(&[(
            300,
            "300 (nixos-lift) S 200 300 200 0",
            "0::/system.slice/cloud-final.service",
        )]);
        assert!(started_by_cloud_init(&SysRoot::new(unit.path()), 300));
        // A cgroup that hides it (a user scope), with cloud-init two levels up; the shell's
        // name holds a parenthesis, which must not cut the walk short.
        let ancestor = procfs(&[
            (300, "300 (nixos-lift) S 250 300 200 0", session),
            (250, "250 (sh (x)) S 200 250 200 0", session),
            (200, "200 (cloud-init) S 1 200 200 0", session),
        ]);
        assert!(started_by_cloud_init(&SysRoot::new(ancestor.path()), 300));
    }
}
