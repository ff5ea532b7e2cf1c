//! Command-line flags and help text, nothing else: each flag owns its grammar through a
//! value parser (a bad value is a usage error, exit 2); `uprobe::plan` validates how
//! they combine.

use clap::{Args, Parser, Subcommand};

use crate::values::request::{FilterRequest, ValueRequest, ValueType};

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
    /// Trace a USDT probe (PROVIDER:NAME, a NAME unique across providers, or a glob) at
    /// every site a binary or library has it; options as for uprobe
    #[command(after_help = USDT_EXAMPLES)]
    Usdt(UprobeArgs),
    /// What this machine offers ebpf-tool (kernel, BPF features, privileges, CPU), each
    /// found by asking the kernel, and what the tool does without each missing piece
    Features {
        /// One JSON object per feature
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), made from these same definitions
    #[command(hide = true)]
    Man,
}

const USDT_EXAMPLES: &str = "\
Examples:
  ebpf-tool usdt --list /usr/bin/python3
      every USDT probe: PROVIDER:NAME, sites, semaphore, argument specs
  ebpf-tool usdt /usr/bin/python3 python:function__entry -a 0:str,1:str,2:i32
      every Python function call: file, function name, line (semaphore raised while traced)
  ebpf-tool usdt libstdc++ libstdcxx:throw --count
      C++ exceptions thrown, counted
  ebpf-tool usdt /usr/lib/postgresql/15/bin/postgres query__start -a 0:str
      every query a PostgreSQL backend starts

Each hit prints one line:
  usdt triggered! pid=<pid> tid=<tid> comm=<name> arg0=<value> ... probe=<provider:name>
Without -a, every argument of the probe is shown, with the width and sign its note gives.";

const UPROBE_EXAMPLES: &str = "\
Examples:
  ebpf-tool uprobe /lib/x86_64-linux-gnu/libc.so.6 malloc -d 5
      every malloc in every process for 5 seconds; arg0 is the requested size
  ebpf-tool uprobe libc getenv -a 0:str
      a library by name (from /etc/ld.so.cache); show the variable's name
  ebpf-tool uprobe libc malloc free calloc --count
      several functions in one run, counted per function
  ebpf-tool uprobe libc openat --count --by arg1:str
      which paths are opened most (a string argument as the key)
  ebpf-tool uprobe libssl 'SSL_*' --count
      every function matching a glob, counted per function
  ebpf-tool uprobe ./app 'geo::Circle::area' --ret
      a demangled C++ (or Rust) name: every overload
  ebpf-tool uprobe --list libc 'str*'
      what can be traced, with file offsets
  ebpf-tool uprobe bash readline -p 1234 --ret -a 0:str
      a program on $PATH, only process 1234, with the return value
  ebpf-tool uprobe libc read --latency -a 0 -a 2 --filter 'arg2 >= 4096'
      time each read of at least 4 KiB; a latency histogram at the end
  ebpf-tool uprobe libc malloc --count --by comm --interval 1
      count calls in the kernel per process name, a table every second
  ebpf-tool uprobe libc malloc --hist 0 -d 10
      a log2 histogram of malloc sizes, computed in the kernel
  ebpf-tool uprobe ./app handle_request --stacks --flamegraph app.svg
      the user stacks that lead to a function, as counts and a flame graph
  ebpf-tool uprobe ./server 'main.(*Server).handle' --latency -a 1:gostr
      a Go method, stripped or not: Go's register ABI (-a N is argument word N; the
      receiver is word 0, a string two words), returns seen at its ret instructions
  ebpf-tool uprobe -c 'ls -l /tmp' libc opendir -a 0:str
      run a command and trace it (and what it starts) from its first instruction;
      the run ends with it and exits with its status
  ebpf-tool uprobe ./app libssl SSL_write -a 1:buf:2 -- ./app --port 8443
      a library the command will load, resolved as its loader will
  ebpf-tool uprobe libc open --json -a 0:str | jq .
      one JSON object per line

Each call prints one line:
  uprobe triggered! pid=<pid> tid=<tid> comm=<name> arg0=<first argument> func=<function>
with --ret/--latency, at return: ... ret=<value> latency_ns=<ns> func=<function>";

/// How `--stacks` walks a stack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Unwind {
    Fp,
    Dwarf,
    #[default]
    Auto,
}

#[derive(Debug, Args)]
pub struct UprobeArgs {
    /// The binary or shared library holding the function: a path, a program on $PATH, or a
    /// library name such as libc
    #[arg(value_name = "BINARY")]
    pub binary: String,

