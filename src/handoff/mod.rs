//! The handoff: what stage 1 passes to stage 2 inside an archive appended to the installer's
//! initrd. These names are a contract with `nix/installer` and stage 2.
//!
//! Layout of the appended newc archive (paths relative to the initramfs root):
//!
//! ```text
//! nixos-lift/plan.json          crate::plan::Plan
//! nixos-lift/facts.json         crate::facts::Facts (with `cloud`)
//! nixos-lift/secrets.json       0600: nix access tokens, webhook token
//! nixos-lift/authorized_keys    config + metadata + existing root keys
//! nixos-lift/networkd/*.network the plan's network as networkd units, for the installer
//! nixos-lift/resolved.conf      the plan's resolvers, for the installer's systemd-resolved
//! nixos-lift/machine-id
//! nixos-lift/nixos-lift         the running agent binary, 0755
//! nixos-lift/ssh_host_*        only with keep_host_keys: the stock image's host keys for the
//!                               target (private halves 0600)
//! nixos-lift/kexec.json         how stage 1 loaded the kernel (a later archive may override it)
//! nixos-lift/index.json         every file above and below with its mode, as written
//! addrs.json, routes-v4.json, routes-v6.json   nixos-images' restore-network input
//! ssh/authorized_keys, ssh/ssh_host_*          nixos-images' restore-state input
//! machine-id
//! ```
//!
//! The installer image copies `/nixos-lift` from the initrd to [`STAGE2_DIR`] before
//! switch-root; the busybox test fixture reads it in place.

use crate::config::secret::{exposed, Secret};

pub mod check;
pub mod read;

pub use read::Handoff;
pub mod cpio;
pub mod netstate;
pub mod payload;

/// Directory at the initramfs root that holds nixos-lift's own handoff files.
pub const INITRD_DIR: &str = "nixos-lift";
/// Where stage 2 finds the handoff in the real installer.
pub const STAGE2_DIR: &str = "/run/nixos-lift/handoff";

pub const PLAN_FILE: &str = "plan.json";
pub const FACTS_FILE: &str = "facts.json";
/// The installer's systemd-networkd units, rendered from the plan's network (one per interface).
pub const NETWORKD_DIR: &str = "networkd";
/// The installer's systemd-resolved drop-in: the plan's resolvers.
pub const RESOLVED_FILE: &str = "resolved.conf";
pub const SECRETS_FILE: &str = "secrets.json";
pub const AUTHORIZED_KEYS_FILE: &str = "authorized_keys";
/// The prefix of the SSH host key files (`ssh_host_ed25519_key`, `ssh_host_ed25519_key.pub`).
pub const HOST_KEY_PREFIX: &str = "ssh_host_";
pub const MACHINE_ID_FILE: &str = "machine-id";
pub const AGENT_FILE: &str = "nixos-lift";
pub const KEXEC_FILE: &str = "kexec.json";
/// Every other file the writer put in the archive, with its mode ([`payload::IndexEntry`]).
pub const INDEX_FILE: &str = "index.json";

/// nixos-images' restore-network input, at the initramfs root.
pub const ADDRS_FILE: &str = "addrs.json";
pub const ROUTES_V4_FILE: &str = "routes-v4.json";
pub const ROUTES_V6_FILE: &str = "routes-v6.json";

/// The installer tarball's manifest (nixos-lift's own layout), next to the kernel.
pub const MANIFEST_FILE: &str = "kexec/manifest.json";

/// `secrets.json` (mode 0600): the only handoff file with secrets. Never logged.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Nix `access-tokens`, host to token, e.g. `github.com` → `ghp_...`.
    #[serde(default, serialize_with = "exposed::map")]
    pub nix_access_tokens: std::collections::BTreeMap<String, Secret>,
    /// Bearer token for the progress webhook.
    #[serde(default, serialize_with = "exposed::option")]
    pub webhook_token: Option<Secret>,
}
