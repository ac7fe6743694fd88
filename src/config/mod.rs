//! The config file: one strict YAML schema, checked in two steps.
//!
//! [`Config::load`] parses; every single value checks itself while parsing (see `values`), so
//! its error carries the value's line and column. [`Config::validate`] then checks what spans
//! several keys and fills the defaults that depend on others, giving a [`ValidConfig`].
//! Every error is one line: `file:line:column: key.path: what was expected` (exit code 78).

mod error;
mod flake;
mod locate;
mod placeholder;
pub mod secret;
mod size;
pub(crate) mod values;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use error::ConfigError;
pub use flake::{FlakeRef, FlakeTarget};
pub use placeholder::{FLAKE_PLACEHOLDERS, INSTALLER_PLACEHOLDERS};
pub use secret::Secret;
pub use size::ByteSize;
pub use values::{
    Arch, AuthorizedKey, DiskSelector, HttpUrl, InstallerSource, InstallerUrl, Sha256, StorePath,
    TimeSpan, TokenHost, TrustedPublicKey,
};

use error::Invalid;

/// The schema version this agent reads.
pub const CONFIG_VERSION: u32 = 1;
/// The fully commented example; `nixos-lift config example` prints it.
pub const EXAMPLE: &str = include_str!("../../cloud-init/nixos-lift.example.yaml");
/// A config is a few kilobytes; anything far bigger is the wrong file.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// `installer.url` when the file gives none: the installer released with this very agent, so
/// the handoff format always matches. The release pipeline stamps its own release's URL in
/// (`NIXOS_LIFT_INSTALLER_URL` at build time, so a fork's release points at the fork).
pub const DEFAULT_INSTALLER_URL: &str = match option_env!("NIXOS_LIFT_INSTALLER_URL") {
    Some(url) => url,
    None => concat!(
        "https://github.com/nixos-lift/nixos-lift/releases/download/v",
        env!("CARGO_PKG_VERSION"),
        "/nixos-lift-installer-{arch}-linux.tar.gz"
    ),
};

/// Digests of the default installer, compiled into release builds
/// (`NIXOS_LIFT_INSTALLER_SHA256_X86_64=... cargo build --release`; packaging/build-static.sh
/// `--installer ARCH=FILE` sets them). A build without them has no pins, and stage 1 refuses
/// the default installer unless the file pins or allows it.
pub fn default_installer_pins() -> BTreeMap<Arch, Sha256> {
    [
        (
            Arch::X86_64,
            option_env!("NIXOS_LIFT_INSTALLER_SHA256_X86_64"),
        ),
        (
            Arch::Aarch64,
            option_env!("NIXOS_LIFT_INSTALLER_SHA256_AARCH64"),
        ),
    ]
    .into_iter()
    .filter_map(|(arch, hex)| Some((arch, Sha256::try_from(hex?.to_string()).ok()?)))
    .collect()
}

/// The file as written (defaults applied, cross-key rules not yet checked).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub version: Version,
    pub flake: FlakeRef,
    #[serde(default)]
    pub disk: DiskSelector,
    #[serde(default)]
    pub installer: InstallerSection,
    #[serde(default)]
    pub ssh: Ssh,
    #[serde(default)]
    pub nix: Nix,
    #[serde(default)]
    pub system: Option<StorePath>,
    #[serde(default)]
    pub report: Report,
    #[serde(default)]
    pub min_memory: Option<ByteSize>,
    #[serde(default = "yes")]
    pub reboot: bool,
    #[serde(default)]
    pub keep_host_keys: bool,
    #[serde(default)]
    pub update: Update,
    /// Where the config came from, to point later errors at a line.
    #[serde(skip)]
    source: Source,
}

#[derive(Debug, Clone, Default)]
struct Source {
    file: PathBuf,
    /// The raw text holds the secrets.
    text: Secret,
}

/// `version`: must be [`CONFIG_VERSION`]; a file without it is read as that version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct Version(pub u32);

impl Default for Version {
    fn default() -> Self {
        Self(CONFIG_VERSION)
    }
}

impl TryFrom<u32> for Version {
    type Error = String;

    fn try_from(value: u32) -> Result<Self, String> {
        if value == CONFIG_VERSION {
            Ok(Self(value))
        } else {
            Err(format!(
                "expected {CONFIG_VERSION}, found {value}: this nixos-lift reads config version {CONFIG_VERSION}"
            ))
        }
    }
}

/// `installer` as written; every key optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallerSection {
    #[serde(default)]
    pub url: Option<InstallerUrl>,
    #[serde(default)]
    pub sha256: BTreeMap<Arch, Sha256>,
    #[serde(default)]
    pub allow_unpinned: bool,
}

/// The installer to fetch, defaults resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installer {
    pub url: InstallerUrl,
    /// Pinned digests: the file's, or this build's for the default URL.
    pub sha256: BTreeMap<Arch, Sha256>,
    pub allow_unpinned: bool,
    /// Whether `url` is [`DEFAULT_INSTALLER_URL`].
    pub is_default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    #[serde(default)]
    pub authorized_keys: Vec<AuthorizedKey>,
    #[serde(default = "yes")]
    pub use_metadata_keys: bool,
}

