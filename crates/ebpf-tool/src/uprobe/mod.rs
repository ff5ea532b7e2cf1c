//! `ebpf-tool uprobe`: flags -> validated plan -> resolved targets -> kernel settings ->
//! attached probes -> printed events.

mod kernel_config;
mod list;
mod named;
mod plan;
mod prepared;
mod probes;
mod report;
mod ring;
mod run;
mod source_targets;
mod stopping;
mod targets;
mod usdt_targets;

pub use kernel_config::{KernelSettings, SpecError, kernel_config, scope_to_command};
pub use list::{list, list_usdt};
pub use named::{NamedError, resolve_named_values};
pub use plan::{Plan, PlanError, ReturnProbes, StackFiles};
pub use prepared::Run;
pub use run::run;
pub use targets::{ProbePoints, Targets, TargetsError, resolve_binary};
pub use usdt_targets::resolve as resolve_usdt;
