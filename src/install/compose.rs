//! Composing what gets installed: a wrapper flake whose input is the user's flake, and
//! whose configuration is the user's extended with a generated facts module.
//!
//! Everything the module sets is a default (`mkDefault`, or priority 999 for the disko
//! device so it beats a layout's own `mkDefault "/dev/vda"`): the user's settings win.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::facts::{Facts, Firmware};
use crate::handoff::Secrets;
use crate::plan::Plan;
use crate::{Error, Result};

pub const FLAKE_FILE: &str = "flake.nix";
pub const MODULE_FILE: &str = "nixos-lift-facts.nix";
/// The facts as the installed system sees them (also `/etc/nixos-lift/facts.json`).
pub const FACTS_JSON: &str = "facts.json";

/// What stage 2 decided, added to `facts.json` under `install` for modules that want it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstallFacts {
    pub hostname: String,
    /// The stable path disko partitions, e.g. `/dev/disk/by-id/virtio-root`.
    pub disk_device: String,
    /// The kernel name the disk had in the installer, e.g. `/dev/vda`.
    pub disk_path: String,
    pub authorized_keys: Vec<String>,
    pub flake: String,
    pub attr: String,
    pub firmware: Firmware,
    /// Day 2: what nix/modules/update.nix pulls and how; `null` when the config has no
    /// `update.enable`.
    pub update: Option<UpdateFacts>,
    /// The plan's network as NixOS values (`networks`, `nameservers`, `search`), rendered by
    /// `plan::networkd`: the only source of the installed system's network units.
    pub network: serde_json::Value,
}

/// `install.update` in facts.json: the plan's update section with the flake reference
/// resolved and the public Nix settings the pull uses. The secrets stay in the root-only
/// files named here ([`UPDATE_NIX_CONF`], [`UPDATE_WEBHOOK_TOKEN`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpdateFacts {
    /// The user's flake URL, `{arch}`, `{provider}` and `{hostname}` resolved.
    pub flake: String,
    pub attr: String,
    pub interval: String,
    pub reboot: bool,
    pub system_url: Option<String>,
    pub substituters: Vec<String>,
    pub trusted_public_keys: Vec<String>,
    pub webhook_url: Option<String>,
    /// Absolute paths on the installed system of the private files (present or not).
    pub nix_conf: String,
    pub webhook_token_file: String,
}

/// On the installed system: the access tokens, for `nix.conf`'s `!include`. Root-only (0600).
pub const UPDATE_NIX_CONF: &str = "/etc/nixos-lift/nix-private.conf";
/// The netrc a private binary cache's token goes in (named by [`UPDATE_NIX_CONF`]).
pub const UPDATE_NETRC: &str = "/etc/nixos-lift/netrc";
/// On the installed system: the webhook's bearer token, read by the update's report. 0600.
pub const UPDATE_WEBHOOK_TOKEN: &str = "/etc/nixos-lift/webhook-token";

impl UpdateFacts {
    /// `None` when the plan does not ask for day 2.
    pub fn from_plan(plan: &Plan) -> Option<Self> {
        let update = plan.update.as_ref()?;
        Some(Self {
            flake: plan.flake.url.clone(),
            attr: plan.flake.attr.clone(),
            interval: update.interval.to_string(),
            reboot: update.reboot,
            system_url: update.system_url.as_ref().map(ToString::to_string),
            substituters: words_list(&plan.nix.substituters),
            trusted_public_keys: words_list(&plan.nix.trusted_public_keys),
            webhook_url: plan.report.webhook_url.as_ref().map(ToString::to_string),
            nix_conf: UPDATE_NIX_CONF.to_string(),
            webhook_token_file: UPDATE_WEBHOOK_TOKEN.to_string(),
        })
    }
}

/// Writes the day-2 secrets into the mounted target `mnt`, each root-only: the access tokens
/// as a nix.conf fragment (the system's nix.conf `!include`s it, so they are never in the
/// world-readable nix.conf or the store) with its netrc, and the webhook token. Nothing is
/// written without `update` or without secrets; returns the paths written.
pub fn write_update_secrets(mnt: &Path, plan: &Plan, secrets: &Secrets) -> Result<Vec<String>> {
    if plan.update.is_none() {
        return Ok(Vec::new());
    }
    let under = |abs: &str| mnt.join(abs.trim_start_matches('/'));
    for file in [UPDATE_NIX_CONF, UPDATE_NETRC, UPDATE_WEBHOOK_TOKEN] {
        if let Some(dir) = under(file).parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
    }
    let mut written = Vec::new();
    if !secrets.nix_access_tokens.is_empty() {
        write_private(
            &under(UPDATE_NIX_CONF),
            &format!(
                "{}\nnetrc-file = {UPDATE_NETRC}\n",
                access_tokens_setting(secrets)
            ),
        )?;
        write_private(&under(UPDATE_NETRC), &netrc_entries(secrets))?;
        written.extend([UPDATE_NIX_CONF.to_string(), UPDATE_NETRC.to_string()]);
    }
    if let Some(token) = &secrets.webhook_token {
        write_private(
            &under(UPDATE_WEBHOOK_TOKEN),
            &format!("{}\n", token.expose()),
        )?;
        written.push(UPDATE_WEBHOOK_TOKEN.to_string());
    }
    Ok(written)
}

