//! ebpf-tool: trace calls to functions in userspace programs with eBPF uprobes.
//!
//! A request flows one way: `cli` (flags) -> `uprobe::Plan` (validated, with `target`
//! and `symbols` resolving names to file offsets) -> `loader` (kernel programs and links)
//! -> `events` (decoded records) -> `output` (text).

pub mod cli;
pub mod events;
pub mod files;
pub mod kernel;
pub mod kernel_btf;
pub mod loader;
pub mod output;
pub mod privilege;
pub mod symbolize;
pub mod symbols;
pub mod target;
pub mod tuning;
pub mod uprobe;
pub mod values;
