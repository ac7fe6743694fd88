//! nixos-images' real `kexec/run`: the script from the upstream snapshot in
//! `../shared/upstream/nixos-images-*.tar.gz`, substituted the way its module.nix does, is read
//! by `cmdline_from_run` and also run by `sh` against recording stubs, and both must give kexec
//! the same command line. Parameters the script's quoting breaks must be refused, not cut short.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use nixos_lift::fetch::extract::cmdline_from_run;

mod common;
use common::upstream::{substituted, upstream, PARAMS, TOPLEVEL};

/// Runs `script` as `kexec/run` with sh in a fresh directory, where `kexec` and `ip` are stubs
/// beside it. The stub kexec writes its arguments, one a line, and fails: the script then takes
/// its "kexec failed" branch and exits 1, before its tail (`exec > /dev/kmsg`, the background
/// `sleep 6 && kexec -e`) runs. `cp`, `cpio` and `dmesg` are stubs too, so that no host key or
/// kernel log is read. Returns kexec's arguments, `None` when it was never called.
fn run_with_stubs(script: &str) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let kexec_dir = dir.path().join("kexec");
    let bin = dir.path().join("bin");
    let args = dir.path().join("kexec-args");
    std::fs::create_dir(&kexec_dir).unwrap();
    std::fs::create_dir(&bin).unwrap();
    let write = |path: PathBuf, text: &str| {
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write(kexec_dir.join("run"), script);
    write(kexec_dir.join("initrd"), "");
    write(kexec_dir.join("bzImage"), "");
    write(
        kexec_dir.join("kexec"),
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$KEXEC_ARGS\"\nexit 1\n",
    );
    write(kexec_dir.join("ip"), "#!/bin/sh\necho '[]'\n");
    write(bin.join("cp"), "#!/bin/sh\nexit 0\n");
    write(bin.join("cpio"), "#!/bin/sh\ncat >/dev/null\n");
    write(bin.join("dmesg"), "#!/bin/sh\nexit 0\n");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let out = Command::new("sh")
        .arg(kexec_dir.join("run"))
        .env_clear()
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("HOME", &home)
        .env("KEXEC_ARGS", &args)
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("kexec failed, dumping dmesg"),
        "the script did not get to its kexec: {stdout}\n{stderr}"
    );
    let args = std::fs::read_to_string(args).ok()?;
    Some(args.lines().map(str::to_string).collect())
}

/// The word after `--command-line` in kexec's arguments, and what follows it.
fn command_line_arg(args: &[String]) -> (&str, &[String]) {
    let at = args
        .iter()
        .position(|a| a == "--command-line")
        .unwrap_or_else(|| panic!("no --command-line in {args:?}"));
    (&args[at + 1], &args[at + 2..])
}

#[test]
fn the_real_script_passes_init_and_every_parameter() {
    let script = substituted(&PARAMS);
    assert!(
        script.contains("kernelParams=\"'console=tty0' 'console=ttyS0,115200' 'zswap.enabled=1'"),
        "{script}"
    );
    let expected = format!("init={TOPLEVEL}/init {}", PARAMS.join(" "));
    assert_eq!(cmdline_from_run(&script).as_deref(), Ok(expected.as_str()));

    let args = run_with_stubs(&script).expect("the stub kexec was not called");
    assert_eq!(args[0], "--load");
    assert!(args[1].ends_with("/kexec/bzImage"), "{args:?}");
    let (cmdline, rest) = command_line_arg(&args);
    assert_eq!(cmdline, expected);
    assert!(rest.is_empty(), "{args:?}");
}

#[test]
fn the_real_script_with_a_bare_parameter() {
    // `quiet` matches escapeShellArg's safe set, so it goes in unquoted.
    let params = ["console=ttyS0,115200", "quiet", "loglevel=7"];
    let script = substituted(&params);
    assert!(
        script.contains("kernelParams=\"'console=ttyS0,115200' quiet 'loglevel=7'\""),
        "{script}"
    );
    let expected = format!("init={TOPLEVEL}/init console=ttyS0,115200 quiet loglevel=7");
    assert_eq!(cmdline_from_run(&script).as_deref(), Ok(expected.as_str()));
    let args = run_with_stubs(&script).unwrap();
    assert_eq!(command_line_arg(&args).0, expected);
}

#[test]
fn a_parameter_with_a_space_is_cut_by_the_script_and_refused() {
    // sh really hands kexec a cut command line and a stray word: refused, not passed on.
    let script = substituted(&["console=ttyS0,115200", "foo=a b"]);
    let args = run_with_stubs(&script).unwrap();
    let (cmdline, rest) = command_line_arg(&args);
    assert_eq!(
        cmdline,
        format!("init={TOPLEVEL}/init console=ttyS0,115200 foo=a")
    );
    assert_eq!(rest, ["b"]);
    let err = cmdline_from_run(&script).unwrap_err();
    assert!(err.contains("is followed by \"b\""), "{err}");
}

#[test]
fn a_parameter_with_a_quote_breaks_the_script_and_is_refused() {
    // escapeShellArg writes `'\''`, which sed turns into `'''`: the inner sh -c fails to parse.
    let script = substituted(&["console=ttyS0,115200", "it's"]);
    assert!(script.contains("'it'''s'"), "{script}");
    assert_eq!(run_with_stubs(&script), None, "sh -c should not parse");
    assert_eq!(
        cmdline_from_run(&script).unwrap_err(),
        "in the sh -c string: a ' opened on line 1 is never closed"
    );
}

#[test]
fn the_unsubstituted_script_is_refused() {
    let [script] = &upstream(&["nix/kexec-installer/kexec-run.sh"])[..] else {
        unreachable!()
    };
    assert_eq!(
        cmdline_from_run(script).unwrap_err(),
        "the command line still has the placeholder @init@: module.nix's substitution was not \
         applied"
    );
}
