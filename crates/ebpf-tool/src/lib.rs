//! ebpf-tool: trace calls to functions in userspace programs with eBPF uprobes.
//!
//! A run flows one way, one module per step:
//!
//! 1. `cli`: the flags, each parsed by its own value parser (`values::request` for `-a`
//!    and `--filter`);
//! 2. `uprobe::plan`: the flags as a validated request, pure data (`Plan`);
//! 3. `uprobe::targets`: BINARY and FUNCTION resolved to a file and file offsets
//!    (`target` finds the file, `symbols` the functions, checking each probe site);
//! 4. `uprobe::kernel_config`: the request as the kernel programs' settings, with the
//!    values to read built by `values` (the argument model: location, width, sign);
//! 5. `loader`: the kernel object loaded with those settings and the probes attached
//!    (`tuning` holds the few environment knobs);
//! 6. `uprobe::run`: the loop that drains records (`events` decodes them) into the
//!    `output::printer::Printer`, which owns stdout and stderr and renders events, tables,
//!    stacks (`symbolize`) and the summary, and stops on a deadline, a signal or a closed
//!    stdout.

pub mod cli;
pub mod dwarf;
pub mod events;
pub mod features;
pub mod files;
pub mod kernel;
pub mod kernel_btf;
pub mod launch;
pub mod loader;
pub mod metrics;
pub mod output;
pub mod privilege;
pub mod suggest;
pub mod symbolize;
pub mod symbols;
pub mod target;
pub mod tuning;
pub mod unwind;
pub mod uprobe;
pub mod usdt;
pub mod values;
