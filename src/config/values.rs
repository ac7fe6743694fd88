//! Newtypes for single config values. Each checks itself while the file is parsed, so its
//! error carries the value's line and column.

use std::fmt;

use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

use super::placeholder::{self, INSTALLER_PLACEHOLDERS};
use super::secret::embedded_credential;
use crate::Result;

/// The CPU architectures nixos-lift installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl TryFrom<String> for Arch {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|arch| arch.as_str() == value)
            .ok_or_else(|| "expected an arch: x86_64 or aarch64".to_string())
    }
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }

    /// From `uname -m` / `host.arch`; `None` for architectures nixos-lift does not install.
    pub fn from_uname(machine: &str) -> Option<Self> {
        match machine {
            "x86_64" => Some(Self::X86_64),
            "aarch64" | "arm64" => Some(Self::Aarch64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SHA-256 digest: 64 hex digits, kept lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256(String);

impl TryFrom<String> for Sha256 {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim();
        if value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Self(value.to_ascii_lowercase()))
        } else {
            Err(format!(
                "expected a sha256 of 64 hex digits (as `sha256sum` prints), found {} characters",
                value.chars().count()
            ))
        }
    }
}

impl Sha256 {
    pub fn as_hex(&self) -> &str {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `disk`: which disk stage 2 wipes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DiskSelector {
    /// The disk that holds the running root filesystem.
    #[default]
    Auto,
    /// A `/dev/disk/by-id/...` link: survives renaming between stage 1 and stage 2.
    ById(String),
    /// Any other `/dev/...` path, e.g. `/dev/nvme0n1` or `/dev/disk/by-path/...`.
    Path(String),
}

impl TryFrom<String> for DiskSelector {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let expected =
            "expected `auto`, a /dev/disk/by-id/... link or a device path such as /dev/nvme0n1";
        let value = value.trim();
        if value == "auto" {
            return Ok(Self::Auto);
        }
        let Some(rest) = value.strip_prefix("/dev/") else {
            return Err(expected.to_string());
        };
        let clean = !rest.is_empty()
            && !rest.ends_with('/')
            && rest
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..")
            && !value.chars().any(|c| c.is_whitespace() || c.is_control());
        if !clean {
            return Err(format!("{expected}, without empty, `.` or `..` parts"));
        }
        match rest.strip_prefix("disk/by-id/") {
            Some(id) if !id.contains('/') => Ok(Self::ById(value.to_string())),
            Some(_) => Err(format!("{expected}; a by-id name has no `/`")),
            None if rest == "disk/by-id" => Err(format!("{expected}; the by-id name is missing")),
            None => Ok(Self::Path(value.to_string())),
        }
    }
}

impl fmt::Display for DiskSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::ById(path) | Self::Path(path) => f.write_str(path),
        }
    }
}

/// `installer.url`: where the installer tarball is, with an optional `{arch}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerUrl(String);

impl TryFrom<String> for InstallerUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim();
        placeholder::check(value, INSTALLER_PLACEHOLDERS)?;
        InstallerSource::try_from(value.replace("{arch}", "x86_64"))?;
        Ok(Self(value.to_string()))
    }
}

impl InstallerUrl {
    /// [`super::DEFAULT_INSTALLER_URL`].
    pub fn default_release() -> Self {
        Self(super::DEFAULT_INSTALLER_URL.to_string())
    }

    pub fn template(&self) -> &str {
        &self.0
    }

    pub fn has_arch(&self) -> bool {
        self.0.contains("{arch}")
    }

    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    /// The URL for one architecture. Fails only for a default URL set badly at build time.
    pub fn resolve(&self, arch: Arch) -> Result<InstallerSource, String> {
        let url = placeholder::substitute(&self.0, &[("arch", arch.as_str())])
            .map_err(|e| e.to_string())?;
        InstallerSource::try_from(url)
    }
}

/// One installer tarball's URL, `{arch}` resolved: `https://` or `http://` with a host, or
/// `file:///PATH` for rehearsals. Stage 1's installer-url guard decides which may be used where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerSource(url::Url);

