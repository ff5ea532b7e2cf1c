//! Parse -> run -> exit code. Errors print as one line, their causes joined by ": ".

use std::process::ExitCode;

use clap::Parser as _;
use ebpf_tool::{
    cli::{Cli, Command},
    launch,
    tuning::Tuning,
    uprobe, values,
};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Errors quote paths and names, which may hold control characters.
            eprintln!(
                "error: {}",
                ebpf_tool::output::escape::printable(&one_line(&err))
            );
            // Flags that parse but do not go together are usage errors too, as clap's.
            if err.downcast_ref::<uprobe::PlanError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Uprobe(args) if args.list => uprobe::list(&args).map(|()| 0),
        Command::Usdt(args) if args.list => uprobe::list_usdt(&args).map(|()| 0),
        Command::Uprobe(args) => trace(&args, false),
        Command::Usdt(args) => trace(&args, true),
    }
}

/// `ebpf-tool uprobe`, or (`usdt`) `ebpf-tool usdt`: plan, resolve, configure, run.
fn trace(args: &ebpf_tool::cli::UprobeArgs, usdt: bool) -> anyhow::Result<u8> {
    let tuning = Tuning::from_env();
    let mut plan = uprobe::Plan::from_args(args)?;
    plan.usdt = usdt;
    plan.format.usdt = usdt;
    // Needed at load; read meanwhile, while the target's symbols are.
    ebpf_tool::kernel_btf::start_reading();
    let targets = uprobe::Targets::resolve(&plan)?;
    if usdt {
        plan.format.layout = if args.args.is_empty() {
            ebpf_tool::usdt::default_layout(&targets.usdt_args)?
        } else {
            let requests = ebpf_tool::usdt::with_note_signs(&args.args, &targets.usdt_args);
            values::ValueLayout::new(&requests)?
        };
    }
    let mut kernel =
        uprobe::kernel_config(&plan, &targets, values::abi::native(), std::process::id())?;
    // Started last, held before its exec until every probe is attached.
    let launch = plan
        .command
        .as_deref()
        .map(launch::Launch::start)
        .transpose()?;
    if let Some(launch) = &launch {
        uprobe::scope_to_command(&mut kernel.config, launch.scope);
    }
    uprobe::run(
        uprobe::Run {
            plan,
            targets,
            config: kernel.config,
            specs: kernel.specs,
            tuning,
        },
        launch,
    )
}

/// The error and its causes on one line, skipping a cause already quoted by its parent.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}
