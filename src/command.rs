//! Dispatch from parsed CLI to the library.

use crate::cli::{Cli, Command, ConfigCommand, GenerateCommand, HandoffCommand};
use crate::config::Arch;
use crate::host::{self, SysRoot};
use crate::plan::guard::ConfigRefusals;
use crate::{config, output, provider, Result};

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
        Command::Plan(args) => crate::stage1::plan_command(args),
        Command::Run(args) => crate::stage1::run_command(args),
        Command::FetchInstaller(args) => crate::stage1::fetch_installer_command(args),
        Command::Handoff(HandoffCommand::Check(args)) => crate::handoff::check::run(args),
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
            crate::generate::completions(shell)
        }
        Command::Generate(GenerateCommand::Man { out_dir }) => crate::generate::man_pages(&out_dir),
    }
}