impl TryFrom<String> for InstallerSource {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim();
        if let Some(kind) = embedded_credential(value) {
            return Err(format!(
                "{kind}: the installer must be downloadable without credentials"
            ));
        }
        if let Some(path) = value.strip_prefix("file://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err("expected file:///ABSOLUTE/PATH (three slashes, no host)".into());
            }
            return url::Url::parse(value)
                .map(Self)
                .map_err(|e| format!("expected file:///ABSOLUTE/PATH ({e})"));
        }
        http_url(value)
            .map(Self)
            .map_err(|e| format!("{e}, or file:///PATH for a rehearsal"))
    }
}

impl InstallerSource {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The file a `file://` source names; `None` for http(s).
    pub fn local_path(&self) -> Option<std::path::PathBuf> {
        match self.0.scheme() {
            "file" => self.0.to_file_path().ok(),
            _ => None,
        }
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }
}

impl fmt::Display for InstallerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `http://` or `https://` URL with a host and no credentials in it (`nix.substituters`,
/// `report.webhook_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(url::Url);

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim();
        if let Some(kind) = embedded_credential(value) {
            return Err(format!(
                "{kind}: use the matching token key (report.webhook_token, nix.access_tokens)"
            ));
        }
        http_url(value).map(Self)
    }
}

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    pub fn to_url(&self) -> url::Url {
        self.0.clone()
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

fn http_url(value: &str) -> Result<url::Url, String> {
    let expected = "expected an http:// or https:// URL with a host";
    let url = url::Url::parse(value).map_err(|e| format!("{expected} ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(expected.to_string());
    }
    Ok(url)
}

/// `nix.trusted_public_keys`: `name:base64`, as `nix-store --generate-binary-cache-key` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPublicKey(String);

impl TryFrom<String> for TrustedPublicKey {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim();
        let expected = "expected a Nix signing public key `name:base64`, e.g. cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";
        let (name, key) = value.split_once(':').ok_or(expected)?;
        // An ed25519 public key is 32 bytes: 44 base64 characters with padding.
        let base64 = key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
        if name.is_empty() || name.contains(char::is_whitespace) || key.len() != 44 || !base64 {
            return Err(expected.to_string());
        }
        Ok(Self(value.to_string()))
    }
}

/// `system`: a prebuilt NixOS system closure, `/nix/store/<hash>-<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePath(String);

impl TryFrom<String> for StorePath {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim();
        let expected = "expected a Nix store path /nix/store/<32-character hash>-<name>, e.g. the output of `nix build .#nixosConfigurations.web.config.system.build.toplevel`";
        let base = value.strip_prefix("/nix/store/").ok_or(expected)?;
        let (hash, name) = base.split_at_checked(32).ok_or(expected)?;
        // Nix's base32 alphabet leaves out e, o, t and u.
        let hash_ok = hash
            .chars()
            .all(|c| c.is_ascii_digit() || (c.is_ascii_lowercase() && !"eotu".contains(c)));
        let name_ok = name.len() > 1
            && name.starts_with('-')
            && !name.contains('/')
            && name[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._?=".contains(c));
        if !hash_ok || !name_ok {
            return Err(expected.to_string());
        }
        Ok(Self(value.to_string()))
    }
}

/// `update.interval`: a systemd time span such as `1d`, `6h` or `1h 30min`, as the update
/// timer's `OnUnitActiveSec=` takes it. A subset of systemd's units: no bare numbers (systemd
/// reads them as seconds, rarely what was meant) and no `M` (months there, minutes to many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeSpan(String);

/// Seconds per unit, as systemd.time(7) spells them.
const SPAN_UNITS: &[(&[&str], u64)] = &[
    (&["s", "sec", "second", "seconds"], 1),
    (&["min", "minute", "minutes"], 60),
    (&["h", "hr", "hour", "hours"], 3600),
    (&["d", "day", "days"], 86_400),
    (&["w", "week", "weeks"], 604_800),
];
/// A pull more often than this keeps the machine busy building; less often than a year is a typo.
const SPAN_MIN_SECONDS: u64 = 60;
const SPAN_MAX_SECONDS: u64 = 366 * 86_400;

impl TryFrom<String> for TimeSpan {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim();
        let expected =
            "expected a systemd time span such as 1d, 6h or 1h 30min (units s, min, h, d, w)";
        let mut total: u64 = 0;
        let mut rest = value;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let number: u64 = rest[..digits].parse().map_err(|_| expected.to_string())?;
            let after = rest[digits..].trim_start();
            let unit_len = after
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(after.len());
            let unit = &after[..unit_len];
            let seconds = SPAN_UNITS
                .iter()
                .find(|(names, _)| names.contains(&unit))
                .map(|(_, s)| *s)
                .ok_or_else(|| expected.to_string())?;
            total = number
                .checked_mul(seconds)
                .and_then(|s| total.checked_add(s))
                .ok_or_else(|| expected.to_string())?;
            rest = after[unit_len..].trim_start();
        }
        if !(SPAN_MIN_SECONDS..=SPAN_MAX_SECONDS).contains(&total) {
            return Err(format!(
                "expected a time span from 1min to 366d, found {value:?}"
            ));
        }
        Ok(Self(value.to_string()))
    }
}

