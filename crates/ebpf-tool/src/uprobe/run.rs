//! The run loop: attach, drain the ring buffer, print tables on an interval, stop on the
//! first of duration, Ctrl+C, SIGTERM or a closed stdout, then detach and account for
//! every event.

use std::{
    io::{self, BufWriter, ErrorKind, StdoutLock, Write},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use super::{Plan, report};
use crate::{
    events, kernel,
    loader::{AttachPoint, LoadError, Loader, ProbeKind},
    output::{escape::printable, json, text},
    privilege,
    symbolize::StackSymbolizer,
};

/// How often output is checked for a reader that went away, losses for news and new
/// stacks symbolized.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// How often the ring buffer is drained without a wake-up: the kernel side only wakes us
/// once a batch is pending, so this bounds how late a lone event is printed.
const DRAIN_INTERVAL: Duration = Duration::from_millis(25);
/// At most one "events lost" warning per this long while running.
const LOSS_WARNING_INTERVAL: Duration = Duration::from_secs(1);
const STDOUT_BUFFER_BYTES: usize = 256 * 1024;

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Duration,
    Interrupt,
    Terminate,
    /// Nobody reads stdout any more (`| head -1`): end quietly.
    StdoutClosed,
}

/// Runs `ebpf-tool uprobe` to completion. Exit status 0 for every clean stop.
pub fn run(plan: Plan) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    match runtime.block_on(run_async(plan)) {
        Err(err) if is_broken_pipe(&err) => Ok(()),
        other => other,
    }
}

/// stdout, buffered; status lines go to stdout in text mode and to stderr in JSON mode so
/// stdout stays one JSON object per line.
struct Output {
    out: BufWriter<StdoutLock<'static>>,
    json: bool,
    /// A malformed record was already reported: say it once per run, not once per drain.
    warned_malformed: bool,
}

impl Output {
    fn status(&mut self, line: &str) -> io::Result<()> {
        if self.json {
            eprintln!("{line}");
            Ok(())
        } else {
            writeln!(self.out, "{line}")
        }
    }
}

