//! The handoff: what stage 1 passes to stage 2 inside an archive appended to the installer's
//! initrd. These names are a contract with `nix/installer` and stage 2.
//!
//! Layout of the appended newc archive (paths relative to the initramfs root):
//!
//! ```text
//! nixos-lift/plan.json          crate::plan::Plan
//! nixos-lift/facts.json         crate::facts::Facts (with `cloud`)
//! nixos-lift/network.json       crate::facts::NetworkFacts plus the cloud's static config
//! nixos-lift/secrets.json       0600: nix access tokens, webhook token
//! nixos-lift/authorized_keys    config + metadata + existing root keys
//! nixos-lift/machine-id
//! nixos-lift/nixos-lift         the running agent binary, 0755
//! addrs.json, routes-v4.json, routes-v6.json   nixos-images' restore-network input
//! ssh/authorized_keys, ssh/ssh_host_*          nixos-images' restore-state input
//! machine-id
//! ```
//!
//! The installer image copies `/nixos-lift` from the initrd to [`STAGE2_DIR`] before
//! switch-root; the busybox test fixture reads it in place.

/// Directory at the initramfs root that holds nixos-lift's own handoff files.
pub const INITRD_DIR: &str = "nixos-lift";
/// Where stage 2 finds the handoff in the real installer.
pub const STAGE2_DIR: &str = "/run/nixos-lift/handoff";

pub const PLAN_FILE: &str = "plan.json";
pub const FACTS_FILE: &str = "facts.json";
pub const NETWORK_FILE: &str = "network.json";
pub const SECRETS_FILE: &str = "secrets.json";
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";
pub const MACHINE_ID_FILE: &str = "machine-id";
pub const AGENT_FILE: &str = "nixos-lift";

/// The installer tarball's manifest (nixos-lift's own layout), next to the kernel.
pub const MANIFEST_FILE: &str = "kexec/manifest.json";
