//! Stage 1's guards: each a named, pure predicate over the facts that says what it found, what
//! it needed and the way out. A refused guard stops stage 1 before anything is downloaded.

use std::net::IpAddr;

use super::{GuardResult, InstallerPlan};
use crate::config::{Arch, Installer, InstallerSource};
use crate::facts::{Facts, HostFacts};
use crate::refusal::{Guard, Refusal};

fn ok(name: Guard, found: impl Into<String>, needed: impl Into<String>) -> GuardResult {
    GuardResult {
        name,
        ok: true,
        found: found.into(),
        needed: needed.into(),
        way_out: String::new(),
    }
}

fn check(
    name: Guard,
    pass: bool,
    found: impl Into<String>,
    needed: impl Into<String>,
    way_out: impl Into<String>,
) -> GuardResult {
    let mut result = ok(name, found, needed);
    if !pass {
        result.ok = false;
        result.way_out = way_out.into();
    }
    result
}

pub fn root(euid: u32) -> GuardResult {
    check(
        Guard::Root,
        euid == 0,
        format!("uid {euid}"),
        "uid 0 (root)",
        "run nixos-lift as root: cloud-init's runcmd does, or use sudo",
    )
}

pub fn arch(host: &HostFacts) -> GuardResult {
    check(
        Guard::Arch,
        host.arch.installable().is_some(),
        host.arch.to_string(),
        Arch::ALL.map(Arch::as_str).join(" or "),
        "use an x86_64 or aarch64 instance type",
    )
}

pub fn not_container(host: &HostFacts) -> GuardResult {
    check(
        Guard::NotContainer,
        host.container.is_none(),
        host.container.clone().unwrap_or_else(|| "none".into()),
        "a virtual machine, not a container",
        "run nixos-lift on a VM or bare metal; a container cannot replace its kernel",
    )
}

pub fn not_nixos(host: &HostFacts) -> GuardResult {
    let id = host.os.id.clone().unwrap_or_else(|| "unknown".into());
    check(
        Guard::NotNixos,
        id != "nixos",
        format!("os-release ID={id}"),
        "a non-NixOS image (Ubuntu, Debian, ...)",
        "this machine already runs NixOS: deploy the flake with nixos-rebuild instead",
    )
}

/// Everything that stops `kexec_load`/`kexec_file_load` of an unsigned kernel.
pub fn kexec_allowed(host: &HostFacts, ima_kexec_appraise: bool) -> GuardResult {
    let mut blockers = host.kexec_blockers.clone();
    if host.secure_boot == Some(true) {
        blockers.push("Secure Boot is enabled: only signed kernels may be kexec'd".into());
    }
    if host.kexec_load_disabled == Some(true) && !blockers.iter().any(|b| b.contains("disabled")) {
        blockers.push("kernel.kexec_load_disabled=1".into());
    }
    if let Some(mode @ ("integrity" | "confidentiality")) = host.lockdown.as_deref() {
        if !blockers.iter().any(|b| b.contains("lockdown")) {
            blockers.push(format!("kernel lockdown is {mode}"));
        }
    }
    if host.hypervisor.as_deref() == Some("xen") {
        blockers.push("Xen guest: static kexec cannot read a Xen memory layout".into());
    }
    if ima_kexec_appraise {
        blockers.push("IMA policy appraises kexec kernels (KEXEC_KERNEL_CHECK)".into());
    }
    let found = if blockers.is_empty() {
        "kexec allowed".to_string()
    } else {
        blockers.join("; ")
    };
    check(
        Guard::KexecAllowed,
        blockers.is_empty(),
        found,
        "kexec_load_disabled=0, lockdown none, Secure Boot off, no IMA kexec appraisal, not Xen",
        "disable Secure Boot in the provider's console (or pick a non-Secure-Boot image), boot \
         without lockdown= on the kernel command line, and use a KVM-based instance type",
    )
}