    /// The function to trace: a symbol name (malloc), a demangled C++ or Rust name
    /// (geo::Circle::area, mycrate::module::function), a glob (SSL_*), FUNC+OFFSET, or a
    /// hex address (0x1139); several in one run (malloc free 'str*'), one summary; with
    /// --list, an optional pattern
    #[arg(value_name = "FUNCTION", required_unless_present = "list", num_args = 1..)]
    pub functions: Vec<String>,

    /// List the functions of BINARY that can be traced (matching FUNCTION, a glob or a
    /// substring, when given), with their file offsets, and exit
    #[arg(short, long)]
    pub list: bool,

    /// Also look for separate debug files in DIR (build-id layout DIR/.build-id/xx/y.debug,
    /// or DIR/<debuglink name>), before /usr/lib/debug
    #[arg(long, value_name = "DIR")]
    pub debuginfo: Option<std::path::PathBuf>,

    /// With --list: each function's signature from its debug info
    /// (`long fx_handle(struct req * r, int flags)`)
    #[arg(short, long, requires = "list")]
    pub verbose: bool,

    /// With --list -v: the fields of each struct parameter (through a pointer too), with
    /// their offsets
    #[arg(long, requires = "verbose")]
    pub fields: bool,

    /// How long to trace, in seconds (0 = until Ctrl+C)
    #[arg(short, long, value_name = "SECS", default_value_t = 0)]
    pub duration: u64,

    /// Trace only the process with this pid
    #[arg(short, long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Option<u32>,

    /// Trace only the thread with this id
    #[arg(long, value_name = "TID", value_parser = clap::value_parser!(u32).range(1..))]
    pub tid: Option<u32>,

    /// Trace only tasks with this name (comm, at most 15 bytes)
    #[arg(long, value_name = "NAME")]
    pub comm: Option<String>,

    /// Trace only tasks running as this uid
    #[arg(long, value_name = "UID", value_parser = clap::value_parser!(u32).range(..u32::MAX as i64))]
    pub uid: Option<u32>,

    /// Run this command (split into words as a shell would) and trace it and every process
    /// it starts from their first instruction; the run ends when it does, with its exit
    /// status. Also: `-- CMD ARGS...` after the other arguments
    #[arg(short = 'c', long = "command", value_name = "CMD", conflicts_with_all = ["pid", "command_args"])]
    pub command: Option<String>,

    /// The command to run, as with -c, given as words after `--`
    #[arg(last = true, value_name = "CMD ARGS", conflicts_with = "pid")]
    pub command_args: Vec<String>,

    /// Only calls whose value passes, e.g. 'arg0 > 4096', 'arg1 == 0', 'arg2:i32 < 0',
    /// '+8(arg0):u32 >= 16' (compared in the kernel, as the type says)
    #[arg(long, value_name = "EXPR", value_parser = parse_filter)]
    pub filter: Option<FilterRequest>,

    /// Values to show: LOCATION[:TYPE]. LOCATION is an argument number (N or argN; past
    /// the sixth, from the stack), a register (%rdi), or OFFSET(LOCATION): the memory at
    /// LOCATION plus OFFSET ('+8(+16(arg0))', as perf probe writes it). TYPE is u64
    /// (default), i64, u32, i32, u16, i16, u8, i8, hex, str (a C string), buf:N (as many
    /// bytes as argument N says) or gostr (a Go string: words N and N+1); repeat or separate
    /// with commas (-a 0:str,1:hex). In Go functions N counts Go's integer argument words:
    /// an int or pointer is one, a string two (pointer, length), a slice three (pointer,
    /// length, capacity), an interface two (type, data); floats take none
    #[arg(short, long = "args", value_name = "VALUE", value_delimiter = ',', value_parser = parse_value)]
    pub args: Vec<ValueRequest>,

