//! Putting probes on: through one uprobe_multi link per file and kind when the kernel has
//! it, else one perf-event link per point (through aya). A point the kernel refuses is
//! reported with why, not fatal: a refused offset fails a whole uprobe_multi link, so
//! the link is split in halves until each refusal is found alone.

use std::{os::fd::AsFd as _, path::PathBuf};

use aya::programs::{
    ProgramError, UProbe,
    uprobe::{UProbeAttachLocation, UProbeAttachPoint},
};

use super::{LoadError, Loader, ProbeKind, multi, program_name, sys};
use crate::tuning::AttachMode;

/// One place to put a probe: a file and an offset in it. `cookie` comes back in every
/// event from that probe (its probe id), so events name their function without a lookup
/// in the kernel.
#[derive(Debug, Clone)]
pub struct AttachPoint {
    pub path: PathBuf,
    pub offset: u64,
    pub cookie: u64,
    /// A USDT semaphore's file offset (0: none): the kernel raises the counter there in
    /// every process mapping the file while the probe is on.
    pub ref_ctr_offset: u64,
}

/// What attaching did.
#[derive(Debug, Default)]
pub struct AttachReport {
    /// Points attached.
    pub attached: usize,
    /// Points the kernel refused, by index into the request, with why.
    pub failed: Vec<(usize, LoadError)>,
    /// True when one uprobe_multi link carries them.
    pub multi: bool,
}

impl Loader {
    /// Attaches the entry or return program at every point (all in one file).
    pub fn attach(
        &mut self,
        kind: ProbeKind,
        points: &[AttachPoint],
    ) -> Result<AttachReport, LoadError> {
        let mode = self.attach_mode;
        if kind == ProbeKind::Session {
            return self.attach_sessions(points);
        }
        let same_file = points.windows(2).all(|w| w[0].path == w[1].path);
        if mode != AttachMode::Perf && same_file && !points.is_empty() {
            match self.attach_multi(kind, points) {
                Ok(report) => return Ok(report),
                // The verifier would refuse the program for perf-event links too.
                Err(err @ multi::MultiError::Load { .. }) if err.verifier_refused() => {
                    return Err(LoadError::Multi(err));
                }
                Err(err) if mode == AttachMode::Multi => return Err(LoadError::Multi(err)),
                Err(err) => {
                    log::debug!("uprobe_multi unavailable, one link per function instead: {err}")
                }
            }
        }
        self.attach_perf(kind, points)
    }

    /// Entry and return in one session link; where the kernel refuses the link (or the
    /// points span files), an entry and a return probe each instead, which the programs
    /// pair in maps as they do without sessions.
    fn attach_sessions(&mut self, points: &[AttachPoint]) -> Result<AttachReport, LoadError> {
        let same_file = points.windows(2).all(|w| w[0].path == w[1].path);
        if same_file && !points.is_empty() {
            match self.attach_multi(ProbeKind::Session, points) {
                Ok(report) => return Ok(report),
                Err(err) => log::debug!("no uprobe session link, entry and return probes: {err}"),
            }
        }
        self.sessions = false;
        let entries = self.attach(ProbeKind::Entry, points)?;
        let returns = self.attach(ProbeKind::Return, points)?;
        let mut failed = entries.failed;
        for (index, why) in returns.failed {
            if !failed.iter().any(|(i, _)| *i == index) {
                failed.push((index, why));
            }
        }
        Ok(AttachReport {
            attached: entries.attached.min(returns.attached),
            failed,
            multi: entries.multi && returns.multi,
        })
    }

    fn attach_multi(
        &mut self,
        kind: ProbeKind,
        points: &[AttachPoint],
    ) -> Result<AttachReport, multi::MultiError> {
        let slot = kind as usize;
        if self.multi_programs[slot].is_none() {
            let name = program_name(kind, self.noop);
            let attach_type = if kind == ProbeKind::Session {
                sys::BPF_TRACE_UPROBE_SESSION
            } else {
                sys::BPF_TRACE_UPROBE_MULTI
            };
            self.multi_programs[slot] = Some(multi::load_program(
                super::KERNEL_OBJECT,
                name,
                &self.map_fds,
                attach_type,
            )?);
        }
        let mut report = AttachReport {
            multi: true,
            ..Default::default()
        };
        // Sites the kernel would refuse were left out when FUNCTION was resolved
        // (symbols::probe_site); a refusal here is a kernel that disagrees.
        let started = std::time::Instant::now();
        let all: Vec<usize> = (0..points.len()).collect();
        self.attach_multi_bisecting(kind, points, &all, &mut report)?;
        log::debug!(
            "{} points in one link, {} refused, in {:?}",
            report.attached,
            report.failed.len(),
            started.elapsed()
        );
        Ok(report)
    }

