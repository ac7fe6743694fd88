//! Printing results as JSON, YAML or text.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use crate::{Error, Result};

/// `--format` of the commands that print a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
    Text,
}

/// JSON when stdout is not a terminal, else text.
pub fn resolve(format: Option<OutputFormat>) -> OutputFormat {
    format.unwrap_or_else(|| {
        if std::io::stdout().is_terminal() {
            OutputFormat::Text
        } else {
            OutputFormat::Json
        }
    })
}

/// Prints `value` in the machine formats, or `text` for people.
pub fn print<T: Serialize>(
    value: &T,
    format: OutputFormat,
    text: impl FnOnce() -> String,
) -> Result<()> {
    let rendered = match format {
        OutputFormat::Json => {
            serde_json::to_string_pretty(value).map_err(|e| Error::encoding("JSON", e))?
        }
        OutputFormat::Yaml => {
            serde_yaml::to_string(value).map_err(|e| Error::encoding("YAML", e))?
        }
        OutputFormat::Text => text(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", rendered.trim_end()).or_else(ignore_closed_pipe)
}

/// Prints `text` exactly as given, for output that is pasted elsewhere (user-data).
pub fn print_raw(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .or_else(ignore_closed_pipe)
}

/// A reader that stopped early (`detect | head`) is not a failure of ours.
fn ignore_closed_pipe(err: std::io::Error) -> Result<()> {
    match err.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(Error::io("writing stdout", err)),
    }
}
