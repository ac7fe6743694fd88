//! nixos-lift: a pull-model NixOS installer for cloud VMs.
//!
//! Stage 1 runs in the stock image (detect, plan, fetch, hand off, kexec) and never writes a
//! disk; stage 2 runs in the RAM-only installer (restore network, partition, install, report).

pub mod cli;
pub mod config;
pub mod detach;
pub mod error;
pub mod facts;
pub mod fetch;
pub mod generate;
pub mod handoff;
pub mod host;
pub mod http;
pub mod install;
pub mod kexec;
pub mod logging;
pub mod output;
pub mod phase;
pub mod plan;
pub mod provider;
pub mod refusal;
pub mod report;
pub mod sshkey;
pub mod stage1;
pub mod terminal;
pub mod userdata;

mod command;

pub use command::run;
pub use error::{Error, Result};