/// The files of the wrapper flake, before they are written.
#[derive(Debug, Clone)]
pub struct Wrapper {
    pub flake_nix: String,
    pub module_nix: String,
    pub facts_json: String,
}

impl Wrapper {
    /// `target` is the disk as the installer sees it; it goes into facts.json as `target`,
    /// which nixos-lift's Nix modules prefer over guessing.
    pub fn new(
        plan: &Plan,
        facts: &Facts,
        install: &InstallFacts,
        target: &crate::facts::Disk,
    ) -> Result<Self> {
        let mut facts_value =
            serde_json::to_value(facts).map_err(|e| Error::encoding("facts.json", e))?;
        if let serde_json::Value::Object(map) = &mut facts_value {
            map.insert(
                "target".into(),
                serde_json::to_value(target).map_err(|e| Error::encoding("facts.json", e))?,
            );
            map.insert(
                "install".into(),
                serde_json::to_value(install).map_err(|e| Error::encoding("facts.json", e))?,
            );
        }
        let facts_json = serde_json::to_string_pretty(&facts_value)
            .map_err(|e| Error::encoding("facts.json", e))?;
        Ok(Self {
            flake_nix: flake_nix(&plan.flake.url, &plan.flake.attr),
            module_nix: module_nix(install),
            facts_json,
        })
    }

    /// Writes the three files into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        for (name, text) in [
            (FLAKE_FILE, &self.flake_nix),
            (MODULE_FILE, &self.module_nix),
            (FACTS_JSON, &self.facts_json),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }
}

/// The flake reference of the wrapper's configuration, e.g. `path:/run/nixos-lift/flake#web`.
pub fn flake_ref(dir: &Path, attr: &str) -> String {
    format!("path:{}#{}", dir.display(), attr)
}

/// A Nix string literal for arbitrary text.
pub fn nix_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn nix_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(nix_str).collect();
    if items.is_empty() {
        "[ ]".into()
    } else {
        format!("[ {} ]", items.join(" "))
    }
}

fn flake_nix(url: &str, attr: &str) -> String {
    let attr = nix_str(attr);
    format!(
        r#"# Generated by nixos-lift. The user's flake plus this machine's facts
# (./{MODULE_FILE}). Rebuild later with:
#   nixos-rebuild switch --flake /etc/nixos#<name>
{{
  description = "nixos-lift wrapper around {url_comment}";

  inputs.user.url = {url};

  outputs = {{ user, ... }}:
    let
      base = user.nixosConfigurations.{attr};
      # The layout's disk names, read from the user's configuration alone, so the facts
      # module can point a single-disk layout at the disk stage 2 found.
      diskNames =
        if base.options ? disko.devices
        then builtins.attrNames base.config.disko.devices.disk
        else [ ];
    in
    {{
      nixosConfigurations.{attr} = base.extendModules {{
        modules = [ (import ./{MODULE_FILE} {{ inherit diskNames; }}) ];
      }};
    }};
}}
"#,
        url_comment = url.replace(['\n', '"'], ""),
        url = nix_str(url),
    )
}

