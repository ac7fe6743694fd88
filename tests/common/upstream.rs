//! nixos-images' real `kexec/run`, from the upstream snapshot in
//! `../shared/upstream/nixos-images-*.tar.gz`, substituted as its module.nix does: the fixture for
//! every test that reads a `kexec/run`.

use std::io::Read;
use std::path::Path;

pub const TOPLEVEL: &str =
    "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-nixos-installer-26.05";

/// nixos-images' `boot.kernelParams` for the x86_64 kexec installer, in this order:
/// nix/serial.nix (`console=tty0`, then `console=ttyS0,115200`), nix/installer.nix (zswap),
/// nix/noveau-workaround.nix (imported by the noninteractive tarball nixos-anywhere uses).
pub const PARAMS: [&str; 7] = [
    "console=tty0",
    "console=ttyS0,115200",
    "zswap.enabled=1",
    "zswap.max_pool_percent=50",
    "zswap.compressor=zstd",
    "zswap.zpool=zsmalloc",
    "nouveau.modeset=0",
];

/// The snapshot's files under `nixos-images/`, by path below it.
pub fn upstream(files: &[&str]) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/upstream");
    let tarball = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; the upstream snapshots are needed", dir.display()))
        .map(|e| e.unwrap().path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("nixos-images-") && name.ends_with(".tar.gz")
        })
        .unwrap_or_else(|| {
            panic!(
                "no nixos-images-*.tar.gz in {}: this test reads the real kexec-run.sh from it",
                dir.display()
            )
        });
    let mut found = vec![None; files.len()];
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(&tarball).unwrap());
    let mut archive = tar::Archive::new(gz);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let Ok(rel) = path.strip_prefix("nixos-images") else {
            continue;
        };
        if let Some(i) = files.iter().position(|f| rel == Path::new(f)) {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            found[i] = Some(text);
        }
    }
    found
        .into_iter()
        .zip(files)
        .map(|(text, f)| text.unwrap_or_else(|| panic!("{}: no {f}", tarball.display())))
        .collect()
}

/// nixpkgs' `lib.strings.escapeShellArg` (lib/strings.nix): an argument matching
/// `[[:alnum:],._+:@%/-]+` stays bare; any other is wrapped in `'…'` with each `'` as `'\''`.
fn escape_shell_arg(arg: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || ",._+:@%/-".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// `lib.escapeShellArgs`: each argument escaped, joined by single spaces.
fn escape_shell_args(args: &[&str]) -> String {
    args.iter()
        .map(|a| escape_shell_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A sed `s|pattern|replacement|` (no `g`) on each line: the replacement's `&` is the match and
/// `\x` is `x`, as GNU sed reads it.
fn sed_s(text: &str, pattern: &str, replacement: &str) -> String {
    let mut repl = String::new();
    let mut chars = replacement.chars();
    while let Some(c) = chars.next() {
        match c {
            '&' => repl.push_str(pattern),
            '\\' => repl.extend(chars.next()),
            c => repl.push(c),
        }
    }
    text.split_inclusive('\n')
        .map(|line| line.replacen(pattern, &repl, 1))
        .collect()
}

/// kexec-run.sh after module.nix's build step, for `params`; checks module.nix still says so.
pub fn substituted(params: &[&str]) -> String {
    let [script, module] = &upstream(&[
        "nix/kexec-installer/kexec-run.sh",
        "nix/kexec-installer/module.nix",
    ])[..] else {
        unreachable!()
    };
    for sed in [
        "-e 's|@init@|${config.system.build.toplevel}/init|'",
        "-e 's|@kernelParams@|${lib.escapeShellArgs config.boot.kernelParams}|'",
    ] {
        assert!(module.contains(sed), "module.nix no longer has {sed}");
    }
    let script = sed_s(script, "@init@", &format!("{TOPLEVEL}/init"));
    sed_s(&script, "@kernelParams@", &escape_shell_args(params))
}
