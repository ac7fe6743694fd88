//! Config errors: one line, `file:line:column: key.path: what was expected`.

use std::fmt;
use std::path::PathBuf;

/// A problem with the config file. The message never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the problem can be pinned to a place in the file.
    pub location: Option<(usize, usize)>,
    /// Dotted key path, e.g. `installer.sha256.x86_64`; empty for the whole document.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.location {
            write!(f, ":{line}:{column}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A validation failure before it knows its file and place: the key and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Turns a serde_yaml error (already carrying serde_path_to_error's key path) into one line.
///
/// serde's own wording is kept where it is clear; string values are cut out of it, because the
/// value may be a token typed under the wrong key.
pub(crate) fn from_yaml(
    file: PathBuf,
    text: &str,
    err: serde_path_to_error::Error<serde_yaml::Error>,
) -> ConfigError {
    let path = err.path().to_string();
    let inner = err.inner();
    let mut location = inner.location().map(|l| (l.line(), l.column()));
    // The location goes in front; libyaml's messages may name several, all dropped here.
    let mut message = strip_locations(&inner.to_string());
    // serde_yaml prefixes its own idea of the path; ours comes from serde_path_to_error.
    if let Some((prefix, rest)) = message.split_once(": ") {
        let path_like = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.[]?-".contains(c));
        if path_like && path.starts_with(prefix) {
            message = rest.to_string();
        }
    }
    let mut key = if path == "." { String::new() } else { path };
    let message = reword(&mut key, message);
    // Some errors are raised after the value was read, and serde_yaml then points at the
    // enclosing mapping; the key's own line is more useful.
    let nth = usize::from(message == DUPLICATE);
    if let Some(found) = super::locate::locate_nth(text, &key, nth) {
        if location.is_none_or(|(line, _)| line < found.0) {
            location = Some(found);
        }
    }
    ConfigError {
        file,
        location,
        key: redact_token_host(key),
        message,
    }
}

/// A map key under `nix.access_tokens` that is not a host name may be the token itself.
fn redact_token_host(key: String) -> String {
    const TOKENS: &str = "nix.access_tokens.";
    match key.strip_prefix(TOKENS) {
        Some(host) if super::TokenHost::try_from(host.to_string()).is_err() => {
            format!("{TOKENS}<key>")
        }
        _ => key,
    }
}

fn strip_locations(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(" at line ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let line_len = digits(after);
        match after[line_len..].strip_prefix(" column ") {
            Some(col) if line_len > 0 && digits(col) > 0 => rest = &col[digits(col)..],
            _ => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

const DUPLICATE: &str = "key appears twice";

/// Rewrites serde's generic messages into "what was expected", moving a named field into the key.
fn reword(key: &mut String, message: String) -> String {
    let join = |key: &mut String, field: &str| {
        if !key.is_empty() && !key.ends_with(field) {
            key.push('.');
            key.push_str(field);
        } else if key.is_empty() {
            key.push_str(field);
        }
    };
    if let Some(field) = backticked(&message, "missing field `") {
        join(key, &field);
        return "required key is missing".to_string();
    }
    if let Some(field) = backticked(&message, "unknown field `") {
        join(key, &field);
        return match message.split_once(", expected ") {
            Some((_, expected)) => format!("unknown key, expected {}", expected.replace('`', "")),
            None => "unknown key, this table takes no keys".to_string(),
        };
    }
    if let Some(field) = backticked(&message, "duplicate field `") {
        join(key, &field);
        return DUPLICATE.to_string();
    }
    redact_strings(message)
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(field, _)| field.to_string())
}

/// `invalid type: string "ghp_...", expected a map` loses the quoted value.
fn redact_strings(message: String) -> String {
    let Some(start) = message.find("string \"") else {
        return message;
    };
    let value_start = start + "string ".len();
    match message[value_start..].rfind("\", expected") {
        Some(end) => format!(
            "{}string{}",
            &message[..start],
            &message[value_start + end + 1..]
        ),
        None => message[..start + "string".len()].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_are_cut_from_serde_messages() {
        assert_eq!(
            redact_strings("invalid type: string \"ghp_x\\\"y\", expected a map".into()),
            "invalid type: string, expected a map"
        );
        assert_eq!(
            redact_strings("invalid value: string \"tok".into()),
            "invalid value: string"
        );
    }

    #[test]
    fn locations_are_stripped_from_messages() {
        assert_eq!(
            strip_locations("found end at line 4 column 1, while scanning at line 3 column 8"),
            "found end, while scanning"
        );
        assert_eq!(strip_locations("at line x"), "at line x");
    }

    #[test]
    fn display_is_one_line_with_location_and_key() {
        let err = ConfigError {
            file: "c.yaml".into(),
            location: Some((3, 5)),
            key: "disk".into(),
            message: "expected auto".into(),
        };
        assert_eq!(err.to_string(), "c.yaml:3:5: disk: expected auto");
    }
}
