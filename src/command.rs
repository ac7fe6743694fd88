//! Dispatch from parsed CLI to the library.

use crate::cli::{Cli, Command, ConfigCommand};
use crate::host::{self, SysRoot};
use crate::{output, Result};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Detect(args) => {
            let facts = host::inspect(&SysRoot::new(&args.inspect.root))?;
            output::print(&facts, output::resolve(args.format), || {
                host::summary(&facts)
            })
        }
        Command::Config(ConfigCommand::Check { file }) => Err(crate::Error::Other(format!(
            "{}: config check is not implemented yet",
            file.display()
        ))),
    }
}
