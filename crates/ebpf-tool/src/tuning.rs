//! The `EBPF_TOOL_*` environment knobs, read in one place (`Tuning::from_env`, once, by
//! `main`) so nothing else in the tool reads the environment. They exist for tests and
//! for comparing paths; a user needs none of them.

/// `EBPF_TOOL_TASK_FIELDS=off`: read task ids and comm through helpers even where the
/// kernel's BTF gives the fields' offsets (to test that path).
pub const TASK_FIELDS_VAR: &str = "EBPF_TOOL_TASK_FIELDS";
/// `EBPF_TOOL_CALL_SLOTS=N` (a power of two up to `CALL_SLOT_COUNT`): give threads only N
/// call slots to share, so tests can make them collide and take the hash-map fallback.
pub const CALL_SLOTS_VAR: &str = "EBPF_TOOL_CALL_SLOTS";
/// `EBPF_TOOL_ATTACH=perf` forces one perf-event link per function (the fallback),
/// `=multi` forbids the fallback; unset picks uprobe_multi when the kernel has it.
pub const ATTACH_MODE_VAR: &str = "EBPF_TOOL_ATTACH";
/// `EBPF_TOOL_SESSIONS=off`: pair `--latency` entries and returns in maps even where the
/// kernel has uprobe sessions (to test that path, and to compare the two).
pub const SESSIONS_VAR: &str = "EBPF_TOOL_SESSIONS";

/// How probes are attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttachMode {
    #[default]
    Auto,
    /// One perf-event link per probe.
    Perf,
    /// uprobe_multi only: fail rather than fall back.
    Multi,
}

/// Settings a run takes from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Read task fields through the task's BTF pointer where possible.
    pub task_fields: bool,
    /// Slots of `CALL_SLOTS` (`None`: all of them).
    pub call_slots: Option<u32>,
    pub attach: AttachMode,
    /// Use uprobe sessions where they fit.
    pub sessions: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            task_fields: true,
            call_slots: None,
            attach: AttachMode::Auto,
            sessions: true,
        }
    }
}

impl Tuning {
    pub fn from_env() -> Tuning {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// From any source of variables (`from_env`, or a test's table).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Tuning {
        let max = ebpf_tool_common::CALL_SLOT_COUNT;
        Tuning {
            task_fields: var(TASK_FIELDS_VAR).is_none_or(|v| v != "off"),
            call_slots: var(CALL_SLOTS_VAR)
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|n| n.is_power_of_two() && *n <= max),
            attach: match var(ATTACH_MODE_VAR).as_deref() {
                Some("perf") => AttachMode::Perf,
                Some("multi") => AttachMode::Multi,
                _ => AttachMode::Auto,
            },
            sessions: var(SESSIONS_VAR).is_none_or(|v| v != "off"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_knob_and_ignores_nonsense() {
        let tuning = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Tuning::from_vars(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        assert_eq!(tuning(&[]), Tuning::default());
        let t = tuning(&[
            (TASK_FIELDS_VAR, "off"),
            (CALL_SLOTS_VAR, "1"),
            (ATTACH_MODE_VAR, "perf"),
        ]);
        assert_eq!(
            (t.task_fields, t.call_slots, t.attach),
            (false, Some(1), AttachMode::Perf)
        );
        assert_eq!(tuning(&[(CALL_SLOTS_VAR, "3")]).call_slots, None);
        assert_eq!(tuning(&[(CALL_SLOTS_VAR, "8192")]).call_slots, None);
        assert_eq!(
            tuning(&[(ATTACH_MODE_VAR, "multi")]).attach,
            AttachMode::Multi
        );
    }
}