impl Default for TimeSpan {
    fn default() -> Self {
        Self("1d".to_string())
    }
}

pub use crate::sshkey::AuthorizedKey;

/// A host name key of `nix.access_tokens`, as Nix's `access-tokens` setting takes it
/// (`github.com`, `gitlab.example.com`, optionally `host/path`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TokenHost(String);

impl TryFrom<String> for TokenHost {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        // A host needs a dot and has no `_`, which also tells it apart from tokens such as
        // `ghp_...` or `github_pat_...` typed as a key.
        let (host, path) = value.split_once('/').unwrap_or((value.as_str(), ""));
        let ok = host.contains('.')
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c));
        if ok {
            Ok(Self(value))
        } else {
            // The key may itself be a token pasted in the wrong place: do not echo it.
            Err(
                "expected a host name such as github.com as the key, with the token as its value"
                    .to_string(),
            )
        }
    }
}

/// Deserializes a string and checks it inside the visitor, so serde_yaml attaches the value's
/// own line and column to the error (`#[serde(try_from)]` would check too late for that).
pub(crate) fn checked<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<String, Error = String>,
{
    struct Checked<T>(PhantomData<T>);
    impl<T: TryFrom<String, Error = String>> Visitor<'_> for Checked<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
            T::try_from(value.to_string()).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Checked(PhantomData))
}

/// `impl Deserialize` through [`checked`] for types that are `TryFrom<String, Error = String>`.
macro_rules! deserialize_checked {
    ($($type:ty),* $(,)?) => {$(
        impl<'de> serde::Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::config::values::checked(deserializer)
            }
        }
    )*};
}
pub(crate) use deserialize_checked;

