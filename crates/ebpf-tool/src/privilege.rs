//! Can this process load and attach uprobes? Checked before touching the kernel so the
//! user gets one clear sentence instead of an EPERM from deep inside a syscall.

use std::fs;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
#[error(
    "permission denied: tracing needs root, or CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); \
     this process has {have}; run it with sudo"
)]
pub struct PrivilegeError {
    have: String,
}

/// Ok when the effective capabilities allow loading BPF programs and opening uprobe
/// perf events: CAP_SYS_ADMIN alone, or CAP_BPF with CAP_PERFMON.
pub fn check() -> Result<(), PrivilegeError> {
    let caps = effective_capabilities().unwrap_or(0);
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let held: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| has(*cap))
        .map(|(_, name)| name)
        .collect();
    let have = if held.is_empty() {
        "none of them".to_owned()
    } else {
        format!("only {}", held.join(" and "))
    };
    Err(PrivilegeError { have })
}

/// The privileges this process holds, for `ebpf-tool features`.
pub fn describe_held() -> String {
    let caps = effective_capabilities().unwrap_or(0);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let held: Vec<&str> = [
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
    ]
    .into_iter()
    .filter(|(cap, _)| caps & (1u64 << cap) != 0)
    .map(|(_, name)| name)
    .collect();
    let caps = if held.is_empty() {
        "no tracing capabilities".to_owned()
    } else {
        held.join(", ")
    };
    format!("{}{caps}", if root { "root; " } else { "" })
}

/// The `CapEff` mask from /proc/self/status.
fn effective_capabilities() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Best effort: kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK. Newer ones (like
/// the 6.x this targets) account them to the memory cgroup, so failing here
/// (no CAP_SYS_RESOURCE) is harmless and only logged.
pub fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass and has no other effect on memory.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK ({}); fine on kernels that account BPF memory by cgroup",
            std::io::Error::last_os_error()
        );
    }
}
