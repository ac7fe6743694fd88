//! How `run` leaves cloud-init behind: it starts itself again as the transient systemd service
//! `nixos-lift` (`systemd-run`), so cloud-init can finish while the takeover goes on under
//! systemd, logged to the journal and the console.
//!
//! The same service written as a unit file is `packaging/nixos-lift.service`, for review, for
//! `systemd-analyze verify` in CI, and for images that start the agent without cloud-init. Both
//! are rendered from [`PROPERTIES`]; the tests keep the file and the `systemd-run` arguments in
//! step.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// The unit name: `journalctl -u nixos-lift`.
pub const UNIT: &str = "nixos-lift";

/// Set in the detached service, so that `run` there does not detach again.
pub const DETACHED_ENV: &str = "NIXOS_LIFT_DETACHED";

/// Where user-data and `install.sh` put the agent (the shipped unit file's `ExecStart`).
pub const INSTALLED_AGENT: &str = "/usr/local/bin/nixos-lift";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Unit,
    Service,
}

/// Every property of the detached service besides `ExecStart`, passed to `systemd-run` as
/// `--property=NAME=VALUE` and written to the unit file as `NAME=VALUE` in its section.
const PROPERTIES: &[(Section, &str, &str)] = &[
    (
        Section::Unit,
        "Description",
        "nixos-lift stage 1: take this VM over into its NixOS flake",
    ),
    // Like `systemd-run --collect`: a failed run leaves its log in the journal, not a failed unit.
    (Section::Unit, "CollectMode", "inactive-or-failed"),
    (Section::Service, "Type", "simple"),
    (Section::Service, "Environment", "NIXOS_LIFT_DETACHED=1"),
    // The serial console is where operators watch a VM nobody logs in to.
    (Section::Service, "StandardOutput", "journal+console"),
    (Section::Service, "StandardError", "inherit"),
];

/// The `systemd-run` command that starts `exe run --config CONFIG RUN_ARGS...` as the service.
/// Only the config path and `run`'s options go into argv: the file holds the secrets, argv is
/// world-readable.
pub fn systemd_run(exe: &Path, config: &Path, run_args: &[String]) -> Command {
    let mut cmd = Command::new("systemd-run");
    cmd.arg(format!("--unit={UNIT}"));
    for (_, name, value) in PROPERTIES {
        cmd.arg(format!("--property={name}={value}"));
    }
    cmd.arg("--").args(exec_args(exe, config)).args(run_args);
    cmd
}

/// `packaging/nixos-lift.service`: the service `systemd_run` starts, for the installed agent
/// and the config path user-data writes; `run`'s own options (metadata, `--force`) are left at
/// their defaults here, where `systemd_run` appends the ones `run` was given.
pub fn unit_file() -> String {
    let exe = Path::new(INSTALLED_AGENT);
    let config = Path::new(crate::userdata::CONFIG_PATH);
    let mut text = String::from(
        "# The service `nixos-lift run` starts with systemd-run to detach from cloud-init.\n\
         # Generated from src/detach.rs; the tests keep this file and the code in step.\n",
    );
    for section in [Section::Unit, Section::Service] {
        text.push_str(match section {
            Section::Unit => "\n[Unit]\n",
            Section::Service => "\n[Service]\n",
        });
        for (_, name, value) in PROPERTIES.iter().filter(|(s, _, _)| *s == section) {
            text.push_str(&format!("{name}={value}\n"));
        }
    }
    let exec: Vec<String> = exec_args(exe, config)
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    text.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    text
}

fn exec_args<'a>(exe: &'a Path, config: &'a Path) -> [&'a OsStr; 4] {
    [
        exe.as_os_str(),
        OsStr::new("run"),
        OsStr::new("--config"),
        config.as_os_str(),
    ]
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    const SHIPPED: &str = include_str!("../packaging/nixos-lift.service");

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn the_shipped_unit_file_is_the_generated_one() {
        assert_eq!(
            SHIPPED,
            unit_file(),
            "packaging/nixos-lift.service is stale: regenerate it from detach::unit_file()"
        );
    }

    /// Read from the argv side: every systemd-run option must be a line of the unit file, and
    /// every line of the unit file must come from an option, so neither carries a property the
    /// other lacks.
    #[test]
    fn systemd_run_and_the_unit_file_agree() {
        let cmd = systemd_run(
            Path::new(INSTALLED_AGENT),
            Path::new(crate::userdata::CONFIG_PATH),
            &[],
        );
        assert_eq!(cmd.get_program(), "systemd-run");
        let argv = args(&cmd);
        let split = argv
            .iter()
            .position(|a| a == "--")
            .expect("-- before the command");
        let (options, command) = (&argv[..split], &argv[split + 1..]);

        let mut from_argv = vec![];
        for option in options {
            if let Some(unit) = option.strip_prefix("--unit=") {
                assert_eq!(unit, UNIT);
            } else if let Some(property) = option.strip_prefix("--property=") {
                from_argv.push(property.to_string());
            } else {
                panic!("systemd-run option {option} has no unit-file form");
            }
        }
        from_argv.push(format!("ExecStart={}", command.join(" ")));

        let from_file: Vec<String> = SHIPPED
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
            .map(str::to_string)
            .collect();
        assert_eq!(from_argv, from_file);
        assert!(from_file.contains(&format!("Environment={DETACHED_ENV}=1")));
    }

    #[test]
    fn run_options_are_passed_on_and_nothing_else_is_added() {
        let exe = Path::new("/run/x/nixos-lift");
        let config = Path::new("/etc/c.yaml");
        let extra = ["--provider".to_string(), "aws".into(), "--force".into()];
        let plain = args(&systemd_run(exe, config, &[]));
        let forced = args(&systemd_run(exe, config, &extra));
        assert_eq!(plain.last().map(String::as_str), Some("/etc/c.yaml"));
        assert_eq!(forced[..plain.len()], plain[..]);
        assert_eq!(forced[plain.len()..], extra);
    }
}