async fn run_async(mut plan: Plan) -> anyhow::Result<()> {
    privilege::check()?;
    let kernel_version = kernel::KernelVersion::current();
    kernel::check(kernel_version)?;
    if plan.attach_return {
        kernel::check_return_probes(kernel_version)?;
    }
    // Installed before attaching so a signal during start-up also detaches cleanly.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut out = Output {
        out: BufWriter::with_capacity(STDOUT_BUFFER_BYTES, io::stdout().lock()),
        json: plan.json,
        warned_malformed: false,
    };

    announce(&mut out, &plan)?;
    for warning in &plan.warnings {
        out.out.flush()?;
        eprintln!("ebpf-tool: warning: {}", printable(warning));
    }
    if plan.attach_return {
        for warning in kernel::return_probe_warnings(kernel_version) {
            out.out.flush()?;
            eprintln!("ebpf-tool: warning: {warning}");
        }
    }
    if plan.functions.len() > 1 && !kernel::has_uprobe_multi(kernel_version) {
        out.status("Note: this kernel has no uprobe_multi link (Linux 6.6+): one link per function, slower to attach and detach")?;
    }
    out.out.flush()?;

    privilege::raise_memlock_limit();
    let (mut loader, channels) = Loader::load(&plan.config, plan.functions.len(), plan.noop)?;
    let points: Vec<AttachPoint> = plan
        .functions
        .iter()
        .enumerate()
        .map(|(index, function)| AttachPoint {
            path: plan.binary.clone(),
            offset: function.file_offset,
            cookie: index as u64,
        })
        .collect();
    let started = Instant::now();
    let mut kinds = vec![ProbeKind::Entry];
    if plan.attach_return {
        kinds.push(ProbeKind::Return);
    }
    report_skipped(&mut out, &plan.skipped)?;
    for kind in kinds {
        let mut report = loader.attach(kind, &points)?;
        if report.attached == 0 && !report.failed.is_empty() {
            return Err(report.failed.swap_remove(0).1.into());
        }
        let failed: Vec<(String, String)> = report
            .failed
            .iter()
            .map(|(index, why)| {
                let reason = match why {
                    LoadError::Refused { why, .. } => why.clone(),
                    other => other.to_string(),
                };
                (plan.labels[*index].clone(), reason)
            })
            .collect();
        report_skipped(&mut out, &failed)?;
        log::debug!(
            "{kind:?}: {} probes attached in {:?} ({})",
            report.attached,
            started.elapsed(),
            if report.multi {
                "one uprobe_multi link"
            } else {
                "one perf-event link each"
            }
        );
    }

    out.status("Uprobe attached successfully. Waiting for events...")?;
    out.status("(Functions called will trigger the probe)\n")?;
    if plan.duration.is_none() {
        out.status("Press Ctrl+C to stop...")?;
    }
    out.out.flush()?;

    let events = channels.events;
    let aggregates = channels.aggregates;
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as the AsyncFd
    // that owns the ring buffer exists.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(io::Error::from)?;
    let mut summary = json::Summary::default();
    let mut symbolizer = plan.stacks.is_some().then(|| {
        let entries = plan.functions.iter().map(|f| f.address).collect();
        StackSymbolizer::new(plan.binary.clone(), entries, plan.text_ranges.clone())
    });
    let duration = plan.duration;
    let deadline = async move {
        match duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    let mut drain_timer = tokio::time::interval(DRAIN_INTERVAL);
    drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut interval = tokio::time::interval(plan.interval.unwrap_or(Duration::MAX / 4));
    interval.tick().await; // the first tick is immediate; tables start one interval in
    let mut lost_reported = 0;
    let mut last_loss_warning: Option<Instant> = None;

    let stop = loop {
        tokio::select! {
            _ = interrupt.recv() => break Stop::Interrupt,
            _ = terminate.recv() => break Stop::Terminate,
            () = &mut deadline => break Stop::Duration,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &mut out, &plan, &mut summary)?;
                guard.clear_ready();
            }
            _ = drain_timer.tick(), if plan.per_event => {
                drain(ring.get_mut(), &mut out, &plan, &mut summary)?;
            }
            _ = housekeeping.tick() => {
                if stdout_reader_gone() {
                    break Stop::StdoutClosed;
                }
                if let Some(symbolizer) = symbolizer.as_mut() {
                    symbolizer.update(&aggregates)?;
                }
                let lost = aggregates.losses()?.ringbuf_full;
                let quiet = last_loss_warning.is_some_and(|t| t.elapsed() < LOSS_WARNING_INTERVAL);
                if lost > lost_reported && !quiet {
                    out.out.flush()?;
                    eprintln!("ebpf-tool: warning: {} events lost so far (ring buffer full; the reader fell behind)", lost);
                    lost_reported = lost;
                    last_loss_warning = Some(Instant::now());
                }
            }
            _ = interval.tick() => {
                out.status(&format!("\n--- {} (cumulative) ---", clock_time()))?;
                report::write_tables(&mut out.out, &plan, &aggregates)?;
            }
        }
        if let Err(e) = out.out.flush() {
            if e.kind() == ErrorKind::BrokenPipe {
                break Stop::StdoutClosed;
            }
            return Err(e.into());
        }
    };

    // Detach first, then drain: records written before the last probe went away still
    // get printed, and nothing new can arrive.
    drop(loader);
    if stop == Stop::StdoutClosed {
        return Ok(());
    }
    drain(ring.get_mut(), &mut out, &plan, &mut summary)?;
    let why = match stop {
        Stop::Duration => "Duration complete.",
        Stop::Interrupt => "Received Ctrl+C, stopping...",
        Stop::Terminate => "Received SIGTERM, stopping...",
        Stop::StdoutClosed => unreachable!("returned above"),
    };
    out.status(&format!("\n{why}\nUprobe detached."))?;
    report::write_tables(&mut out.out, &plan, &aggregates)?;
    if let Some(mut symbolizer) = symbolizer {
        symbolizer.update(&aggregates)?;
        let rows = symbolizer.rows(&aggregates, &plan.labels)?;
        report::write_stacks(&mut out.out, &mut plan, rows)?;
    }
    let losses = aggregates.losses()?;
    summary.lost = losses.ringbuf_full;
    summary.uncounted = losses.counts_full + losses.stacks_failed + losses.unpaired;
    summary.unreadable = losses.unreadable;
    out.out.flush()?;
    report::write_summary(&mut out.out, &plan, &summary, &losses)?;
    out.out.flush()?;
    Ok(())
}

