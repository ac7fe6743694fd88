//! Dispatch from parsed CLI to the library.

use clap::CommandFactory;

use crate::cli::{
    Cli, Command, ConfigCommand, FetchInstallerArgs, GenerateCommand, HandoffCheckArgs,
    HandoffCommand, PlanArgs, RunArgs,
};
use crate::config::Arch;
use crate::handoff::check;
use crate::host::{self, SysRoot};
use crate::plan::guard::ConfigRefusals;
use crate::{config, output, provider, stage1, Error, Result};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Detect(args) => {
            let root = SysRoot::new(&args.inspect.root);
            let mut facts = host::inspect(&root)?;
            let cloud = provider::identify_blocking(&facts, &root, &args.metadata.probe_options())?;
            facts.cloud = Some(cloud);
            output::print(&facts, output::resolve(args.format), || {
                host::summary(&facts)
            })
        }
        Command::Install(args) => crate::install::run(&crate::install::Options {
            handoff: args.handoff,
            root: args.root,
            console: args.console,
            kmsg: args.kmsg,
            network_timeout: std::time::Duration::from_secs(args.network_timeout),
            skip_network: args.skip_network,
            metadata_base: args.metadata_base,
            stop_after: args.stop_after,
        }),
        Command::Config(ConfigCommand::Check { file }) => {
            let valid = config::ValidConfig::load(&file)?;
            let refusals = ConfigRefusals::of(&valid.installer);
            let verdict = match refusals.usable().as_slice() {
                [] => "valid, but stage 1 refuses it on every architecture".to_string(),
                usable if usable.len() == Arch::ALL.len() => "ok".to_string(),
                usable => {
                    let names: Vec<&str> = usable.iter().map(|a| a.as_str()).collect();
                    format!("ok for {} only", names.join(", "))
                }
            };
            print!("{}: {verdict}\n{}", file.display(), valid.summary());
            refusals.check(&Arch::ALL, &file)
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{}", config::EXAMPLE);
            Ok(())
        }
        Command::Plan(args) => plan(args),
        Command::Run(args) => takeover(args),
        Command::FetchInstaller(args) => fetch_installer(args),
        Command::Handoff(HandoffCommand::Check(args)) => handoff_check(args),
        Command::UserData(args) => {
            let text = crate::userdata::build(&crate::userdata::Options {
                config: &args.config,
                agent_url: &args.agent_url,
                pins: &args.agent_sha256,
                provider: args.provider,
                gzip_base64: args.gzip_base64,
            })?;
            output::print_raw(&text)
        }
        Command::Generate(GenerateCommand::Completions { shell }) => {
            crate::generate::completions(Cli::command(), shell)
        }
        Command::Generate(GenerateCommand::Man { out_dir }) => {
            crate::generate::man_pages(Cli::command(), &out_dir)
        }
    }
}

/// `nixos-lift plan`.
fn plan(args: PlanArgs) -> Result<()> {
    let config = config::ValidConfig::load(&args.config)?;
    let root = SysRoot::new(&args.inspect.root);
    let (_facts, plan) = stage1::make_plan(&root, &config, &args.metadata.probe_options())?;
    output::print(&plan, output::resolve(args.format), || plan.to_text())?;
    match stage1::refusal(&plan) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// `nixos-lift run`.
fn takeover(args: RunArgs) -> Result<()> {
    stage1::run(&stage1::RunOptions {
        config: args.config,
        metadata: args.metadata.probe_options(),
        force: args.force,
        rehearse: args.rehearse,
    })
}

/// `nixos-lift fetch-installer`.
fn fetch_installer(args: FetchInstallerArgs) -> Result<()> {
    let summary = stage1::fetch_installer(&args.url, args.sha256.as_ref(), &args.dest)?;
    output::print(&summary, output::resolve(args.format), || summary.to_text())
}

/// `nixos-lift handoff check`.
fn handoff_check(args: HandoffCheckArgs) -> Result<()> {
    let report = match (&args.archive, &args.dir) {
        (Some(archive), _) => check::check_archive(archive)?,
        (None, Some(dir)) => check::check_dir(dir)?,
        (None, None) => check::check_dir(&check::default_dir())?,
    };
    output::print(&report, args.format, || report.to_text())?;
    if report.ok {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "checking handoff {}: {}",
            report.source,
            report.problems.join("; ")
        )))
    }
}
