//! Container detection, in the order `systemd-detect-virt --container` uses, plus cgroup hints.
//!
//! A container sees the host's DMI and firmware and cannot kexec, so this decides whether the
//! rest of the facts describe "our" machine at all.

use super::SysRoot;

pub fn detect(root: &SysRoot) -> Option<String> {
    if root.exists("/proc/vz") && !root.exists("/proc/bc") {
        return Some("openvz".into());
    }
    if let Some(release) = root.read_string("/proc/sys/kernel/osrelease") {
        if release.contains("Microsoft") || release.contains("WSL") {
            return Some("wsl".into());
        }
    }
    // Written by systemd-nspawn, LXC and others for exactly this question.
    for file in ["/run/host/container-manager", "/run/systemd/container"] {
        if let Some(kind) = root.read_string(file) {
            return Some(normalise(&kind));
        }
    }
    // Root-only on most systems; absent for a normal user, so the hints below still apply.
    if let Some(kind) = root
        .read_bytes("/proc/1/environ")
        .and_then(|e| environ_container(&e))
    {
        return Some(normalise(&kind));
    }
    if root.exists("/run/.containerenv") {
        return Some("podman".into());
    }
    if root.exists("/.dockerenv") {
        return Some("docker".into());
    }
    root.read_string("/proc/1/cgroup")
        .and_then(|c| cgroup_hint(&c))
}

fn environ_container(environ: &[u8]) -> Option<String> {
    environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"container="))
        .map(|v| String::from_utf8_lossy(v).trim().to_string())
        .filter(|v| !v.is_empty())
}

/// cgroup v1 paths name the manager (`/docker/<id>`, `/lxc/<name>`); v2 shows `0::/` inside a
/// cgroup namespace, which tells nothing, so this is only a hint.
fn cgroup_hint(cgroup: &str) -> Option<String> {
    let hints = [
        ("/docker/", "docker"),
        ("/docker-", "docker"),
        ("/libpod-", "podman"),
        ("/lxc/", "lxc"),
        ("/lxc.payload", "lxc"),
        ("/kubepods", "kubernetes"),
    ];
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        hints
            .iter()
            .find(|(needle, _)| path.contains(needle))
            .map(|(_, kind)| kind.to_string())
    })
}

/// systemd writes `lxc-libvirt`, nspawn writes `systemd-nspawn`; keep the names systemd uses.
fn normalise(kind: &str) -> String {
    kind.trim().to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ_and_cgroup_hints() {
        assert_eq!(
            environ_container(b"PATH=/bin\0container=lxc\0TERM=linux").as_deref(),
            Some("lxc")
        );
        assert_eq!(environ_container(b"container=\0"), None);
        assert_eq!(environ_container(b"\xff\xfe"), None);
        assert_eq!(
            cgroup_hint("12:pids:/docker/0123abcd\n0::/").as_deref(),
            Some("docker")
        );
        assert_eq!(cgroup_hint("0::/init.scope\n"), None);
        assert_eq!(cgroup_hint("garbage"), None);
    }
}