/// `as_str` for newtypes that hold their checked value as a `String`.
macro_rules! string_access {
    ($($type:ty),* $(,)?) => {$(
        impl $type {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

string_access!(TrustedPublicKey, StorePath, TokenHost, TimeSpan);

/// `impl Serialize` as the checked string, so a value that travels in `plan.json` reads back
/// through the same check ([`deserialize_checked`]).
macro_rules! serialize_as_str {
    ($($type:ty),* $(,)?) => {$(
        impl serde::Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    )*};
}

serialize_as_str!(
    Arch,
    Sha256,
    HttpUrl,
    InstallerSource,
    TrustedPublicKey,
    StorePath,
    TokenHost,
    TimeSpan,
    AuthorizedKey,
);

deserialize_checked!(
    Arch,
    Sha256,
    DiskSelector,
    InstallerUrl,
    InstallerSource,
    HttpUrl,
    TrustedPublicKey,
    StorePath,
    TokenHost,
    TimeSpan,
    AuthorizedKey,
);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok<T: TryFrom<String, Error = String>>(s: &str) -> bool {
        T::try_from(s.to_string()).is_ok()
    }

    #[test]
    fn time_spans_are_systemd_spans_with_units() {
        for good in ["1d", "6h", "1h 30min", "90min", "2w", "30s 1min"] {
            assert!(ok::<TimeSpan>(good), "{good}");
        }
        // Bare numbers, months, unknown units, zero and under a minute.
        for bad in [
            "",
            "60",
            "1M",
            "1 fortnight",
            "0d",
            "30s",
            "d",
            "1d x",
            "400d",
        ] {
            assert!(!ok::<TimeSpan>(bad), "{bad}");
        }
    }

    #[test]
    fn sha256_is_64_hex_digits() {
        assert!(ok::<Sha256>(&"aB".repeat(32)));
        assert!(!ok::<Sha256>(&"a".repeat(63)));
        assert!(!ok::<Sha256>(&"g".repeat(64)));
    }

    #[test]
    fn disk_selectors() {
        let parse = |s: &str| DiskSelector::try_from(s.to_string());
        assert_eq!(parse("auto"), Ok(DiskSelector::Auto));
        assert_eq!(
            parse("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0"),
            Ok(DiskSelector::ById(
                "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0".into()
            ))
        );
        assert_eq!(parse("/dev/vda"), Ok(DiskSelector::Path("/dev/vda".into())));
        for bad in [
            "",
            "sda",
            "/dev/",
            "/dev/../etc/passwd",
            "/dev/disk/by-id/",
            "/dev/sda/",
            "/dev/disk/by-id",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn store_paths() {
        assert!(ok::<StorePath>(
            "/nix/store/0c2dbvpl9f6kcg1ppazfy5x4cqwby5ds-nixos-system-web-24.11"
        ));
        assert!(!ok::<StorePath>("/nix/store/short-nixos"));
        assert!(!ok::<StorePath>(
            "/nix/store/0c2dbvpl9f6kcg1ppazfy5x4cqwby5ds-nixos/bin"
        ));
        assert!(!ok::<StorePath>("github:me/fleet#web"));
    }

    #[test]
    fn urls_and_keys() {
        assert!(ok::<InstallerUrl>("https://example.com/i-{arch}.tar.gz"));
        assert!(!ok::<InstallerUrl>("ftp://example.com/i.tar.gz"));
        // Whatever stage 1's installer-url guard allows for rehearsals, the schema accepts.
        for url in [
            "file:///run/installer-{arch}.tar.gz",
            "http://127.0.0.1:8080/i.tar.gz",
            "http://[fe80::1]/i.tar.gz",
        ] {
            assert!(ok::<InstallerUrl>(url), "{url}");
            let probe = InstallerUrl::try_from(url.to_string())
                .unwrap()
                .resolve(Arch::X86_64)
                .unwrap();
            assert!(crate::plan::guard::url_allowed(&probe), "{url}");
        }
        assert!(!ok::<InstallerUrl>("file://host/i.tar.gz"));
        assert!(!ok::<InstallerUrl>("file:relative/i.tar.gz"));
        assert!(!ok::<InstallerUrl>("file:///"));
        assert!(!ok::<InstallerUrl>("https://example.com/{hostname}.tar.gz"));
        assert!(ok::<HttpUrl>("https://cache.example.com"));
        assert!(!ok::<HttpUrl>("https://hooks.example.com/x?token=abc"));
        assert!(ok::<TrustedPublicKey>(
            "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="
        ));
        assert!(!ok::<TrustedPublicKey>("cache.nixos.org-1"));
        assert!(ok::<TokenHost>("github.com"));
        assert!(ok::<TokenHost>("gitlab.example.com/group"));
        assert!(!ok::<TokenHost>("https://github.com"));
        assert!(!ok::<TokenHost>("ghp_abcdef"));
        assert!(!ok::<TokenHost>("glpat-abcdef"));
    }
}
