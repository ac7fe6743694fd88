//! The command line. Help text is for users: every option says what it does and its default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "nixos-lift",
    version,
    about = "Turn a stock cloud VM into your NixOS flake, from user-data, with nobody logged in",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Log format on stderr: `text` for people, `json` for machines. [default: text]
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log detail; repeat for more (-v debug, -vv trace). NIXOS_LIFT_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less log detail; repeat for less (-q warnings only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
    Text,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what nixos-lift knows about this machine: host, firmware, disks, network, cloud.
    Detect(DetectArgs),
    /// Work with the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Read /sys, /proc, /dev and /etc under this directory instead of /, for fixtures and
    /// rehearsals. [default: /]
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub inspect: InspectArgs,
    /// Output format. [default: json when stdout is not a terminal, else text]
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file and report the first problem as `file:line:column: key: message`.
    Check {
        /// The config file (YAML).
        file: PathBuf,
    },
}