/// `installer.sha256` pinned for this arch, unless `allow_unpinned`. `default_url`: the config
/// names no installer, so the pin would have come with this build.
pub fn installer_pinned(
    sha256: Option<&str>,
    allow_unpinned: bool,
    default_url: bool,
) -> GuardResult {
    let found = match (sha256, allow_unpinned) {
        (Some(hex), _) => format!("sha256 {hex}"),
        (None, true) => "unpinned, allowed by allow_unpinned".into(),
        (None, false) if default_url => {
            "the default installer, which this build carries no digest for (a development build)"
                .into()
        }
        (None, false) => "no sha256 for this architecture".into(),
    };
    let way_out = if default_url {
        "run a release build of nixos-lift (its default installer is pinned), or set \
         installer.url and installer.sha256 to an installer you built"
    } else {
        "pin installer.sha256 (`sha256sum` of the tarball), or set installer.allow_unpinned: \
         true to accept whatever the URL serves"
    };
    check(
        Guard::InstallerPinned,
        sha256.is_some() || allow_unpinned,
        found,
        "installer.sha256 for this architecture",
        way_out,
    )
}

/// Where nixos-images publishes its own kexec tarballs, which carry no nixos-lift stage 2.
const UPSTREAM_RELEASES: &str = "https://github.com/nix-community/nixos-images/releases/";

/// Not nixos-images' own release tarball: stage 1 would download it and then refuse it
/// (`installer-stage2`), as nothing in it would install the flake after the kexec.
pub fn installer_not_upstream(url: &InstallerSource) -> GuardResult {
    let upstream = url.as_str().starts_with(UPSTREAM_RELEASES);
    check(
        Guard::InstallerStage2,
        !upstream,
        if upstream {
            format!("{url}: nixos-images' own tarball, which has no nixos-lift stage 2")
        } else {
            url.to_string()
        },
        "nixos-lift's installer (nixos-images' kexec image plus nixos-lift's stage 2)",
        "leave installer.url unset for the release's installer, or build one with `nix build \
         .#installer` and pin it",
    )
}

/// The installer for machines of `arch`, and the guards the config alone decides for them: a
/// refusal here is one stage 1 makes on every such machine, so `config check` and `user-data`
/// report it before any exists. No installer when its URL does not resolve.
pub fn installer_for(
    installer: &Installer,
    arch: Arch,
) -> (Option<InstallerPlan>, Vec<GuardResult>) {
    let sha256 = installer.sha256_for(arch);
    let pinned = installer_pinned(
        sha256.map(|s| s.as_hex()),
        installer.allow_unpinned,
        installer.is_default,
    );
    match installer.url.resolve(arch) {
        Ok(url) => {
            let guards = vec![pinned, installer_url(&url), installer_not_upstream(&url)];
            let plan = InstallerPlan {
                url,
                sha256: sha256.cloned(),
            };
            (Some(plan), guards)
        }
        Err(e) => {
            let unresolved = check(
                Guard::InstallerUrl,
                false,
                format!("{}: {e}", installer.url.template()),
                URL_NEEDED,
                "set installer.url to the installer's URL",
            );
            (None, vec![pinned, unresolved])
        }
    }
}

/// [`installer_for`]'s guards.
pub fn config_guards(installer: &Installer, arch: Arch) -> Vec<GuardResult> {
    installer_for(installer, arch).1
}

/// What stage 1 would refuse on each architecture for the config's reasons alone.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigRefusals(Vec<(Arch, GuardResult)>);

impl ConfigRefusals {
    pub fn of(installer: &Installer) -> Self {
        Self(
            Arch::ALL
                .into_iter()
                .flat_map(|arch| {
                    config_guards(installer, arch)
                        .into_iter()
                        .filter(|g| !g.ok)
                        .map(move |g| (arch, g))
                })
                .collect(),
        )
    }

    pub fn refuses(&self, arch: Arch) -> bool {
        self.0.iter().any(|(a, _)| *a == arch)
    }

    /// The architectures on which nothing in the config alone stops stage 1.
    pub fn usable(&self) -> Vec<Arch> {
        Arch::ALL
            .into_iter()
            .filter(|a| !self.refuses(*a))
            .collect()
    }

