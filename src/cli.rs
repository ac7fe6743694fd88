//! The command line. Help text is for users: every option says what it does and its default.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::logging::LogFormat;
use crate::output::OutputFormat;

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
    /// Log format on stderr: `text` for people, `json` for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More log detail; repeat for more (-v debug, -vv trace). NIXOS_LIFT_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Less log detail; repeat for less (-q warnings only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print what nixos-lift knows about this machine: host, firmware, disks, network, cloud.
    Detect(DetectArgs),
    /// Work with the config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print ready-to-paste cloud-init user-data that installs the agent and runs it with a config.
    UserData(UserDataArgs),
    /// Generate shell completions or man pages from this command line definition (packaging).
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
    /// Decide, without changing anything: the target disk, the flake, the installer, the
    /// handoff and every guard. Exits 0 when runnable, 10 when a guard refuses.
    Plan(PlanArgs),
    /// Stage 1: plan, download and verify the installer, append the handoff to its initrd and
    /// kexec into it. Under cloud-init it re-launches itself as the systemd unit `nixos-lift`.
    Run(RunArgs),
    /// Download, verify and unpack an installer tarball exactly as `run` does, into a new
    /// directory, with no plan and no kexec: check an installer URL and its pin (and a
    /// self-built installer's layout) before deploying. Prints the layout, the kernel command
    /// line and the files.
    FetchInstaller(FetchInstallerArgs),
    /// Inspect the handoff that stage 1 passes to the installer.
    #[command(subcommand)]
    Handoff(HandoffCommand),
    /// Stage 2, inside the installer: restore the network, partition the target disk with
    /// the flake's disko layout, nixos-install the flake, then reboot.
    Install(InstallArgs),
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The handoff directory stage 1 left in the installer.
    #[arg(long, value_name = "DIR", default_value = crate::handoff::STAGE2_DIR)]
    pub handoff: PathBuf,
    /// Read /sys, /proc, /dev and write /run, /mnt, /etc under this directory instead of /;
    /// a rehearsal never reboots.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Where progress lines go besides the journal; repeat for several. /dev/tty0 is the
    /// screen that VNC consoles (Hetzner, DigitalOcean) show when the serial port is
    /// /dev/console.
    #[arg(long, value_name = "PATH", default_values = ["/dev/console", "/dev/tty0"])]
    pub console: Vec<PathBuf>,
    /// The kernel log device for progress lines.
    #[arg(long, value_name = "PATH", default_value = "/dev/kmsg")]
    pub kmsg: PathBuf,
    /// Seconds to wait for the flake's host and the substituters to answer.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub network_timeout: u64,
    /// Leave the network as it is (a rehearsal outside a network namespace).
    #[arg(long)]
    pub skip_network: bool,
    /// GCP metadata server for the `nixos-lift/status` guest attribute.
    #[arg(long, value_name = "URL", default_value = crate::report::GCP_METADATA_BASE)]
    pub metadata_base: String,
    /// Stop after this phase, without writing the disk.
    #[arg(long, value_name = "PHASE")]
    pub stop_after: Option<crate::install::InstallPhase>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Read /sys, /proc, /dev and /etc under this directory instead of /, for fixtures and
    /// rehearsals.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    #[command(flatten)]
    pub inspect: InspectArgs,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// Output format. [default: json when stdout is not a terminal, else text]
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

/// How the cloud is identified and its metadata service read (shared by `detect`, `plan`, `run`).
#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// Cloud provider: `auto` identifies it (DMI, then the metadata services); a name forces it:
    /// aws, gcp, azure, hetzner, digitalocean, vultr, akamai, oracle, scaleway, openstack,
    /// exoscale, upcloud, alibaba, nocloud, none.
    #[arg(long, value_name = "NAME|auto", default_value = "auto", value_parser = parse_provider)]
    pub provider: ProviderArg,
    /// Testing and rehearsal only: send every metadata request to this URL instead, replacing
    /// scheme, host and port (its path, if any, is prepended), e.g. a fake metadata server on
    /// http://127.0.0.1:8080. [default: each provider's metadata IP]
    #[arg(long, value_name = "URL")]
    pub metadata_base: Option<reqwest::Url>,
    /// Seconds the whole metadata phase may take, all retries included; 0 identifies the cloud
    /// from local signals (DMI) only.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub metadata_timeout: u64,
}

/// `--provider`: `None` is `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderArg(pub Option<crate::provider::ProviderKind>);

fn parse_provider(s: &str) -> Result<ProviderArg, String> {
    if s == "auto" {
        return Ok(ProviderArg(None));
    }
    <crate::provider::ProviderKind as ValueEnum>::from_str(s, true)
        .map(|k| ProviderArg(Some(k)))
        .map_err(|_| format!("unknown provider {s:?}; expected auto or one of the names in --help"))
}

impl GlobalArgs {
    pub fn logging(&self) -> crate::logging::Options {
        crate::logging::Options {
            format: self.log_format,
            verbose: self.verbose,
            quiet: self.quiet,
        }
    }
}