impl Default for Ssh {
    fn default() -> Self {
        Self {
            authorized_keys: Vec::new(),
            use_metadata_keys: true,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nix {
    #[serde(default)]
    pub substituters: Vec<HttpUrl>,
    #[serde(default)]
    pub trusted_public_keys: Vec<TrustedPublicKey>,
    #[serde(default)]
    pub access_tokens: BTreeMap<TokenHost, Secret>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    #[serde(default)]
    pub webhook_url: Option<HttpUrl>,
    #[serde(default)]
    pub webhook_token: Option<Secret>,
}

/// `update`: day 2. The installed system keeps pulling the same flake (or, in fleet mode, the
/// system path a URL names) and switches to it (nix/modules/update.nix).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    pub enable: bool,
    /// How long after one pull the next starts (the timer's `OnUnitActiveSec=`).
    #[serde(default)]
    pub interval: TimeSpan,
    /// Switch by `boot` and a reboot instead of switching the running system.
    #[serde(default)]
    pub reboot: bool,
    /// Fleet mode: a URL whose body names the prebuilt system's store path.
    #[serde(default)]
    pub system_url: Option<HttpUrl>,
}

fn yes() -> bool {
    true
}

/// A config whose cross-key rules hold, with every default resolved. Only [`Config::validate`]
/// makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig {
    pub flake: FlakeRef,
    pub disk: DiskSelector,
    pub installer: Installer,
    pub ssh: Ssh,
    pub nix: Nix,
    pub system: Option<StorePath>,
    pub report: Report,
    /// The user's override of the memory guard's computed need; `None` computes it from the
    /// installer's size (`plan::memory`).
    pub min_memory: Option<ByteSize>,
    pub reboot: bool,
    pub keep_host_keys: bool,
    pub update: Update,
}

impl Config {
    /// Reads and parses `path`. Warns when the file holds secrets and others can read it.
    pub fn load(path: &Path) -> crate::Result<Config> {
        let fail = |message: String| ConfigError {
            file: path.to_path_buf(),
            location: None,
            key: String::new(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("reading the file: {e}")))?;
        if !meta.is_file() {
            return Err(fail("expected a regular file".to_string()).into());
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(fail(format!(
                "expected a config file under {}, found {} bytes",
                ByteSize(MAX_FILE_BYTES),
                meta.len()
            ))
            .into());
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| fail(format!("reading the file: {e}")))?;
        let config = Self::parse(path, text)?;
        if config.has_secrets() {
            warn_if_readable(path, &meta);
        }
        Ok(config)
    }

    /// Parses config text; `file` only names it in errors.
    pub fn parse(file: &Path, text: String) -> crate::Result<Config> {
        let blank = text
            .lines()
            .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'));
        if blank {
            return Err(ConfigError {
                file: file.to_path_buf(),
                location: None,
                key: String::new(),
                message: "the file is empty, expected a mapping with at least `flake`".to_string(),
            }
            .into());
        }
        let deserializer = serde_yaml::Deserializer::from_str(&text);
        let mut config: Config = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| error::from_yaml(file.to_path_buf(), &text, e))?;
        config.source = Source {
            file: file.to_path_buf(),
            text: Secret::new(text),
        };
        Ok(config)
    }

    /// Whether the file holds any secret value.
    pub fn has_secrets(&self) -> bool {
        !self.nix.access_tokens.is_empty() || self.report.webhook_token.is_some()
    }

    /// Checks the rules that span several keys and resolves the defaults.
    pub fn validate(self) -> crate::Result<ValidConfig> {
        self.check_rules().map_err(|invalid| {
            let location = locate::locate(self.source.text.expose(), &invalid.key);
            ConfigError {
                file: self.source.file.clone(),
                location,
                key: invalid.key,
                message: invalid.message,
            }
        })?;
        let installer = self.resolved_installer();
        Ok(ValidConfig {
            flake: self.flake,
            disk: self.disk,
            installer,
            ssh: self.ssh,
            nix: self.nix,
            system: self.system,
            report: self.report,
            min_memory: self.min_memory,
            reboot: self.reboot,
            keep_host_keys: self.keep_host_keys,
            update: self.update,
        })
    }

    fn resolved_installer(&self) -> Installer {
        let section = &self.installer;
        match &section.url {
            Some(url) => Installer {
                url: url.clone(),
                sha256: section.sha256.clone(),
                allow_unpinned: section.allow_unpinned,
                is_default: false,
            },
            None => {
                let mut sha256 = default_installer_pins();
                sha256.extend(section.sha256.clone());
                Installer {
                    url: InstallerUrl::default_release(),
                    sha256,
                    allow_unpinned: section.allow_unpinned,
                    is_default: true,
                }
            }
        }
    }