fn module_nix(install: &InstallFacts) -> String {
    let mut hints = String::new();
    if install.firmware == Firmware::Uefi {
        hints.push_str(
            "    # UEFI firmware: GRUB as the removable EFI loader boots without NVRAM entries.\n\
             \x20   {\n\
             \x20     boot.loader.grub.efiSupport = lib.mkDefault true;\n\
             \x20     boot.loader.grub.efiInstallAsRemovable = lib.mkDefault true;\n\
             \x20   }\n",
        );
    }
    format!(
        r#"# Generated by nixos-lift from this machine's facts. Every value is a default:
# set it in your own configuration and yours wins.
{{ diskNames }}:
{{ lib, options, ... }}:
let
  diskDevice = {device};
  # The network units stage 1 planned and rendered (the same ones the facts module reads).
  network = (builtins.fromJSON (builtins.readFile ./{FACTS_JSON})).install.network;
in
{{
  config = lib.mkMerge [
{hints}    # A flake without nixos-lift's facts module gets this machine's identity from here; with
    # it, the module derives the same from facts.json, and setting both would list root's
    # keys and resolvers twice and add a second network unit for one MAC.
    (lib.optionalAttrs (!(options ? nixos-lift.factsFile)) {{
      networking.hostName = lib.mkDefault {hostname};
      users.users.root.openssh.authorizedKeys.keys = lib.mkDefault {keys};
      systemd.network.networks = lib.mapAttrs (_: lib.mkDefault) network.networks;
      networking.nameservers = lib.mkDefault network.nameservers;
      networking.search = lib.mkDefault network.search;
    }})
    # nixos-lift's own modules (nixosModules.facts, the disk layouts) read these.
    (lib.optionalAttrs (options ? nixos-lift.factsFile) {{
      nixos-lift.factsFile = lib.mkDefault ./{FACTS_JSON};
    }})
    (lib.optionalAttrs (options ? nixos-lift.disk.device) {{
      nixos-lift.disk.device = lib.mkOverride 999 diskDevice;
    }})
    # Any other single-disk layout goes on the disk stage 2 found; with more disks the
    # layout must name them itself (and stage 2 refuses any that is not the target).
    (lib.optionalAttrs (options ? disko.devices && builtins.length diskNames == 1) {{
      disko.devices.disk.${{builtins.head diskNames}}.device = lib.mkOverride 999 diskDevice;
    }})
  ];
}}
"#,
        device = nix_str(&install.disk_device),
        hostname = nix_str(&install.hostname),
        keys = nix_list(install.authorized_keys.iter().map(String::as_str)),
    )
}

/// The private Nix configuration: access tokens, substituters and keys. 0600, outside argv
/// and logs; children find it through `NIX_USER_CONF_FILES`.
pub fn write_nix_conf(path: &Path, plan: &Plan, secrets: &Secrets) -> Result<PathBuf> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut text = String::from("experimental-features = nix-command flakes\n");
    if !plan.nix.substituters.is_empty() {
        let _ = writeln!(
            text,
            "extra-substituters = {}",
            words(&plan.nix.substituters)
        );
    }
    if !plan.nix.trusted_public_keys.is_empty() {
        let _ = writeln!(
            text,
            "extra-trusted-public-keys = {}",
            words(&plan.nix.trusted_public_keys)
        );
    }
    if !secrets.nix_access_tokens.is_empty() {
        let _ = writeln!(text, "{}", access_tokens_setting(secrets));
        // access-tokens reach flake fetchers only; a private binary cache takes the token
        // from a netrc entry (HTTP basic auth's password, as Attic and Cachix read it).
        let netrc = path.with_file_name("netrc");
        write_private(&netrc, &netrc_entries(secrets))?;
        let _ = writeln!(text, "netrc-file = {}", netrc.display());
    }
    write_private(path, &text)?;
    Ok(path.to_path_buf())
}

/// The `access-tokens` line of a nix.conf, every host's token.
fn access_tokens_setting(secrets: &Secrets) -> String {
    let tokens: Vec<String> = secrets
        .nix_access_tokens
        .iter()
        .map(|(host, token)| format!("{host}={}", token.expose()))
        .collect();
    format!("access-tokens = {}", tokens.join(" "))
}

/// One netrc `machine` line per access token.
fn netrc_entries(secrets: &Secrets) -> String {
    secrets
        .nix_access_tokens
        .iter()
        .map(|(host, token)| format!("machine {host} password {}\n", token.expose()))
        .collect()
}

/// Writes a file readable by root only.
fn write_private(path: &Path, text: &str) -> Result<()> {
    super::write_file(path, 0o600, text.as_bytes())
}

fn words_list<T: std::fmt::Display>(values: &[T]) -> Vec<String> {
    values.iter().map(ToString::to_string).collect()
}

/// Values as one space-separated `nix.conf` setting.
fn words<T: std::fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn nix_strings_escape_quotes_backslashes_and_interpolation() {
        assert_eq!(nix_str(r#"a"b\c${d}$e"#), r#""a\"b\\c\${d}$e""#);
        assert_eq!(nix_str("x\ny"), r#""x\ny""#);
    }

    #[test]
    fn netrc_carries_the_token_itself() {
        let mut secrets = Secrets::default();
        secrets
            .nix_access_tokens
            .insert("cache.example".into(), crate::config::Secret::new("tok-42"));
        assert_eq!(
            netrc_entries(&secrets),
            "machine cache.example password tok-42\n"
        );
    }
}