    /// One link for `indexes`; when the kernel refuses it, halves until each refused
    /// point is found alone (a function whose first instruction cannot be probed must not
    /// take the others down).
    fn attach_multi_bisecting(
        &mut self,
        kind: ProbeKind,
        points: &[AttachPoint],
        indexes: &[usize],
        report: &mut AttachReport,
    ) -> Result<(), multi::MultiError> {
        let program = self.multi_programs[kind as usize]
            .as_ref()
            .expect("loaded above");
        let offsets: Vec<u64> = indexes.iter().map(|&i| points[i].offset).collect();
        let cookies: Vec<u64> = indexes.iter().map(|&i| points[i].cookie).collect();
        let ref_ctr_offsets: Vec<u64> = indexes.iter().map(|&i| points[i].ref_ctr_offset).collect();
        let path = &points[indexes[0]].path;
        match sys::attach_uprobe_multi(
            program.as_fd(),
            path,
            &offsets,
            &cookies,
            &ref_ctr_offsets,
            match kind {
                ProbeKind::Return => sys::MultiLink::Return,
                ProbeKind::Session => sys::MultiLink::Session,
                _ => sys::MultiLink::Entry,
            },
            self.pid,
        )
        .map_err(multi::MultiError::Link)
        {
            Ok(link) => {
                self.multi_links.push(link);
                report.attached += indexes.len();
                Ok(())
            }
            // Nothing attached yet and everything refused: the kernel lacks the link type.
            Err(err)
                if report.attached == 0 && report.failed.is_empty() && is_unsupported(&err) =>
            {
                Err(err)
            }
            Err(err) if indexes.len() == 1 => {
                let i = indexes[0];
                report.failed.push((
                    i,
                    LoadError::Refused {
                        path: points[i].path.clone(),
                        offset: points[i].offset,
                        why: describe_errno(err.link_errno()),
                    },
                ));
                Ok(())
            }
            Err(_) => {
                let (left, right) = indexes.split_at(indexes.len() / 2);
                self.attach_multi_bisecting(kind, points, left, report)?;
                self.attach_multi_bisecting(kind, points, right, report)
            }
        }
    }

    /// One perf-event link per point, through aya.
    fn attach_perf(
        &mut self,
        kind: ProbeKind,
        points: &[AttachPoint],
    ) -> Result<AttachReport, LoadError> {
        let name = program_name(kind, self.noop);
        let program_error = |source: ProgramError| LoadError::Program {
            program: name,
            why: match source {
                ProgramError::LoadError {
                    io_error,
                    verifier_log,
                } => format!(
                    "{io_error}{}",
                    sys::verifier_summary(&verifier_log.to_string())
                ),
                other => other.to_string(),
            },
        };
        let program: &mut UProbe = self
            .ebpf
            .program_mut(name)
            .ok_or(LoadError::MissingProgram(name))?
            .try_into()
            .map_err(program_error)?;
        if program.fd().is_err() {
            program.load().map_err(program_error)?;
        }
        if points.iter().any(|p| p.ref_ctr_offset != 0) {
            return Err(LoadError::SemaphoresNeedMulti);
        }
        let mut report = AttachReport::default();
        for (index, point) in points.iter().enumerate() {
            let attach_point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(point.offset),
                cookie: Some(point.cookie),
            };
            match program.attach(attach_point, &point.path, self.scope) {
                Ok(link) => {
                    self.perf_links.push((kind, link));
                    report.attached += 1;
                }
                Err(source) => {
                    let errno = errno_of(&source);
                    let error = match errno {
                        Some(_) => LoadError::Refused {
                            path: point.path.clone(),
                            offset: point.offset,
                            why: describe_errno(errno),
                        },
                        None => LoadError::Attach {
                            path: point.path.clone(),
                            offset: point.offset,
                            source,
                        },
                    };
                    report.failed.push((index, error));
                }
            }
        }
        Ok(report)
    }

    /// Removes every probe and keeps the programs and maps, so the run can go on and
    /// attach again (a traced file that changed).
    pub fn detach_all(&mut self) {
        self.multi_links.clear();
        for (kind, link) in std::mem::take(&mut self.perf_links) {
            let name = program_name(kind, self.noop);
            if let Some(program) = self
                .ebpf
                .program_mut(name)
                .and_then(|p| <&mut UProbe>::try_from(p).ok())
                && let Err(err) = program.detach(link)
            {
                log::warn!("detaching a probe failed: {err}");
            }
        }
    }
}

/// Errors that mean "this kernel has no uprobe_multi", not "this offset is bad".
fn is_unsupported(err: &multi::MultiError) -> bool {
    matches!(
        err.link_errno(),
        Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS | libc::EPERM)
    )
}

/// The kernel-internal ENOTSUPP, which uprobes return for instructions they cannot
/// single-step.
const ENOTSUPP: i32 = 524;

fn errno_of(err: &ProgramError) -> Option<i32> {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = e.source();
    }
    None
}

fn describe_errno(errno: Option<i32>) -> String {
    match errno {
        Some(ENOTSUPP) => {
            "the kernel cannot put a uprobe on this instruction (ENOTSUPP: uprobes cannot single-step it)".into()
        }
        Some(libc::EINVAL) => "the kernel refused the offset (EINVAL; not an instruction boundary?)".into(),
        Some(errno) => std::io::Error::from_raw_os_error(errno).to_string(),
        None => "unknown error".into(),
    }
}
