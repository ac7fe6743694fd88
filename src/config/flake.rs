//! `flake`: a flake reference with a `#attribute`, possibly with placeholders.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::placeholder::{self, FLAKE_PLACEHOLDERS};
use super::secret::embedded_credential;
use crate::Result;

/// A flake reference split at `#`: the fetchable part and the `nixosConfigurations` attribute.
/// Both may contain `{arch}`, `{provider}` and `{hostname}` until [`FlakeRef::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlakeRef {
    url: String,
    attr: String,
}

/// Schemes the installer cannot fetch from: there is no local checkout in stage 2.
const LOCAL_SCHEMES: &[&str] = &["path:", "file:", "git+file:", "tarball+file:"];

impl TryFrom<String> for FlakeRef {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim();
        if let Some(kind) = embedded_credential(value) {
            return Err(format!(
                "{kind}: put the token in nix.access_tokens (host: token) instead"
            ));
        }
        placeholder::check(value, FLAKE_PLACEHOLDERS)?;
        let Some((url, attr)) = value.split_once('#') else {
            return Err(
                "expected a flake reference with an attribute, e.g. github:me/fleet#web (no `#` found)"
                    .to_string(),
            );
        };
        if attr.is_empty() || attr.contains('#') {
            return Err(
                "expected one non-empty attribute after `#`, e.g. github:me/fleet#web".to_string(),
            );
        }
        if !attr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-'.{}".contains(c))
        {
            return Err(
                "expected the attribute after `#` to be a nixosConfigurations name ([A-Za-z0-9_.'-])"
                    .to_string(),
            );
        }
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        let scheme_ok = !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
        if !scheme_ok || LOCAL_SCHEMES.iter().any(|s| url.starts_with(s)) {
            return Err(
                "expected a flake reference the installer can fetch, e.g. github:me/fleet, \
                 git+https://host/repo, git+ssh://git@host/repo or https://host/flake.tar.gz \
                 (not a local path)"
                    .to_string(),
            );
        }
        Ok(Self {
            url: url.to_string(),
            attr: attr.to_string(),
        })
    }
}

impl FlakeRef {
    /// The part before `#`, placeholders unresolved.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The attribute after `#`, placeholders unresolved.
    pub fn attr(&self) -> &str {
        &self.attr
    }

    /// The full reference with placeholders filled in, e.g. `github:me/fleet#web-x86_64`.
    /// Fails when a value has characters outside `[A-Za-z0-9._-]`.
    pub fn resolve(&self, arch: &str, provider: &str, hostname: &str) -> Result<String> {
        let target = self.target(arch, provider, hostname)?;
        Ok(target.reference)
    }

    /// Like [`FlakeRef::resolve`], split for `plan.json`.
    pub fn target(&self, arch: &str, provider: &str, hostname: &str) -> Result<FlakeTarget> {
        let values = [
            ("arch", arch),
            ("provider", provider),
            ("hostname", hostname),
        ];
        let url = placeholder::substitute(&self.url, &values)?;
        let attr = placeholder::substitute(&self.attr, &values)?;
        Ok(FlakeTarget {
            reference: format!("{url}#{attr}"),
            url,
            attr,
        })
    }
}

impl fmt::Display for FlakeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.url, self.attr)
    }
}

/// A flake reference with its placeholders filled in, as `plan.json` carries it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlakeTarget {
    /// The full reference, e.g. `github:me/fleet#cloud-x86_64`.
    pub reference: String,
    /// The part before `#`.
    pub url: String,
    /// The `nixosConfigurations` attribute name.
    pub attr: String,
}

super::values::deserialize_checked!(FlakeRef);

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<FlakeRef, String> {
        FlakeRef::try_from(s.to_string())
    }

    #[test]
    fn splits_and_resolves() {
        let flake =
            parse("github:me/fleet/{provider}#{hostname}-{arch}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(flake.url(), "github:me/fleet/{provider}");
        assert_eq!(flake.attr(), "{hostname}-{arch}");
        let target = flake
            .target("x86_64", "aws", "web-1")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(target.reference, "github:me/fleet/aws#web-1-x86_64");
        assert_eq!(target.url, "github:me/fleet/aws");
        assert_eq!(target.attr, "web-1-x86_64");
        assert!(flake.resolve("x86_64", "aws", "bad/host").is_err());
    }

    #[test]
    fn rejects_what_the_installer_cannot_use() {
        for bad in [
            "github:me/fleet",
            "github:me/fleet#",
            "github:me/fleet#a#b",
            "./fleet#web",
            "path:/etc/nixos#web",
            "github:me/fleet#we b",
            "github:me/fleet#{user}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn credential_errors_do_not_echo_the_token() {
        let err = parse("git+https://me:s3cr3t@example.com/fleet#web")
            .err()
            .unwrap_or_default();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("nix.access_tokens"), "{err}");
    }
}
