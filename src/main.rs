use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = nixos_lift::cli::Cli::parse();
    nixos_lift::logging::init(&cli.global);
    match nixos_lift::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(reason = err.reason(), "{err}");
            ExitCode::from(err.exit_code())
        }
    }
}
