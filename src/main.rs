use std::process::ExitCode;

use clap::{ColorChoice, CommandFactory, FromArgMatches};

use nixos_lift::cli::Cli;

fn main() -> ExitCode {
    // clap styles usage errors and help only where log lines may be coloured too.
    let color = if nixos_lift::terminal::Stderr::current().colours() {
        ColorChoice::Auto
    } else {
        ColorChoice::Never
    };
    let cli = Cli::from_arg_matches(&Cli::command().color(color).get_matches())
        .unwrap_or_else(|err| err.exit());
    nixos_lift::logging::init(&cli.global.logging());
    match nixos_lift::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(reason = err.reason(), errno = err.errno(), "{err}");
            ExitCode::from(err.exit_code())
        }
    }
}
