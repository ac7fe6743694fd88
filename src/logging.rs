//! Logging: to journald when its socket exists, else to stderr.

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
    let stderr = match (journald.is_some(), args.log_format) {
        // When journald takes the log, stderr stays for a human watching a terminal.
        (_, LogFormat::Json) => fmt::layer().json().with_writer(std::io::stderr).boxed(),
        (_, LogFormat::Text) => fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .without_time()
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .try_init();
}
