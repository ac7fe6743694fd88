//! Logging: to stderr, and to journald as well when its socket exists and stderr is not
//! already the journal.

use std::path::Path;

use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer};

use crate::report::PROGRESS_TARGET;

const JOURNALD_SOCKET: &str = "/run/systemd/journal/socket";
/// Environment variable with a tracing filter that overrides `-v`/`-q`.
pub const LOG_ENV: &str = "NIXOS_LIFT_LOG";

/// `--log-format`: `text` for people, `json` for machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What `-v`, `-q` and `--log-format` asked for.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub format: LogFormat,
    pub verbose: u8,
    pub quiet: u8,
}

fn default_level(args: &Options) -> &'static str {
    match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    }
}

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init(args: &Options) {
    let filter =
        EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default_level(args)));
    // Under a systemd unit whose stderr is the journal, stderr alone is enough (both would log
    // twice), and it is the one the unit routes on: `StandardError=journal+console` puts stage 1's
    // progress on the serial console, where an operator without SSH looks.
    let journald = if stderr_is_journal() || !Path::new(JOURNALD_SOCKET).exists() {
        None
    } else {
        tracing_journald::layer().ok()
    };
    let ansi = crate::terminal::Stderr::current().colours();
    let stderr = match args.format {
        LogFormat::Json => Some(
            fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .boxed(),
        ),
        LogFormat::Text => {
            let progress = |meta: &tracing::Metadata<'_>| meta.target() == PROGRESS_TARGET;
            let plain = fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false)
                .without_time()
                .with_filter(filter_fn(move |m| !progress(m)));
            // Stage 1's progress lines, as they are: `nixos-lift: [2/5] downloading ...`.
            let bare = fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_level(false)
                .with_target(false)
                .without_time()
                .with_filter(filter_fn(progress));
            Some(plain.and_then(bare).boxed())
        }
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(journald)
        .with(stderr)
        .try_init();
}

/// True when stderr is the journal stream systemd connected: `JOURNAL_STREAM` names its
/// `device:inode`. Children inherit the variable with stderr redirected elsewhere (cloud-init's
/// runcmd output goes through a pipe to `tee`), so the variable alone proves nothing.
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(meta) => dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino()),
        Err(_) => false,
    }
}
