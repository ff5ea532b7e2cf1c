//! `ebpf-tool uprobe`: flags -> validated plan -> attached probes -> printed events.

mod filter;
mod plan;
mod report;
mod run;

pub use plan::{Plan, PlanError};
pub use run::run;