    /// Warns about each refusal on one of `arches` (the ones the VMs may have); refuses when
    /// none of them is left, as then no machine could be taken over. `file` names the config.
    pub fn check(&self, arches: &[Arch], file: &std::path::Path) -> crate::Result<()> {
        let refusals = self.refusals(arches);
        // No arch at all is the caller's usage error (user-data without --agent-sha256).
        if !arches.is_empty() && arches.iter().all(|a| self.refuses(*a)) {
            return Err(crate::Error::Guards {
                action: "take over any machine with this config",
                refusals,
            });
        }
        for refusal in refusals {
            tracing::warn!("stage 1 would refuse {}: {refusal}", file.display());
        }
        Ok(())
    }

    /// The refusals on `arches`, each `found` naming its arch.
    pub fn refusals(&self, arches: &[Arch]) -> Vec<Refusal> {
        self.0
            .iter()
            .filter(|(arch, _)| arches.contains(arch))
            .map(|(arch, g)| {
                let mut refusal = g.refusal();
                refusal.found = format!("{} (on {})", refusal.found, arch.as_str());
                refusal
            })
            .collect()
    }
}

/// https only; `file:` and plain http to a loopback or link-local address for rehearsals.
const URL_NEEDED: &str =
    "https://, or for rehearsals file:// or http:// to a loopback or link-local address";

pub fn installer_url(url: &InstallerSource) -> GuardResult {
    check(
        Guard::InstallerUrl,
        url_allowed(url),
        url.to_string(),
        URL_NEEDED,
        "serve the installer over https",
    )
}