    fn check_rules(&self) -> Result<(), Invalid> {
        let installer = self.resolved_installer();
        if !installer.is_default && installer.sha256.is_empty() && !installer.allow_unpinned {
            return Err(Invalid::new(
                "installer.url",
                "expected installer.sha256 with a digest for each arch you boot (x86_64, aarch64) \
                 next to your own installer.url, or allow_unpinned: true to trust whatever it serves",
            ));
        }
        if installer.allow_unpinned && !installer.url.is_https() {
            return Err(Invalid::new(
                "installer.allow_unpinned",
                "an unpinned installer must come over https://; pin installer.sha256 to use http://",
            ));
        }
        if installer.sha256.len() > 1 && !installer.url.has_arch() {
            return Err(Invalid::new(
                "installer.url",
                "expected `{arch}` in the URL when installer.sha256 pins more than one arch \
                 (one file cannot match two digests)",
            ));
        }
        if self.update.system_url.is_some() && self.nix.substituters.is_empty() {
            return Err(Invalid::new(
                "update.system_url",
                "expected nix.substituters too: the fleet pull copies the named system from the first of them",
            ));
        }
        let report = &self.report;
        if report.webhook_token.is_some() {
            match &report.webhook_url {
                None => {
                    return Err(Invalid::new(
                        "report.webhook_token",
                        "expected report.webhook_url too: the token has nowhere to go",
                    ))
                }
                Some(url) if !url.is_https() => {
                    return Err(Invalid::new(
                        "report.webhook_url",
                        "expected an https:// URL: the webhook token would travel in clear",
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl Installer {
    /// The pinned digest for `arch`, if any.
    pub fn sha256_for(&self, arch: Arch) -> Option<&Sha256> {
        self.sha256.get(&arch)
    }
}

/// Warns (it is not an error: cloud-init writes files as it likes) when a file with secrets can
/// be read by other users.
#[cfg(unix)]
fn warn_if_readable(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "{}: holds secrets but is readable by group or others (mode {mode:04o}); chmod 600 it",
            path.display()
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable(_path: &Path, _meta: &std::fs::Metadata) {}

impl ValidConfig {
    /// Loads, parses and validates `path`.
    pub fn load(path: &Path) -> crate::Result<ValidConfig> {
        Config::load(path)?.validate()
    }

    /// A few lines saying what the config will do, for `config check`. No secret values.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(out, "  flake: {}", self.flake);
        let _ = writeln!(out, "  disk: {}", self.disk);
        let pinned: Vec<String> = self
            .installer
            .sha256
            .iter()
            .map(|(arch, sha)| format!("{} {sha}", arch.as_str()))
            .collect();
        let pins = match (pinned.is_empty(), self.installer.allow_unpinned) {
            (false, _) => format!("sha256 pinned: {}", pinned.join(", ")),
            (true, true) => "unpinned, allowed by allow_unpinned".to_string(),
            (true, false) => "no sha256 pinned".to_string(),
        };
        let _ = writeln!(
            out,
            "  installer: {} ({pins})",
            self.installer.url.template()
        );
        let _ = writeln!(
            out,
            "  ssh: {}, metadata keys {}",
            plural(self.ssh.authorized_keys.len(), "authorized key"),
            if self.ssh.use_metadata_keys {
                "used"
            } else {
                "ignored"
            }
        );
        let _ = writeln!(
            out,
            "  nix: {}, {}, {} (values hidden)",
            plural(self.nix.substituters.len(), "substituter"),
            plural(self.nix.trusted_public_keys.len(), "trusted public key"),
            plural(self.nix.access_tokens.len(), "access token"),
        );
        let system = self.system.as_ref().map_or(
            "none (the flake is evaluated on the machine)",
            StorePath::as_str,
        );
        let _ = writeln!(out, "  system: {system}");
        let report = match (&self.report.webhook_url, &self.report.webhook_token) {
            (None, _) => "serial console and journal only".to_string(),
            (Some(url), token) => format!(
                "webhook {url} ({})",
                if token.is_some() {
                    "with token"
                } else {
                    "no token"
                }
            ),
        };
        let _ = writeln!(out, "  report: {report}");
        let _ = match self.min_memory {
            Some(min) => writeln!(out, "  min_memory: {min} (overrides the computed need)"),
            None => writeln!(
                out,
                "  min_memory: computed from the installer's size (default)"
            ),
        };
        let _ = writeln!(
            out,
            "  reboot: {}, keep_host_keys: {}",
            yes_no(self.reboot),
            yes_no(self.keep_host_keys)
        );
        let update = &self.update;
        let _ = if update.enable {
            writeln!(
                out,
                "  update: every {} {}, {}",
                update.interval,
                update.system_url.as_ref().map_or_else(
                    || "from the same flake".to_string(),
                    |url| format!("the system path named at {url}")
                ),
                if update.reboot {
                    "boot and reboot"
                } else {
                    "switch"
                }
            )
        } else {
            writeln!(out, "  update: off (the installed system does not pull)")
        };
        out
    }
}
