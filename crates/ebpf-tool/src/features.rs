//! `ebpf-tool features`: what this machine offers the tool, each found by asking the
//! kernel the way the tool relies on it (a program or map it loads and drops, the files
//! the tool reads), not by version numbers alone; and for each missing piece, what the
//! tool does instead.

use std::io::{self, Write};

use serde::Serialize;

use crate::{
    kernel::{self, KernelVersion},
    loader::sys::{self, Insn},
    privilege,
    tuning::{ATTACH_MODE_VAR, AttachMode, TASK_FIELDS_VAR, Tuning},
};

/// One thing the tool may use.
#[derive(Debug, Clone, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    /// What was found (a version, the privileges held, the error).
    pub detail: String,
    /// Without it: what ebpf-tool does instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instead: Option<&'static str>,
}

/// `r0 = 0; exit`, optionally calling helper `call` first.
fn program(call: Option<i32>) -> Vec<Insn> {
    let insn = |code: u8, imm: i32| Insn {
        code,
        regs: 0,
        off: 0,
        imm,
    };
    let mut insns = Vec::new();
    if let Some(helper) = call {
        insns.push(insn(0x85, helper));
    }
    insns.extend([insn(0xb7, 0), insn(0x95, 0)]);
    insns
}

fn probe(result: io::Result<()>) -> (bool, String) {
    match result {
        Ok(()) => (true, "the kernel accepts it".to_owned()),
        Err(err) => (false, format!("the kernel refuses it: {err}")),
    }
}

const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BPF_F_SLEEPABLE: u32 = 1 << 4;
const BPF_FUNC_GET_ATTACH_COOKIE: i32 = 174;

