//! Arch, kernel, memory, CPUs, OS release and init: the machine as a whole.

use super::SysRoot;
use crate::facts::OsRelease;

/// `uname -m`. The live machine answers from `uname(2)`; a fixture tree from
/// `/proc/sys/kernel/arch` (the same value, exposed as a sysctl by newer kernels).
pub fn arch(root: &SysRoot) -> String {
    root.read_string("/proc/sys/kernel/arch")
        .or_else(|| {
            root.is_host()
                .then(|| nix::sys::utsname::uname().ok())
                .flatten()
                .and_then(|u| u.machine().to_str().map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".to_string())
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
}
