//! `{name}` placeholders in the flake reference and the installer URL, so one user-data serves
//! a mixed fleet.

use crate::{Error, Result};

/// The placeholders of `flake`.
pub const FLAKE_PLACEHOLDERS: &[&str] = &["arch", "provider", "hostname"];
/// The placeholders of `installer.url`.
pub const INSTALLER_PLACEHOLDERS: &[&str] = &["arch"];

/// Checks that every `{...}` in `template` names one of `allowed` and that braces pair up.
/// The message names the placeholder, never the rest of the value (it may hold a token).
pub(crate) fn check(template: &str, allowed: &[&str]) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("a `}` without its `{`".to_string());
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("a `{` without its `}`".to_string());
        };
        let name = &after[..close];
        if !allowed.contains(&name) {
            let shown: String = name.chars().take(32).collect();
            return Err(format!(
                "unknown placeholder `{{{shown}}}`, expected one of {}",
                list(allowed)
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Replaces each `{name}` with its value. Values are restricted to `[A-Za-z0-9._-]` so that a
/// hostname from a metadata service cannot change the shape of a flake reference or URL.
pub(crate) fn substitute(template: &str, values: &[(&str, &str)]) -> Result<String> {
    let mut out = template.to_string();
    for (name, value) in values {
        let needle = format!("{{{name}}}");
        if !out.contains(&needle) {
            continue;
        }
        let safe = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !safe {
            return Err(Error::Other(format!(
                "resolving placeholder {needle}: value {value:?} has characters outside [A-Za-z0-9._-]"
            )));
        }
        out = out.replace(&needle, value);
    }
    Ok(out)
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_placeholders_pass_and_others_fail() {
        assert!(check("github:me/f#{hostname}-{arch}", FLAKE_PLACEHOLDERS).is_ok());
        assert!(check("https://x/{arch}/{provider}", INSTALLER_PLACEHOLDERS)
            .err()
            .unwrap_or_default()
            .contains("`{provider}`"));
        assert!(check("a{arch", FLAKE_PLACEHOLDERS).is_err());
        assert!(check("a}b", FLAKE_PLACEHOLDERS).is_err());
        assert!(check("a{}b", FLAKE_PLACEHOLDERS).is_err());
    }

    #[test]
    fn substitution_refuses_values_that_reshape_the_reference() {
        let out = substitute("g:me/f#{hostname}", &[("hostname", "web-1")]);
        assert_eq!(out.ok().as_deref(), Some("g:me/f#web-1"));
        assert!(substitute("g:me/f#{hostname}", &[("hostname", "a#b")]).is_err());
        assert!(substitute("g:me/f#{hostname}", &[("hostname", "")]).is_err());
    }
}
