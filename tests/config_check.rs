//! `nixos-lift config check` and `config example` against the shipped example and the fixtures
//! in tests/fixtures/configs/. Each `bad-*.yaml` fixture says on its first line what the error
//! must be (`# expect: LINE:COL: KEY: MESSAGE...`), and may name a value that must never be
//! printed (`# secret: VALUE`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;

const CONFIG_EXIT: i32 = 78;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/configs")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn nixos_lift(args: &[&str]) -> Run {
    let output = Command::cargo_bin("nixos-lift")
        .unwrap_or_else(|e| panic!("binary: {e}"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("NIXOS_LIFT_LOG")
        .output()
        .unwrap_or_else(|e| panic!("running nixos-lift: {e}"));
    Run {
        code: output.status.code(),
        stdout: strip_ansi(&String::from_utf8_lossy(&output.stdout)),
        stderr: strip_ansi(&String::from_utf8_lossy(&output.stderr)),
    }
}

fn check(path: &Path) -> Run {
    nixos_lift(&["config", "check", &path.to_string_lossy()])
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn assert_accepted(path: &Path) -> Run {
    let run = check(path);
    assert_eq!(run.code, Some(0), "{}: {}", path.display(), run.stderr);
    assert!(
        run.stdout.starts_with(&format!("{}: ok\n", path.display())),
        "{}",
        run.stdout
    );
    run
}

/// Whether this build carries digests for its default installer (a release build does).
fn build_has_default_pins() -> bool {
    !nixos_lift::config::default_installer_pins().is_empty()
}

/// A config that names no installer: accepted by a release build, whose default installer is
/// pinned; otherwise refused with exit 10, naming the guard and the way out.
fn assert_default_installer_verdict(path: &Path) -> Run {
    if build_has_default_pins() {
        return assert_accepted(path);
    }
    let run = check(path);
    assert_eq!(run.code, Some(10), "{}: {}", path.display(), run.stderr);
    assert!(
        run.stdout.starts_with(&format!(
            "{}: valid, but stage 1 refuses it on every architecture\n",
            path.display()
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(
            "refusing to take over any machine with this config: installer-pinned: found the \
             default installer, which this build carries no digest for (a development build) \
             (on x86_64), needed installer.sha256 for this architecture; way out: run a release \
             build"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(on aarch64)"), "{}", run.stderr);
    assert!(
        run.stderr.contains("way out: run a release build"),
        "{}",
        run.stderr
    );
    run
}

#[test]
fn the_shipped_example_is_judged_as_stage_1_would() {
    let run = assert_default_installer_verdict(&repo().join("cloud-init/nixos-lift.example.yaml"));
    assert!(run.stdout.contains("  flake: "), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("min_memory: computed from the installer's size (default)"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_config_pinned_for_one_arch_is_ok_for_that_arch_only_and_says_why() {
    let run = check(&fixtures().join("good-minimal.yaml"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains(": ok for x86_64 only\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("stage 1 would refuse")
            && run
                .stderr
                .contains("installer-pinned: found no sha256 for this architecture (on aarch64)")
            && run.stderr.contains("way out: pin installer.sha256"),
        "{}",
        run.stderr
    );
}

#[test]
fn config_example_prints_the_shipped_example() {
    let run = nixos_lift(&["config", "example"]);
    assert_eq!(run.code, Some(0));
    let shipped = fs::read_to_string(repo().join("cloud-init/nixos-lift.example.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(run.stdout, shipped);
}

#[test]
fn good_fixtures_are_accepted() {
    for name in ["good-full.yaml", "good-fleet.yaml"] {
        assert_accepted(&fixtures().join(name));
    }
}

#[test]
fn a_flake_alone_is_judged_by_whether_the_build_pins_its_default_installer() {
    let run = assert_default_installer_verdict(&fixtures().join("good-flake-only.yaml"));
    assert_eq!(
        run.stdout.contains("(no sha256 pinned)"),
        !build_has_default_pins(),
        "{}",
        run.stdout
    );
}

#[test]
fn every_bad_fixture_fails_with_its_one_line_error_and_exit_78() {
    let mut entries: Vec<PathBuf> = fs::read_dir(fixtures())
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{e}")).path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("bad-"))
        })
        .collect();
    entries.sort();
    assert!(entries.len() >= 40, "only {} bad fixtures", entries.len());
    let mut failures = Vec::new();
    for path in &entries {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
        let expect = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
        let secret = text
            .lines()
            .find_map(|line| line.strip_prefix("# secret: "));
        let run = check(path);
        let shown = path.display().to_string();
        let wanted = if expect.starts_with(|c: char| c.is_ascii_digit()) {
            format!("{shown}:{expect}")
        } else {
            format!("{shown}: {expect}")
        };
        let error_lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|line| line.contains("ERROR"))
            .collect();
        let ok = run.code == Some(CONFIG_EXIT)
            && error_lines.len() == 1
            && error_lines[0].contains(&wanted)
            && run.stdout.is_empty()
            && !run.stderr.contains("panicked")
            && secret.is_none_or(|s| !run.stderr.contains(s) && !run.stdout.contains(s));
        if !ok {
            failures.push(format!(
                "{shown}\n  want: {wanted} (exit {CONFIG_EXIT}{})\n  got (exit {:?}): {}",
                secret.map_or(String::new(), |s| format!(", never `{s}`")),
                run.code,
                run.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn secrets_of_a_valid_config_are_never_printed() {
    let run = assert_accepted(&fixtures().join("good-full.yaml"));
    assert!(
        run.stdout.contains("2 access tokens (values hidden)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("(with token)"), "{}", run.stdout);
    for output in [&run.stdout, &run.stderr] {
        assert!(!output.contains("FULLFIXTURETOKEN"), "{output}");
    }
}

#[test]
fn a_readable_file_with_secrets_gets_a_warning_and_a_private_one_does_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("config.yaml");
    fs::copy(fixtures().join("good-full.yaml"), &path).unwrap_or_else(|e| panic!("{e}"));
    let chmod = |mode| {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("{e}"))
    };

    chmod(0o644);
    let run = check(&path);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("readable by group or others (mode 0644); chmod 600 it"),
        "{}",
        run.stderr
    );

    chmod(0o600);
    let run = check(&path);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("WARN"), "{}", run.stderr);

    // No secrets, no warning, whatever the mode.
    fs::copy(fixtures().join("good-fleet.yaml"), &path).unwrap_or_else(|e| panic!("{e}"));
    chmod(0o644);
    assert!(!check(&path).stderr.contains("WARN"));
}

#[test]
fn unreadable_empty_and_odd_files_are_config_errors() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.path().join("missing.yaml");
    let run = check(&missing);
    assert_eq!(run.code, Some(CONFIG_EXIT));
    assert!(
        run.stderr
            .contains(&format!("{}: reading the file:", missing.display())),
        "{}",
        run.stderr
    );

    let empty = dir.path().join("empty.yaml");
    fs::write(&empty, "").unwrap_or_else(|e| panic!("{e}"));
    let run = check(&empty);
    assert_eq!(run.code, Some(CONFIG_EXIT));
    assert!(run.stderr.contains(": the file is empty"), "{}", run.stderr);

    let run = check(dir.path());
    assert_eq!(run.code, Some(CONFIG_EXIT));
    assert!(
        run.stderr.contains("expected a regular file"),
        "{}",
        run.stderr
    );

    let binary = dir.path().join("binary.yaml");
    fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap_or_else(|e| panic!("{e}"));
    let run = check(&binary);
    assert_eq!(run.code, Some(CONFIG_EXIT));
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    let huge = dir.path().join("huge.yaml");
    fs::write(&huge, "#".repeat(2 << 20)).unwrap_or_else(|e| panic!("{e}"));
    let run = check(&huge);
    assert_eq!(run.code, Some(CONFIG_EXIT));
    assert!(
        run.stderr.contains("expected a config file under 1MiB"),
        "{}",
        run.stderr
    );
}

#[test]
fn user_data_refuses_a_config_no_pinned_agent_arch_could_use() {
    let sha = "1".repeat(64);
    let example = repo().join("cloud-init/nixos-lift.example.yaml");
    let run = nixos_lift(&[
        "user-data",
        "--config",
        &example.to_string_lossy(),
        "--agent-sha256",
        &format!("x86_64={sha}"),
    ]);
    if build_has_default_pins() {
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    } else {
        assert_eq!(run.code, Some(10), "{}", run.stderr);
        assert!(run.stdout.is_empty(), "{}", run.stdout);
        assert!(
            run.stderr
                .contains("installer-pinned: found the default installer"),
            "{}",
            run.stderr
        );
    }
    // Pinned for x86_64 only: fine for x86_64 agents, refused when only aarch64 ones are pinned.
    let minimal = fixtures().join("good-minimal.yaml");
    let arm_only = nixos_lift(&[
        "user-data",
        "--config",
        &minimal.to_string_lossy(),
        "--agent-sha256",
        &format!("aarch64={sha}"),
    ]);
    assert_eq!(arm_only.code, Some(10), "{}", arm_only.stderr);
    let x86 = nixos_lift(&[
        "user-data",
        "--config",
        &minimal.to_string_lossy(),
        "--agent-sha256",
        &format!("x86_64={sha}"),
    ]);
    assert_eq!(x86.code, Some(0), "{}", x86.stderr);
    assert!(x86.stdout.starts_with("#cloud-config"), "{}", x86.stdout);
}
