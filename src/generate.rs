//! `nixos-lift generate`: shell completions and man pages from the clap definition, for
//! packagers (`packaging/build-static.sh` calls it), so they never drift from `--help`.

use std::path::Path;

use crate::{Error, Result};

/// Writes the completion script for `shell` to stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> Result<()> {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout().lock());
    Ok(())
}

/// Writes `nixos-lift.1` and one page per visible subcommand (`nixos-lift-detect.1`, ...).
pub fn man_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    clap_mangen::generate_to(cmd, dir)
        .map_err(|e| Error::io(format!("writing man pages to {}", dir.display()), e))
}