impl MetadataArgs {
    pub fn probe_options(&self) -> crate::provider::ProbeOptions {
        crate::provider::ProbeOptions {
            provider: self.provider.0,
            metadata_base: self.metadata_base.clone(),
            timeout: std::time::Duration::from_secs(self.metadata_timeout),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a config file: print `FILE: ok` and a summary, or the first problem as one line
    /// `file:line:column: key: what was expected` and exit with code 78.
    Check {
        /// The config file (YAML), e.g. /etc/nixos-lift/config.yaml.
        file: PathBuf,
    },
    /// Print a fully commented example config with every key, to start a new one from.
    Example,
}

#[derive(Debug, Args)]
pub struct UserDataArgs {
    /// The nixos-lift config file (YAML) to deliver. It is written on the VM to
    /// /etc/nixos-lift/config.yaml with mode 0600.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Where the VM downloads the agent; `{arch}` becomes `uname -m` (x86_64 or aarch64).
    /// [default: this version's GitHub release]
    #[arg(long, value_name = "URL", default_value = crate::userdata::DEFAULT_AGENT_URL, hide_default_value = true)]
    pub agent_url: String,
    /// Pin the agent's sha256 for one architecture, from the release's SHA256SUMS; repeat for
    /// each architecture the VMs may have. At least one is required. [arch: x86_64, aarch64]
    #[arg(long = "agent-sha256", value_name = "ARCH=HEX")]
    pub agent_sha256: Vec<crate::userdata::AgentPin>,
    /// Warn when the result is over this cloud's user-data size limit. [default: no check]
    #[arg(long, value_enum, value_name = "NAME")]
    pub provider: Option<crate::provider::ProviderKind>,
    /// Print gzip-compressed, base64-encoded user-data; refused for clouds that take user-data
    /// as plain text. Needs --provider.
    #[arg(long, requires = "provider")]
    pub gzip_base64: bool,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Print the completion script for a shell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages (nixos-lift.1 and one per subcommand) into a directory.
    Man {
        /// Output directory, created if missing.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum HandoffCommand {
    /// Check that a handoff is complete and well-formed and print its summary as `key=value`
    /// lines. Exits 1 when a file is missing or corrupt.
    Check(HandoffCheckArgs),
}

#[derive(Debug, Args)]
pub struct HandoffCheckArgs {
    /// The handoff directory. [default: /nixos-lift when it exists (the installer's initramfs),
    /// else /run/nixos-lift/handoff]
    #[arg(long, value_name = "DIR", conflicts_with = "archive")]
    pub dir: Option<PathBuf>,
    /// Check a payload archive file (gzip'd newc) instead of a directory.
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The config file (YAML).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    #[command(flatten)]
    pub inspect: InspectArgs,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// Output format. [default: json when stdout is not a terminal, else text]
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

#[derive(Debug, Args)]
pub struct FetchInstallerArgs {
    /// The installer tarball (nixos-images' kexec layout or nixos-lift's): https://, http://
    /// or file:///PATH; no credentials in it.
    #[arg(long, value_name = "URL", value_parser = parse_installer_source)]
    pub url: crate::config::InstallerSource,
    /// Its sha256 (64 hex digits, as `sha256sum` prints); nothing is kept unless the download
    /// matches it.
    #[arg(long, value_name = "HEX", value_parser = parse_sha256, required_unless_present = "allow_unpinned")]
    pub sha256: Option<crate::config::Sha256>,
    /// Unpack without checking a digest (the digest is printed).
    #[arg(long, conflicts_with = "sha256")]
    pub allow_unpinned: bool,
    /// Directory to unpack into; it must not exist and is created. On a tmpfs (e.g. under
    /// /dev/shm) it stays in RAM, as in stage 1.
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
    /// Output format. [default: json when stdout is not a terminal, else text]
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
}

fn parse_installer_source(s: &str) -> Result<crate::config::InstallerSource, String> {
    crate::config::InstallerSource::try_from(s.to_string())
}

fn parse_sha256(s: &str) -> Result<crate::config::Sha256, String> {
    crate::config::Sha256::try_from(s.to_string())
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (YAML). Only its path is passed on when re-launching: it holds secrets.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    #[command(flatten)]
    pub metadata: MetadataArgs,
    /// Kexec again although /var/lib/nixos-lift/<instance-id>.kexec says this instance already
    /// did (the installer fell back into this image).
    #[arg(long)]
    pub force: bool,
    /// Stop before the kexec load: download, verify, unpack and build the new initrd only.
    #[arg(long)]
    pub rehearse: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn metadata_of(args: &[&str]) -> MetadataArgs {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Run(run) => run.metadata,
            Command::Plan(plan) => plan.metadata,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn run_passes_its_metadata_options_on_when_it_relaunches() {
        let given = metadata_of(&[
            "nixos-lift",
            "run",
            "--config",
            "c.yaml",
            "--provider",
            "hetzner",
            "--metadata-base",
            "http://127.0.0.1:8080/x/",
            "--metadata-timeout",
            "7",
        ]);
        let mut again = vec!["nixos-lift", "plan", "--config", "c.yaml"];
        let relaunch = given.probe_options().to_args();
        again.extend(relaunch.iter().map(String::as_str));
        let parsed = metadata_of(&again);
        assert_eq!(parsed.provider, given.provider);
        assert_eq!(parsed.metadata_base, given.metadata_base);
        assert_eq!(parsed.metadata_timeout, 7);
        let defaults = metadata_of(&["nixos-lift", "run", "--config", "c.yaml"]);
        assert_eq!(
            defaults.probe_options().to_args(),
            ["--provider", "auto", "--metadata-timeout=120"]
        );
    }

    /// Every option's help, in every subcommand, names its default at most once: clap appends
    /// `[default: …]` itself unless the default is hidden.
    #[test]
    fn help_names_each_default_once() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                let written = arg
                    .get_help()
                    .into_iter()
                    .chain(arg.get_long_help())
                    .any(|h| h.to_string().contains("[default:"));
                let shown =
                    !arg.is_hide_default_value_set() && !arg.get_default_values().is_empty();
                assert!(
                    !(written && shown),
                    "{path} --{}: default both in the help text and from clap",
                    arg.get_id()
                );
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        walk(&cmd, "nixos-lift");
        let help = cmd
            .find_subcommand_mut("run")
            .unwrap()
            .render_long_help()
            .to_string();
        assert_eq!(help.matches("[default: auto]").count(), 1, "{help}");
    }
}
