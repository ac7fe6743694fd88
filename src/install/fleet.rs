//! Fleet mode's prebuilt pieces: the disko script comes from the prebuilt system's closure,
//! so stage 2 evaluates and builds nothing.

use serde::Deserialize;

use super::tools::Tools;
use crate::plan::Plan;
use crate::refusal::{Guard, Refusal};
use crate::{Error, Result};

/// Where the prebuilt system's toplevel links its disko script (nixos-lift's NixOS module
/// adds the link: `system.build.diskoScript`).
pub const DISKO_LINK: &str = "disko-script";

/// The binary cache fleet mode copies from: the first substituter.
pub fn substituter(plan: &Plan) -> Result<&str> {
    plan.nix
        .substituters
        .first()
        .map(|s| s.as_str())
        .ok_or_else(|| {
            Error::refused(
                "install",
                Refusal::new(
                    Guard::FleetSubstituter,
                    "`system` set and no substituter",
                    "a binary cache that holds it",
                    "add nix.substituters to the config",
                ),
            )
        })
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    target: Option<String>,
}

/// Reads `SYSTEM/disko-script` from the substituter without copying the system, then copies
/// the script's closure into the installer's own store; returns the script's path.
pub fn disko_script(tools: &Tools, from: &str, system: &str) -> Result<String> {
    let link = format!("{system}/{DISKO_LINK}");
    let out = tools.run("nix", &["store", "ls", "--store", from, "--json", &link])?;
    let entry: Entry = serde_json::from_str(out.trim())
        .map_err(|e| Error::Other(format!("reading `nix store ls` of {link}: {e}")))?;
    let script = match (entry.kind.as_str(), entry.target) {
        ("symlink", Some(t)) if is_store_path(&t) => t,
        (kind, target) => {
            return Err(Error::refused(
                "partition",
                Refusal::new(
                    Guard::FleetDiskoScript,
                    format!(
                        "{link} as {kind}{}",
                        target.map(|t| format!(" to {t}")).unwrap_or_default()
                    ),
                    "a link to the prebuilt disko script",
                    "build the system with nixos-lift's disko layouts, which link \
                     system.build.diskoScript there",
                ),
            ))
        }
    };
    tools.run("nix", &["copy", "--from", from, &script])?;
    Ok(script)
}

fn is_store_path(p: &str) -> bool {
    p.strip_prefix("/nix/store/").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-._?=/".contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_store_paths_are_run() {
        assert!(is_store_path("/nix/store/abc-disko"));
        assert!(!is_store_path("/nix/store/"));
        assert!(!is_store_path("/tmp/disko"));
        assert!(!is_store_path("/nix/store/abc disko; rm -rf /"));
    }
}