/// Every feature, in the order printed; `tuning` says what the environment forces off.
pub fn detect(tuning: &Tuning) -> Vec<Feature> {
    let version = KernelVersion::current();
    let mut out = Vec::new();
    let mut add = |name, (available, detail): (bool, String), instead| {
        out.push(Feature {
            name,
            available,
            detail,
            instead: if available { None } else { Some(instead) },
        });
    };
    add(
        "kernel",
        match version {
            Some(v) => (
                kernel::check(version).is_ok(),
                format!("Linux {}.{}", v.major, v.minor),
            ),
            None => (false, "unknown release".to_owned()),
        },
        "nothing: Linux 5.8 or newer is needed",
    );
    let privileged = privilege::check();
    add(
        "privileges",
        (privileged.is_ok(), privilege::describe_held()),
        "nothing: run as root, or with CAP_BPF and CAP_PERFMON",
    );
    add(
        "lockdown",
        lockdown(),
        "nothing: lockdown=confidentiality forbids reading user memory from BPF",
    );
    let btf = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    add(
        "kernel BTF",
        match (btf, crate::kernel_btf::task_fields()) {
            _ if !tuning.task_fields => (false, format!("{TASK_FIELDS_VAR}=off: not used")),
            (true, Some(_)) => (
                true,
                "task_struct fields found in /sys/kernel/btf/vmlinux".to_owned(),
            ),
            (true, None) => (
                false,
                "/sys/kernel/btf/vmlinux has no usable task_struct".to_owned(),
            ),
            (false, _) => (false, "no /sys/kernel/btf/vmlinux".to_owned()),
        },
        "task ids and comm are read with helpers (a little slower per call)",
    );
    add(
        "ring buffer",
        probe(sys::map_creates(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)),
        "nothing: the BPF ring buffer (Linux 5.8) carries every event",
    );
    let multi = probe(sys::program_loads(
        &program(None),
        sys::BPF_TRACE_UPROBE_MULTI,
        0,
    ));
    add(
        "uprobe_multi links",
        match tuning.attach {
            AttachMode::Perf => (
                false,
                format!(
                    "{}, but {ATTACH_MODE_VAR}=perf forces one link per function",
                    if multi.0 {
                        "the kernel has them"
                    } else {
                        "the kernel has none"
                    }
                ),
            ),
            _ => multi,
        },
        "one perf-event link per function: slow to attach and detach many, and no USDT semaphores",
    );
    add(
        "uprobe sessions",
        probe(sys::program_loads(
            &program(None),
            sys::BPF_TRACE_UPROBE_SESSION,
            0,
        )),
        "--latency pairs entries and returns in maps (a call stack per thread) instead of a session cookie per call",
    );
    add(
        "sleepable uprobes",
        probe(sys::program_loads(
            &program(None),
            sys::BPF_TRACE_UPROBE_MULTI,
            BPF_F_SLEEPABLE,
        )),
        "strings in pages not yet faulted in show as (unreadable), counted",
    );
    add(
        "attach cookies",
        probe(sys::program_loads(
            &program(Some(BPF_FUNC_GET_ATTACH_COOKIE)),
            sys::BPF_TRACE_UPROBE_MULTI,
            0,
        )),
        "nothing: each probe's id comes from its cookie",
    );
    add(
        "USDT semaphores (reference counters)",
        (
            std::path::Path::new("/sys/bus/event_source/devices/uprobe/format/ref_ctr_offset")
                .exists(),
            "the uprobe PMU's ref_ctr_offset".to_owned(),
        ),
        "probes guarded by a semaphore do not fire",
    );
    let (uprobe_syscall, uretprobe_syscall) = syscalls();
    add(
        "uprobe syscall (optimized uprobes)",
        (uprobe_syscall, "sys_uprobe in /proc/kallsyms".to_owned()),
        "each probe hit traps (int3), a little slower",
    );
    add(
        "uretprobe syscall",
        (
            uretprobe_syscall,
            "sys_uretprobe in /proc/kallsyms".to_owned(),
        ),
        "returns trap (int3), a little slower",
    );
    let hazard = uretprobe_syscall
        && version.is_some_and(|v| !kernel::return_probe_warnings(Some(v)).is_empty());
    add(
        "uretprobes safe under seccomp",
        (
            !hazard,
            if hazard {
                "Linux 6.11-6.13 with the uretprobe syscall: seccomp filters that do not know it kill the traced process".to_owned()
            } else {
                "no known hazard".to_owned()
            },
        ),
        "--ret/--latency warn; --ret-sites avoids uretprobes",
    );
    add(
        "AVX-512 (EVEX code at probe sites)",
        (
            true,
            if cpu_has("avx512f") {
                "this CPU has AVX-512: libc picks EVEX-encoded string functions, whose first instructions are checked before a probe goes on".to_owned()
            } else {
                "no AVX-512 on this CPU".to_owned()
            },
        ),
        "",
    );
    out
}

fn lockdown() -> (bool, String) {
    match std::fs::read_to_string("/sys/kernel/security/lockdown") {
        Ok(text) => {
            let mode = text
                .split_whitespace()
                .find(|w| w.starts_with('['))
                .map_or("none", |w| w.trim_matches(['[', ']']))
                .to_owned();
            (mode != "confidentiality", format!("lockdown: {mode}"))
        }
        Err(_) => (
            true,
            "not known here (no /sys/kernel/security/lockdown); integrity mode allows tracing"
                .to_owned(),
        ),
    }
}

/// Whether the kernel has the `uprobe` and `uretprobe` syscalls (never called here:
/// outside a trampoline they kill the caller).
fn syscalls() -> (bool, bool) {
    let symbols = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
    let has = |name: &str| symbols.lines().any(|l| l.ends_with(name));
    (has(" __x64_sys_uprobe"), has(" __x64_sys_uretprobe"))
}

fn cpu_has(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == flag))
}

/// One line each: `name: yes|no (detail)`, and for a no what is done instead.
pub fn write_text(out: &mut impl Write, features: &[Feature]) -> io::Result<()> {
    for feature in features {
        writeln!(
            out,
            "{}: {} ({})",
            feature.name,
            if feature.available { "yes" } else { "no" },
            feature.detail
        )?;
        if let Some(instead) = feature.instead.filter(|i| !i.is_empty()) {
            writeln!(out, "    without it: {instead}")?;
        }
    }
    Ok(())
}
