//! Command-line flags and help text, nothing else: `uprobe::plan` validates them.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ebpf-tool",
    version,
    about = "Trace calls to functions in userspace programs and libraries with eBPF uprobes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach a uprobe to a function in a binary or shared library and print each call
    #[command(after_help = UPROBE_EXAMPLES)]
    Uprobe(UprobeArgs),
}

const UPROBE_EXAMPLES: &str = "\
Examples:
  ebpf-tool uprobe /lib/x86_64-linux-gnu/libc.so.6 malloc -d 5
      every malloc in every process for 5 seconds; arg0 is the requested size
  ebpf-tool uprobe libc getenv
      a library by name (from /etc/ld.so.cache), until Ctrl+C
  ebpf-tool uprobe bash readline -p 1234
      a program on $PATH, only in process 1234

Each call prints one line:
  uprobe triggered! pid=<pid> tid=<tid> comm=<name> arg0=<first argument> func=<function>";

#[derive(Debug, Args)]
pub struct UprobeArgs {
    /// The binary or shared library holding the function: a path, a program on $PATH, or a
    /// library name such as libc
    #[arg(value_name = "BINARY")]
    pub binary: String,

    /// The function to trace: a symbol name from the binary's symbol tables
    #[arg(value_name = "FUNCTION")]
    pub function: String,

    /// How long to trace, in seconds (0 = until Ctrl+C)
    #[arg(short, long, value_name = "SECS", default_value_t = 0)]
    pub duration: u64,

    /// Trace only the process with this pid
    #[arg(short, long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Option<u32>,
}