pub fn url_allowed(url: &InstallerSource) -> bool {
    let parsed = url.url();
    match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "file" => true,
        "http" => match parsed.host() {
            Some(url::Host::Ipv4(ip)) => rehearsal_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => rehearsal_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

fn rehearsal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Every host guard, in the order they are reported; `memory` comes from
/// [`super::memory::plan_memory`].
pub fn host_guards(facts: &Facts, euid: u32, memory: GuardResult, ima: bool) -> Vec<GuardResult> {
    let host = &facts.host;
    vec![
        root(euid),
        arch(host),
        not_container(host),
        not_nixos(host),
        memory,
        kexec_allowed(host, ima),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn host() -> HostFacts {
        HostFacts {
            arch: "x86_64".into(),
            memory_bytes: 4 << 30,
            ..Default::default()
        }
    }

    #[test]
    fn root_needs_uid_0() {
        assert!(root(0).ok);
        let refused = root(1000);
        assert!(!refused.ok);
        assert_eq!(refused.found, "uid 1000");
        assert!(!refused.way_out.is_empty());
    }

    #[test]
    fn arch_accepts_only_installer_arches() {
        assert!(arch(&host()).ok);
        let mut h = host();
        h.arch = "aarch64".into();
        assert!(arch(&h).ok);
        h.arch = "riscv64".into();
        assert!(!arch(&h).ok);
    }

    #[test]
    fn container_and_nixos_are_refused() {
        let mut h = host();
        assert!(not_container(&h).ok && not_nixos(&h).ok);
        h.container = Some("lxc".into());
        h.os.id = Some("nixos".into());
        assert_eq!(not_container(&h).found, "lxc");
        assert!(!not_container(&h).ok);
        assert!(!not_nixos(&h).ok);
        assert_eq!(not_nixos(&h).found, "os-release ID=nixos");
    }

    #[test]
    fn kexec_blockers_each_refuse() {
        assert!(kexec_allowed(&host(), false).ok);
        type Mutation = fn(&mut HostFacts);
        let cases: [(Mutation, &str); 4] = [
            (
                |h| h.lockdown = Some("integrity".into()),
                "lockdown is integrity",
            ),
            (|h| h.secure_boot = Some(true), "Secure Boot"),
            (
                |h| h.kexec_load_disabled = Some(true),
                "kexec_load_disabled=1",
            ),
            (|h| h.hypervisor = Some("xen".into()), "Xen"),
        ];
        for (mutate, needle) in cases {
            let mut h = host();
            mutate(&mut h);
            let g = kexec_allowed(&h, false);
            assert!(!g.ok, "{needle}");
            assert!(g.found.contains(needle), "{} lacks {needle}", g.found);
            assert!(g.way_out.contains("Secure Boot") && g.way_out.contains("lockdown"));
        }
        assert!(kexec_allowed(&host(), true).found.contains("IMA"));
        // Blockers the host inspection found are carried through.
        let mut h = host();
        h.kexec_blockers = vec!["no kexec support".into()];
        assert!(!kexec_allowed(&h, false).ok);
        // lockdown=none is fine.
        h = host();
        h.lockdown = Some("none".into());
        assert!(kexec_allowed(&h, false).ok);
    }

    #[test]
    fn pinning() {
        assert!(installer_pinned(Some("ab"), false, false).ok);
        assert!(installer_pinned(None, true, false).ok);
        let g = installer_pinned(None, false, false);
        assert!(!g.ok && g.way_out.contains("allow_unpinned"));
        let g = installer_pinned(None, false, true);
        assert!(!g.ok && g.way_out.contains("release build"), "{g:?}");
    }

    fn installer(yaml: &str) -> Installer {
        let text = format!("flake: github:me/hosts#web\n{yaml}");
        crate::config::Config::parse(std::path::Path::new("c.yaml"), text)
            .unwrap()
            .validate()
            .unwrap()
            .installer
    }

    #[test]
    fn config_refusals_name_each_arch_the_config_alone_stops() {
        let hex = "ab".repeat(32);
        let one_arch = installer(&format!(
            "installer:\n  url: https://example.org/i-{{arch}}.tar.gz\n  sha256:\n    x86_64: {hex}\n"
        ));
        let refusals = ConfigRefusals::of(&one_arch);
        assert_eq!(refusals.usable(), [Arch::X86_64]);
        let lines: Vec<String> = refusals
            .refusals(&Arch::ALL)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with(
                "installer-pinned: found no sha256 for this architecture (on aarch64)"
            ),
            "{lines:?}"
        );
        assert!(
            lines[0].contains("way out: pin installer.sha256"),
            "{lines:?}"
        );

        let plain_http = installer(&format!(
            "installer:\n  url: http://example.org/i.tar.gz\n  sha256:\n    x86_64: {hex}\n"
        ));
        let refusals = ConfigRefusals::of(&plain_http);
        assert!(refusals.usable().is_empty());
        assert_eq!(
            refusals.refusals(&[Arch::X86_64])[0].guard,
            Guard::InstallerUrl
        );

        let upstream = installer(
            "installer:\n  url: https://github.com/nix-community/nixos-images/releases/download/\
             nixos-24.11/nixos-kexec-installer-noninteractive-{arch}-linux.tar.gz\n  \
             allow_unpinned: true\n",
        );
        let refusals = ConfigRefusals::of(&upstream);
        assert!(refusals.usable().is_empty());
        assert_eq!(
            refusals.refusals(&[Arch::X86_64])[0].guard,
            Guard::InstallerStage2
        );

        let fine =
            installer("installer:\n  url: https://example.org/i.tar.gz\n  allow_unpinned: true\n");
        assert_eq!(ConfigRefusals::of(&fine).usable(), Arch::ALL);
    }

    /// Parsed as the plan would carry it, then judged by the guard.
    fn allowed(url: &str) -> bool {
        InstallerSource::try_from(url.to_string()).is_ok_and(|u| url_allowed(&u))
    }

    #[test]
    fn url_policy() {
        for good in [
            "https://github.com/x/y.tar.gz",
            "file:///run/installer.tar.gz",
            "http://127.0.0.1:8000/i.tar.gz",
            "http://localhost/i.tar.gz",
            "http://[::1]/i.tar.gz",
            "http://169.254.10.10/i.tar.gz",
            "http://[fe80::1]/i.tar.gz",
        ] {
            assert!(allowed(good), "{good}");
        }
        for bad in [
            "http://example.org/i.tar.gz",
            "http://10.0.2.2/i.tar.gz",
            "http://192.168.1.1/i.tar.gz",
            "ftp://127.0.0.1/i.tar.gz",
            "https://",
            "not a url",
        ] {
            assert!(!allowed(bad), "{bad}");
        }
        let plain_http = InstallerSource::try_from("http://example.org/x".to_string()).unwrap();
        assert!(!installer_url(&plain_http).ok);
    }
}
