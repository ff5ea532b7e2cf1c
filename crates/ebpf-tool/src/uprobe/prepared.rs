//! A run prepared: everything decided before the kernel is touched.

use ebpf_tool_common::{Config, ProbeSpec};

use super::{Plan, Targets};
use crate::tuning::Tuning;

/// What a run needs: the request, where it goes, and how the kernel programs are set.
pub struct Run {
    pub plan: Plan,
    pub targets: Targets,
    pub config: Config,
    /// What each probe reads, when not all read the same (`config.spec`).
    pub specs: Vec<ProbeSpec>,
    pub tuning: Tuning,
}
