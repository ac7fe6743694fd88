//! Logging: to journald when its socket exists, else to stderr.

use std::io::IsTerminal;
use std::path::Path;

use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::cli::{GlobalArgs, LogFormat};

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";
/// Environment variable with a tracing filter that overrides `-v`/`-q`.
pub const LOG_ENV: &str = "NIXOS_LIFT_LOG";

fn default_level(args: &GlobalArgs) -> &'static str {
    match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    }
}

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init(args: &GlobalArgs) {
    let filter =
        EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default_level(args)));
    let journald = Path::new(JOURNALD_SOCKET)
        .exists()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    // Under a systemd unit stderr already goes to the journal; writing both would log twice.
    let stderr_is_journal = journald.is_some() && std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::stderr().is_terminal();
    let stderr = match args.log_format {
        _ if stderr_is_journal => None,
        LogFormat::Json => Some(fmt::layer().json().with_writer(std::io::stderr).boxed()),
        LogFormat::Text => Some(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false)
                .without_time()
                .boxed(),
        ),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .try_init();
}
