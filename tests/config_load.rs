//! The config API stage 1 and stage 2 use: defaults, newtypes, placeholders, redaction.

use std::path::{Path, PathBuf};

use nixos_lift::config::{
    default_installer_pins, Arch, ByteSize, Config, DiskSelector, Secret, ValidConfig,
    DEFAULT_INSTALLER_URL,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/configs")
        .join(name)
}

fn load(name: &str) -> ValidConfig {
    ValidConfig::load(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let config = load("good-minimal.yaml");
    assert_eq!(config.disk, DiskSelector::Auto);
    assert!(config.ssh.use_metadata_keys);
    assert!(config.ssh.authorized_keys.is_empty());
    assert!(config.reboot);
    assert!(!config.keep_host_keys);
    assert!(!config.installer.allow_unpinned);
    assert_eq!(config.system, None);
    assert_eq!(config.report.webhook_url, None);
    // Not written: the memory guard computes the need from the installer's size.
    assert_eq!(config.min_memory, None);
    // Day 2 is opt-in.
    assert!(!config.update.enable);
    assert_eq!(config.update.interval.as_str(), "1d");
    assert!(!config.update.reboot);
    assert_eq!(config.update.system_url, None);
}

#[test]
fn a_flake_alone_gets_the_release_installer_for_this_version() {
    let config = load("good-flake-only.yaml");
    assert!(config.installer.is_default);
    assert_eq!(config.installer.url.template(), DEFAULT_INSTALLER_URL);
    assert!(DEFAULT_INSTALLER_URL.contains(&format!("/v{}/", env!("CARGO_PKG_VERSION"))));
    assert_eq!(config.installer.sha256, default_installer_pins());
    assert!(!config.installer.allow_unpinned);
    // Your own URL never inherits the release pins.
    let own = load("good-minimal.yaml");
    assert!(!own.installer.is_default);
    assert_eq!(own.installer.sha256.len(), 1);
}

#[test]
fn a_prebuilt_system_sets_no_memory_default() {
    let config = load("good-fleet.yaml");
    assert!(config.system.is_some());
    assert_eq!(config.min_memory, None);
}

#[test]
fn every_key_of_the_full_fixture_is_read() {
    let config = load("good-full.yaml");
    assert_eq!(
        config.disk,
        DiskSelector::ById(
            "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0".into()
        )
    );
    let aarch64 = config
        .installer
        .sha256_for(Arch::Aarch64)
        .map(|s| s.as_hex());
    assert!(aarch64.is_some_and(|hex| hex.len() == 64 && hex == hex.to_ascii_lowercase()));
    assert_eq!(
        config
            .installer
            .url
            .resolve(Arch::Aarch64)
            .ok()
            .as_ref()
            .map(|u| u.as_str()),
        Some("https://example.com/releases/v1/nixos-lift-installer-aarch64-linux.tar.gz")
    );
    assert_eq!(config.ssh.authorized_keys.len(), 3);
    assert!(!config.ssh.use_metadata_keys);
    assert_eq!(
        config.nix.substituters[0].as_str(),
        "https://me.cachix.org/"
    );
    assert_eq!(config.nix.trusted_public_keys.len(), 1);
    let tokens: Vec<(&str, &str)> = config
        .nix
        .access_tokens
        .iter()
        .map(|(host, token)| (host.as_str(), token.expose().as_str()))
        .collect();
    assert_eq!(
        tokens,
        [
            ("github.com", "github_pat_FULLFIXTURETOKEN"),
            ("gitlab.example.com/group", "glpat-FULLFIXTURETOKEN")
        ]
    );
    assert_eq!(
        config
            .report
            .webhook_token
            .as_ref()
            .map(|t| t.expose().as_str()),
        Some("webhook-FULLFIXTURETOKEN")
    );
    assert_eq!(config.min_memory, Some(ByteSize(1536 << 20)));
    assert!(!config.reboot);
    assert!(config.keep_host_keys);
    assert!(config.update.enable);
    assert_eq!(config.update.interval.as_str(), "1h 30min");
    assert!(config.update.reboot);
    assert_eq!(
        config.update.system_url.as_ref().map(|u| u.as_str()),
        Some("https://fleet.example.com/web.path")
    );
}

#[test]
fn the_flake_resolves_per_machine() {
    let config = load("good-full.yaml");
    let target = config
        .flake
        .target("aarch64", "hetzner", "web-7")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(target.url, "git+ssh://git@github.com/me/fleet?ref=main");
    assert_eq!(target.attr, "hetzner-web-7-aarch64");
    assert_eq!(
        config.flake.resolve("aarch64", "hetzner", "web-7").ok(),
        Some(target.reference)
    );
    // A hostname from a metadata service cannot smuggle in another attribute or URL part.
    assert!(config
        .flake
        .resolve("aarch64", "hetzner", "x#evil")
        .is_err());
}

#[test]
fn debug_output_of_a_whole_config_hides_every_secret() {
    let config = load("good-full.yaml");
    let debug = format!("{config:?}");
    assert!(!debug.contains("FULLFIXTURETOKEN"), "{debug}");
    assert!(debug.contains("<redacted>"));
    let raw = Config::load(&fixture("good-full.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(!format!("{raw:?}").contains("FULLFIXTURETOKEN"));
}

#[test]
fn secret_debug_is_redacted() {
    let secret: Secret = Secret::new("tok-123");
    assert_eq!(format!("{secret:?}"), "<redacted>");
    assert_eq!(secret.expose(), "tok-123");
}

#[test]
fn errors_are_config_errors_with_exit_78() {
    let err = ValidConfig::load(&fixture("bad-disk.yaml")).err();
    let err = err.unwrap_or_else(|| panic!("bad-disk.yaml was accepted"));
    assert_eq!(err.exit_code(), 78);
    assert_eq!(err.reason(), "config");
    match err {
        nixos_lift::Error::ConfigFile(e) => {
            assert_eq!(e.location, Some((8, 7)));
            assert_eq!(e.key, "disk");
        }
        other => panic!("not a config error: {other}"),
    }
}
