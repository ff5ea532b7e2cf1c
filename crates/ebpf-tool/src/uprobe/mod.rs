//! `ebpf-tool uprobe`: flags -> validated plan -> attached probes -> printed events.

mod plan;
mod run;

pub use plan::{Plan, PlanError};
pub use run::run;
