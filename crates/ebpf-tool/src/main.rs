//! Parse -> run -> exit code. Errors print as one line, their causes joined by ": ".

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser as _};
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
        Command::Features { json } => features(json).map(|()| 0),
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "ebpf-tool", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => {
            man_page(&mut std::io::stdout().lock())?;
            Ok(0)
        }
    }
}

/// The man page: the tool's own page, then each subcommand's options and examples (the
/// same text as its `--help`), all from the clap definitions.
fn man_page(out: &mut impl std::io::Write) -> std::io::Result<()> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_subcommands_section(out)?;
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().to_uppercase();
        writeln!(out, ".SH \"{name}\"")?;
        let sub = sub
            .clone()
            .bin_name(format!("ebpf-tool {}", sub.get_name()));
        let page = clap_mangen::Man::new(sub);
        page.render_synopsis_section(out)?;
        page.render_options_section(out)?;
        page.render_extra_section(out)?;
    }
    man.render_version_section(out)
}

/// `ebpf-tool features`.
fn features(json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let found = ebpf_tool::features::detect(&Tuning::from_env());
    let mut out = std::io::stdout().lock();
    if json {
        for feature in &found {
            serde_json::to_writer(&mut out, feature)?;
            out.write_all(b"\n")?;
        }
    } else {
        ebpf_tool::features::write_text(&mut out, &found)?;
    }
    Ok(())
}

/// `ebpf-tool uprobe`, or (`usdt`) `ebpf-tool usdt`: plan, resolve, configure, run.
fn trace(args: &ebpf_tool::cli::UprobeArgs, usdt: bool) -> anyhow::Result<u8> {
    let tuning = Tuning::from_env();
    let mut plan = uprobe::Plan::from_args(args)?;
    plan.usdt = usdt;
    plan.format.usdt = usdt;
    // Needed at load; read meanwhile, while the target's symbols are.
    ebpf_tool::kernel_btf::start_reading();
    let mut targets = if usdt {
        uprobe::resolve_usdt(&plan)?
    } else {
        uprobe::Targets::resolve(&plan)?
    };
    uprobe::resolve_named_values(&mut plan, &mut targets, &args.args)?;
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