/// Says which functions are not probed: each with its reason when there are few,
/// grouped by reason when a glob ran into many.
fn report_skipped(out: &mut Output, skipped: &[(String, String)]) -> io::Result<()> {
    const LISTED: usize = 5;
    if skipped.len() <= LISTED {
        for (label, why) in skipped {
            out.status(&format!("Skipped {}: {}", printable(label), printable(why)))?;
        }
        return Ok(());
    }
    let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
    for (label, reason) in skipped {
        match by_reason.iter_mut().find(|(r, _)| r == reason) {
            Some((_, names)) => names.push(label),
            None => by_reason.push((reason, vec![label])),
        }
    }
    for (reason, names) in by_reason {
        let shown: Vec<String> = names.iter().take(LISTED).map(|n| printable(n)).collect();
        let more = names.len().saturating_sub(LISTED);
        out.status(&format!(
            "Skipped {} functions ({}{}): {}",
            names.len(),
            shown.join(", "),
            if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            },
            printable(reason)
        ))?;
    }
    Ok(())
}

/// The opening lines, as the spec gives them, plus where the function really is.
fn announce(out: &mut Output, plan: &Plan) -> io::Result<()> {
    // Paths and names may come from anywhere (a hostile symlink, a symbol table): shown
    // with control characters escaped.
    out.status(&format!(
        "Attaching uprobe to {}:{}",
        printable(&plan.binary_arg),
        printable(&plan.function_arg)
    ))?;
    const SHOWN: usize = 10;
    let binary = printable(&plan.binary.to_string_lossy());
    for (function, label) in plan.functions.iter().zip(&plan.labels).take(SHOWN) {
        out.status(&format!(
            "Resolved {} in {binary} at file offset {:#x}",
            printable(label),
            function.file_offset
        ))?;
    }
    if plan.functions.len() > SHOWN {
        out.status(&format!(
            "... and {} more functions",
            plan.functions.len() - SHOWN
        ))?;
    }
    for note in &plan.notes {
        out.status(&format!("Note: {}", printable(note)))?;
    }
    if let Some(pid) = plan.pid {
        out.status(&format!("Only process {pid}"))?;
    }
    out.status(&format!(
        "Duration: {} seconds (0 = until Ctrl+C)",
        plan.duration.map_or(0, |d| d.as_secs())
    ))
}

/// Prints every record waiting in the ring buffer.
fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Output,
    plan: &Plan,
    summary: &mut json::Summary,
) -> anyhow::Result<()> {
    let layout = events::RecordLayout::of(&plan.config);
    while let Some(record) = ring.next() {
        summary.seen += 1;
        let record = match events::decode(&record, layout) {
            Ok(record) => record,
            Err(err) => {
                if !out.warned_malformed {
                    eprintln!("ebpf-tool: skipping bad record: {err}");
                    out.warned_malformed = true;
                }
                continue;
            }
        };
        let function = plan
            .labels
            .get(record.event.probe_id as usize)
            .map_or("?", String::as_str);
        if plan.json {
            json::write_event(&mut out.out, &record, function, &plan.format)?;
        } else {
            text::write_event(&mut out.out, &record, function, &plan.format)?;
        }
        summary.printed += 1;
    }
    Ok(())
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
    })
}

/// Wall-clock time of day (UTC) for interval headers.
fn clock_time() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// True when stdout is a pipe or socket whose reader has gone: poll reports POLLERR on
/// the write end. Catches `| head -1` even while no event is being written.
fn stdout_reader_gone() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout; poll only writes `revents`.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}