    /// Also probe the return: each call is reported when it returns, with ret=, read as
    /// TYPE: i64 (default), u64, i32, u32, i16, u16, i8, u8, hex, or str (the C string a
    /// returned pointer points to)
    #[arg(long, value_name = "TYPE", num_args = 0..=1, default_missing_value = "i64",
          value_parser = parse_return_type)]
    pub ret: Option<ValueType>,

    /// Time each call (entry to return, per thread); print latency_ns= per call and a
    /// histogram at the end
    #[arg(long)]
    pub latency: bool,

    /// With --ret/--latency: see returns at each return instruction instead of with a
    /// uretprobe (which rewrites the return address on the stack), so C++ exceptions,
    /// longjmp and Go's moving stacks are safe; calls that leave by a tail jump or an
    /// exception are counted, not shown. Automatic for Go programs and for code that
    /// unwinds (C++ exceptions, Rust panics)
    #[arg(long, conflicts_with = "uretprobes")]
    pub ret_sites: bool,

    /// With --ret/--latency in code that unwinds: use uretprobes anyway (a C++ exception
    /// or Rust panic unwinding through a traced call then aborts the program)
    #[arg(long)]
    pub uretprobes: bool,

    /// Count calls in the kernel instead of printing each one
    #[arg(long)]
    pub count: bool,

    /// What --count, --latency and --hist group calls by, besides the function: pid, tid,
    /// comm, or a value the call has: argN, argN:str (a string, up to 63 bytes), any -a
    /// VALUE that is a number or a string
    #[arg(long, value_name = "KEY", default_value = "func", value_parser = parse_group)]
    pub by: GroupBy,

    /// With --count, --hist or --latency: print the tables every SECS seconds too
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: Option<u64>,

    /// Serve the run's counts and histograms for Prometheus at http://ADDR/metrics
    /// (127.0.0.1:9464, [::1]:9464, :9464 for every interface), read from the kernel at
    /// each scrape; implies --count unless --latency or --hist is given
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_address)]
    pub metrics: Option<std::net::SocketAddr>,

    /// A log2 histogram of a value (an argument number, or any -a LOCATION[:TYPE]),
    /// computed in the kernel (no per-call output)
    #[arg(long, value_name = "VALUE", value_parser = parse_number_value)]
    pub hist: Option<ValueRequest>,

    /// Capture the user stack of each call and print the most frequent stacks at the end
    #[arg(long)]
    pub stacks: bool,

    /// With --stacks: how to walk the stack: fp (frame pointers, in the kernel: cheapest,
    /// complete only for code built with them), dwarf (the registers and the top of the
    /// stack copied out and unwound with each binary's .eh_frame, as perf --call-graph
    /// dwarf), auto (dwarf when the traced file keeps no frame pointers)
    #[arg(long, value_enum, default_value_t = Unwind::Auto, requires = "stacks")]
    pub unwind: Unwind,

    /// With --unwind dwarf: bytes of user stack copied per call (512 to 32768)
    #[arg(long, value_name = "BYTES", default_value_t = 16384, requires = "stacks",
          value_parser = clap::value_parser!(u32).range(512..=32768))]
    pub stack_bytes: u32,

    /// With --stacks: also write the stacks in collapsed ("folded") form to FILE
    #[arg(long, value_name = "FILE", requires = "stacks")]
    pub folded: Option<std::path::PathBuf>,

    /// With --stacks: also write a flame graph (SVG) to FILE
    #[arg(long, value_name = "FILE", requires = "stacks")]
    pub flamegraph: Option<std::path::PathBuf>,

    /// Print one JSON object per line (events, tables, summary) instead of text
    #[arg(long)]
    pub json: bool,

    /// No per-call lines: only the tables and histograms computed in the kernel
    /// (e.g. --latency -q for just the latency histogram)
    #[arg(short, long)]
    pub quiet: bool,

    /// Benchmarks only: attach programs that do nothing, to measure the cost floor
    #[arg(long, hide = true)]
    pub noop: bool,
}

/// What `--count` and the histograms group calls by, besides the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    Func,
    Pid,
    Tid,
    Comm,
    /// A number or a string the call has (`arg0`, `arg1:str`, `+8(arg0):u32`).
    Value(ValueRequest),
}

fn parse_group(text: &str) -> Result<GroupBy, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "func" => GroupBy::Func,
        "pid" => GroupBy::Pid,
        "tid" => GroupBy::Tid,
        "comm" => GroupBy::Comm,
        _ => {
            let value =
                parse_value(text).map_err(|e| format!("{e}; or one of func, pid, tid, comm"))?;
            match value.ty {
                ValueType::Int { .. } | ValueType::Hex | ValueType::Str => GroupBy::Value(value),
                _ => return Err("--by groups by a number or a string (str)".into()),
            }
        }
    })
}

fn parse_return_type(text: &str) -> Result<ValueType, String> {
    ValueType::parse(text)
}

fn parse_value(text: &str) -> Result<ValueRequest, String> {
    text.parse()
        .map_err(|e: crate::values::request::RequestError| e.to_string())
}

/// A value to histogram: a number, so not a string or a buffer.
fn parse_number_value(text: &str) -> Result<ValueRequest, String> {
    let value = parse_value(text)?;
    match value.ty {
        crate::values::request::ValueType::Int { .. } | crate::values::request::ValueType::Hex => {
            Ok(value)
        }
        _ => Err("a histogram counts numbers, not strings or buffers".into()),
    }
}

fn parse_filter(text: &str) -> Result<FilterRequest, String> {
    text.parse()
        .map_err(|e: crate::values::request::RequestError| e.to_string())
}

fn parse_metrics_address(text: &str) -> Result<std::net::SocketAddr, String> {
    crate::metrics::parse_address(text).map_err(|e| e.to_string())
}
