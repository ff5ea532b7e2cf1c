//! What the running kernel can do, checked before relying on it, so a missing feature is
//! one clear sentence instead of an EINVAL from deep inside a syscall.

/// A kernel release as `uname -r` reports it, reduced to (major, minor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Parses "6.18.44-fc-v595" and the like.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(KernelVersion { major, minor })
    }

    pub fn current() -> Option<KernelVersion> {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
        Self::parse(release.trim())
    }

    const fn at_least(self, major: u32, minor: u32) -> bool {
        self.major > major || (self.major == major && self.minor >= minor)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error(
        "this kernel ({}.{}) has no BPF ring buffer, which ebpf-tool needs: Linux 5.8 or newer is required",
        .0.major, .0.minor
    )]
    NoRingBuffer(KernelVersion),
    #[error(
        "this kernel ({}.{}) has no atomic compare-and-exchange for BPF programs, which --ret and --latency use to pair returns with entries: Linux 5.12 or newer is required",
        .0.major, .0.minor
    )]
    NoCompareExchange(KernelVersion),
}

/// Fails when the kernel lacks something every run needs.
pub fn check(version: Option<KernelVersion>) -> Result<(), KernelError> {
    match version {
        Some(v) if !v.at_least(5, 8) => Err(KernelError::NoRingBuffer(v)),
        _ => Ok(()),
    }
}

/// Fails when the kernel cannot run the pairing of returns with entries.
pub fn check_return_probes(version: Option<KernelVersion>) -> Result<(), KernelError> {
    match version {
        Some(v) if !v.at_least(5, 12) => Err(KernelError::NoCompareExchange(v)),
        _ => Ok(()),
    }
}

/// Warnings worth printing for a run that uses return probes.
pub fn return_probe_warnings(version: Option<KernelVersion>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(v) = version
        && v.at_least(6, 11)
        && !v.at_least(6, 14)
    {
        warnings.push(format!(
            "Linux {}.{} returns from uretprobes through the new uretprobe syscall, which seccomp \
             filters that do not know it (older container runtimes) answer by killing the traced \
             process; Linux 6.14 fixed this",
            v.major, v.minor
        ));
    }
    warnings
}

/// Whether the uprobe_multi link exists (Linux 6.6): without it, many functions cost one
/// link each to attach and detach. Only informs messages; attaching falls back anyway.
pub fn has_uprobe_multi(version: Option<KernelVersion>) -> bool {
    version.is_none_or(|v| v.at_least(6, 6))
}

/// Whether programs may read the current task through its BTF pointer
/// (`bpf_get_current_task_btf`, Linux 5.11). Unknown versions get the helpers, which
/// always work.
pub fn has_task_btf_pointer(version: Option<KernelVersion>) -> bool {
    version.is_some_and(|v| v.at_least(5, 11))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32) -> Option<KernelVersion> {
        Some(KernelVersion { major, minor })
    }

    #[test]
    fn parses_releases() {
        assert_eq!(KernelVersion::parse("6.18.44-fc-v595"), v(6, 18));
        assert_eq!(KernelVersion::parse("5.15.0-91-generic"), v(5, 15));
        assert_eq!(KernelVersion::parse("garbage"), None);
    }

    #[test]
    fn ring_buffer_needs_5_8() {
        assert!(check(v(5, 4)).is_err());
        assert!(check(v(5, 8)).is_ok());
        assert!(check(None).is_ok());
    }

    #[test]
    fn pairing_needs_5_12() {
        assert!(check_return_probes(v(5, 11)).is_err());
        assert!(check_return_probes(v(5, 12)).is_ok());
        assert!(check_return_probes(None).is_ok());
    }

    #[test]
    fn warns_about_the_uretprobe_seccomp_kernels_only() {
        assert!(return_probe_warnings(v(6, 10)).is_empty());
        assert_eq!(return_probe_warnings(v(6, 12)).len(), 1);
        assert!(return_probe_warnings(v(6, 14)).is_empty());
    }

    #[test]
    fn uprobe_multi_from_6_6() {
        assert!(!has_uprobe_multi(v(6, 5)));
        assert!(has_uprobe_multi(v(6, 6)));
    }
}
