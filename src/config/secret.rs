//! Secrets: values that must never reach a log, an error message or argv.

use std::fmt;

use serde::{Deserialize, Deserializer, Serializer};
use zeroize::{Zeroize, Zeroizing};

/// A secret: a token (`String`, the default) or a key file's bytes. Debug prints `<redacted>`,
/// the one redaction every struct holding a secret relies on. There is no Display, so
/// `format!("{token}")` fails to compile rather than writing `<redacted>` where the value was
/// meant; read the value with [`Secret::expose`]. The memory is wiped on drop. It has no `Serialize`: the one file that
/// holds secrets (`secrets.json`) writes them through [`exposed`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T: Zeroize = String>(Zeroizing<T>);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: impl Into<T>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The value itself. Call this only where the secret is used (an HTTP header, a 0600 file).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize + Default> Default for Secret<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `serialize_with` helpers for the fields of `secrets.json`, the one place secrets are written.
pub mod exposed {
    use std::collections::BTreeMap;

    use serde::ser::SerializeMap;

    use super::*;

    pub fn option<S: Serializer>(value: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(secret) => s.serialize_some(secret.expose().as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn map<S: Serializer>(value: &BTreeMap<String, Secret>, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(value.len()))?;
        for (key, secret) in value {
            map.serialize_entry(key, secret.expose().as_str())?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Secret<String> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Zeroizing::new(String::deserialize(deserializer)?);
        if value.trim().is_empty() {
            return Err(serde::de::Error::custom("expected a non-empty secret"));
        }
        Ok(Self(value))
    }
}

/// Names what kind of credential is embedded in a URL-like string, without the value.
///
/// Catches `scheme://user:password@host`, a bare `https://token@host`, and query parameters
/// such as `access_token=`. `git+ssh://git@host` is a user name, not a credential, and passes.
pub(crate) fn embedded_credential(reference: &str) -> Option<&'static str> {
    if let Some((scheme, rest)) = reference.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if let Some((userinfo, _host)) = authority.rsplit_once('@') {
            if userinfo.contains(':') {
                return Some("a password in the URL (user:password@)");
            }
            let ssh = scheme.ends_with("ssh");
            if !ssh {
                return Some("a token as the URL's user name (token@host)");
            }
        }
    }
    let query = reference.split_once('?').map(|(_, q)| q)?;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .map(|pair| {
            pair.split('=')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
        .any(|name| {
            [
                "token", "password", "passwd", "secret", "auth", "api_key", "apikey",
            ]
            .iter()
            .any(|word| name.contains(word))
        })
        .then_some("a credential in the URL's query (?access_token=...)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let secret: Secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn credentials_in_urls_are_found() {
        for url in [
            "git+https://user:tok@example.com/repo",
            "https://ghp_abc@github.com/me/repo",
            "github:me/fleet?access_token=abc",
            "https://example.com/x?ref=main&private_token=abc",
            "git+ssh://git:pw@example.com/repo",
        ] {
            assert!(embedded_credential(url).is_some(), "{url}");
        }
        for url in [
            "github:me/fleet",
            "git+ssh://git@github.com/me/fleet",
            "git+https://example.com/repo?ref=main&rev=abc",
            "https://example.com/installer-{arch}.tar.gz",
        ] {
            assert_eq!(embedded_credential(url), None, "{url}");
        }
    }
}
