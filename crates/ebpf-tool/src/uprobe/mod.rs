//! `ebpf-tool uprobe`: flags -> validated plan -> attached probes -> printed events.

mod filter;
mod list;
mod plan;
mod report;
mod run;

pub use list::list;
pub use plan::{Plan, PlanError};
pub use run::run;
