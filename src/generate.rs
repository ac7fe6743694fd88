//! `nixos-lift generate`: shell completions and man pages from the clap definition, for
//! packagers (`packaging/build-static.sh` calls it), so they never drift from `--help`.

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::{Error, Result};

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, &mut std::io::stdout().lock());
    Ok(())
}

/// Writes `nixos-lift.1` and one page per visible subcommand (`nixos-lift-detect.1`, ...).
pub fn man_pages(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| Error::io(format!("writing man pages to {}", dir.display()), e))
}
