//! The run loop: attach, drain the ring buffer into the printer, print tables on an
//! interval, stop on the first of duration, Ctrl+C, SIGTERM, SIGHUP or a closed stdout,
//! then detach and account for every event.
//!
//! Nothing here waits on output: the printer's writers run on threads of their own and
//! say when they have no room, and the loop then leaves records in the ring (the kernel
//! drops and counts what does not fit) rather than block. So a stop is honoured within
//! one loop turn whatever the event rate and however stuck stdout is; after it, draining
//! and writing get a bounded time, and what they could not finish is counted as lost.

use std::{
    io,
    time::{Duration, Instant},
};

use tokio::io::{Interest, unix::AsyncFd};

use super::{
    Run,
    probes::{SETTLE, attach, file_changed, reattach, run_points, watch_file},
    report,
    ring::{Drained, FdRef, drain, ring_discard},
    stopping::{Signals, pass_on},
};
use crate::{
    events, kernel,
    launch::{self, Launch, exit},
    loader::Loader,
    metrics::MetricsServer,
    output::{
        escape,
        printer::{Announcement, Closing, Printer},
        stacks,
    },
    privilege,
    symbolize::StackSymbolizer,
    unwind::DwarfStacks,
};

/// How often output is checked for a reader that went away, losses for news and new
/// stacks symbolized.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// How often the ring buffer is drained without a wake-up: the kernel side only wakes us
/// once a batch is pending, so this bounds how late a lone event is printed.
const DRAIN_INTERVAL: Duration = Duration::from_millis(25);
/// At most one "events lost" warning per this long while running.
const LOSS_WARNING_INTERVAL: Duration = Duration::from_secs(1);
/// Records taken from the ring per turn of the loop, so signals and deadlines are looked
/// at between bounded pieces of work.
const DRAIN_BUDGET: usize = 16 * 1024;
/// After the stop: how long records left in the ring may still be printed...
const FINAL_DRAIN: Duration = Duration::from_millis(250);
/// ... and how long stdout then gets to take them and the closing lines...
const FINAL_WRITE: Duration = Duration::from_millis(500);
/// ... and the last lines (the summary) after that.
const LAST_LINES: Duration = Duration::from_millis(250);

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Duration,
    Interrupt,
    Terminate,
    HangUp,
    /// Nobody reads stdout any more (`| head -1`, a terminal gone): end quietly.
    StdoutClosed,
    /// The command of `-c`, or the process of `-p`, exited.
    Exited,
}

/// Runs `ebpf-tool uprobe` to completion; the exit status: 0 for every clean stop, the
/// command's own with `-c`.
pub fn run(run: Run, launch: Option<Launch>) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    let mut printer = Printer::new(
        run.plan.json,
        run.plan.format.clone(),
        run.targets.labels.clone(),
    );
    let result = runtime.block_on(trace(&run, launch, &mut printer));
    // Lines queued before an error still come out, in order, before it is reported.
    printer.flush(true);
    printer.settle_stdout(Instant::now() + LAST_LINES);
    printer.settle_stderr(Instant::now() + LAST_LINES);
    result
}

async fn trace(run: &Run, mut launch: Option<Launch>, printer: &mut Printer) -> anyhow::Result<u8> {
    let (plan, targets) = (&run.plan, &run.targets);
    privilege::check()?;
    let kernel_version = kernel::KernelVersion::current();
    kernel::check(kernel_version)?;
    if plan.returns {
        kernel::check_return_probes(kernel_version)?;
    }
    report::check_output_files(plan)?;
    let mut signals = Signals::install()?;

    printer.announce(&Announcement {
        binary_arg: &plan.binary_arg,
        function_arg: &plan.function_arg,
        binary: &targets.binary,
        functions: targets
            .labels
            .iter()
            .zip(&targets.functions)
            .map(|(label, f)| (label.as_str(), f.file_offset))
            .collect(),
        notes: &targets.notes,
        pid: plan.tasks.pid,
        duration: plan.duration,
    });
    for warning in &targets.warnings {
        printer.warning(warning);
    }
    if plan.returns {
        for warning in kernel::return_probe_warnings(kernel_version) {
            printer.warning(&warning);
        }
    }
    if targets.functions.len() > 1 && !kernel::has_uprobe_multi(kernel_version) {
        printer.status("Note: this kernel has no uprobe_multi link (Linux 6.6+): one link per function, slower to attach and detach");
    }

    // The end of the command, or of the process of -p, ends the run: watched from before
    // the probes are attached, so an exit right after they are is not missed.
    let watched = launch
        .as_ref()
        .map(|l| l.pid)
        .or(plan.tasks.pid.map(|p| p.get()));
    let exit_watch = match watched.map(exit::watch) {
        // SAFETY: the AsyncFd owns the pidfd, which stays open for as long as it exists.
        Some(Ok(fd)) => Some(unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?),
        Some(Err(err)) if launch.is_none() => {
            return Err(anyhow::anyhow!(
                "process {} is gone: {err}",
                watched.unwrap_or(0)
            ));
        }
        Some(Err(err)) => return Err(err.into()),
        None => None,
    };
    // Listening before attaching: a port in use costs no probe.
    let (scrape_tx, mut scrapes) = tokio::sync::mpsc::unbounded_channel();
    let metrics_server = plan
        .metrics
        .map(|addr| MetricsServer::start(addr, scrape_tx))
        .transpose()?;
    privilege::raise_memlock_limit();
    let (mut loader, channels) = Loader::load(
        &run.config,
        targets.functions.len(),
        &run.specs,
        plan.noop,
        &run.tuning,
    )?;
    printer.skipped(&targets.skipped);
    let sessions = loader.sessions();
    attach(printer, run, &mut loader, &run_points(run, sessions))?;
    let mut watch = watch_file(printer, &targets.binary);
    let stack_files = report::create_output_files(plan)?;

    printer.status("Uprobe attached successfully. Waiting for events...");
    printer.status("(Functions called will trigger the probe)\n");
    if let Some(server) = &metrics_server {
        printer.status(&format!("Metrics at http://{}/metrics", server.address));
    }
    if let Some(launch) = &launch {
        if let Some(note) = &launch.scope_note {
            printer.warning(note);
        }
        printer.status(&format!("Running: {}", escape::printable(&launch.label)));
    } else if plan.duration.is_none() {
        printer.status("Press Ctrl+C to stop...");
    }
    printer.flush(true);
    if let Some(launch) = launch.as_mut() {
        launch.release()?;
    }
    // A signal passed on to the command: the run ends when it does, or at this time.
    let mut grace: Option<Instant> = None;

    let aggregates = channels.aggregates;
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as the AsyncFd
    // that owns the ring buffer exists.
    let mut ring = unsafe { AsyncFd::register_with_interest(channels.events, Interest::READABLE) }
        .map_err(io::Error::from)?;
    let mut drained = Drained::default();
    let layout = events::RecordLayout::of(loader.config());
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as the AsyncFd
    // that owns the ring buffer exists.
    let mut stack_ring = match channels.stack_samples {
        Some(ring) => Some(
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
                .map_err(io::Error::from)?,
        ),
        None => None,
    };
    let entries: Vec<u64> = targets.functions.iter().map(|f| f.address).collect();
    let mut dwarf = stack_ring
        .as_ref()
        .map(|_| DwarfStacks::new(targets.binary.clone(), entries.clone()));
    let mut symbolizer = (plan.stacks.is_some() && dwarf.is_none())
        .then(|| StackSymbolizer::new(targets.binary.clone(), entries.clone()));
    let duration = plan.duration;
    let ends_at = duration.map(|d| Instant::now() + d);
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
    // When the traced file changed, probes go back on once it has been quiet this long.
    let mut reattach_at: Option<Instant> = None;
    let mut last_loss_warning: Option<Instant> = None;

    // Waited on when the printer has no room: a descriptor of the printer's own (see
    // `output::sink`), which outlives this loop.
    // SAFETY: the descriptor stays open while `stdout_ready` exists; it only waits on it.
    let stdout_ready = printer
        .stdout_fd()
        .map(|fd| unsafe { AsyncFd::register_with_interest(FdRef(fd), Interest::WRITABLE) })
        .transpose()
        .map_err(io::Error::from)?;
    printer.keep_order(false);
    let stop = loop {
        // While the printer has no room, the ring is left alone (its readiness would wake
        // the loop for nothing) until stdout can take more.
        let room = printer.has_room();
        tokio::select! {
            ready = async { stdout_ready.as_ref().expect("guarded").writable().await },
                if !room && stdout_ready.is_some() =>
            {
                ready?.clear_ready();
                printer.flush(false);
                drain(ring.get_mut(), layout, printer, &mut drained, DRAIN_BUDGET);
            }
            _ = signals.interrupt.recv() => {
                match pass_on(launch.as_ref(), &mut grace, libc::SIGINT) {
                    true => continue,
                    false => break Stop::Interrupt,
                }
            }
            _ = signals.terminate.recv() => {
                match pass_on(launch.as_ref(), &mut grace, libc::SIGTERM) {
                    true => continue,
                    false => break Stop::Terminate,
                }
            }
            _ = signals.hangup.recv() => {
                match pass_on(launch.as_ref(), &mut grace, libc::SIGHUP) {
                    true => continue,
                    false => break Stop::HangUp,
                }
            }
            _ = async { exit_watch.as_ref().expect("guarded").readable().await }, if exit_watch.is_some() => {
                break Stop::Exited;
            }
            () = &mut deadline => break Stop::Duration,
            guard = ring.readable_mut(), if room => {
                let mut guard = guard?;
                if drain(guard.get_inner_mut(), layout, printer, &mut drained, DRAIN_BUDGET) {
                    guard.clear_ready();
                }
            }
            guard = async { stack_ring.as_mut().expect("guarded").readable_mut().await }, if stack_ring.is_some() => {
                let mut guard = guard?;
                if dwarf.as_mut().expect("with its ring").take(guard.get_inner_mut(), DRAIN_BUDGET) {
                    guard.clear_ready();
                }
            }
            _ = drain_timer.tick(), if plan.per_event => {
                drain(ring.get_mut(), layout, printer, &mut drained, DRAIN_BUDGET);
            }
            _ = housekeeping.tick() => {
                if printer.output_closed() || stdout_reader_gone() {
                    break Stop::StdoutClosed;
                }
                // The periodic half of the file watch, for filesystems inotify misses.
                if let Some(change) = watch.as_mut().and_then(|w| w.get_mut().changes()) {
                    if reattach_at.is_none() {
                        file_changed(printer, run, &mut loader, change);
                    }
                    reattach_at = Some(Instant::now() + SETTLE);
                }
                if reattach_at.is_some_and(|at| Instant::now() >= at) {
                    reattach_at = None;
                    watch = reattach(printer, run, &mut loader);
                }
                if let Some(symbolizer) = symbolizer.as_mut() {
                    symbolizer.update(&aggregates)?;
                }
                let lost = aggregates.losses()?.ringbuf_full;
                let quiet = last_loss_warning.is_some_and(|t| t.elapsed() < LOSS_WARNING_INTERVAL);
                if lost > lost_reported && !quiet {
                    printer.warning(&format!("{lost} events lost so far (ring buffer full; the reader fell behind)"));
                    lost_reported = lost;
                    last_loss_warning = Some(Instant::now());
                }
            }
            ready = async { watch.as_mut().expect("guarded").readable_mut().await }, if watch.is_some() => {
                let mut guard = ready?;
                guard.clear_ready();
                if let Some(change) = guard.get_inner_mut().changes() {
                    if reattach_at.is_none() {
                        file_changed(printer, run, &mut loader, change);
                    }
                    reattach_at = Some(Instant::now() + SETTLE);
                }
            }
            Some(reply) = scrapes.recv(), if metrics_server.is_some() => {
                let _ = reply.send(report::metrics_text(run, &aggregates)?);
            }
            _ = interval.tick() => {
                printer.status(&format!("\n--- {} (cumulative) ---", clock_time()));
                printer.tables(&report::tables(run, &aggregates)?);
            }
        }
        // What this turn produced goes out now, as a line printed by a blocking tool would.
        printer.flush(true);
        if printer.output_closed() {
            break Stop::StdoutClosed;
        }
        if ends_at.is_some_and(|at| Instant::now() >= at) {
            break Stop::Duration;
        }
        if grace.is_some_and(|at| Instant::now() >= at) {
            break Stop::Interrupt;
        }
        // A branch that is always ready (a flood of records, a descriptor in error) would
        // otherwise keep this task running without the runtime ever polling its signal
        // and timer drivers: Ctrl+C and the deadline would never arrive.
        tokio::task::yield_now().await;
    };
    let stopped = Instant::now();
    // Scrapes in flight get a 503 at once, and the server stops.
    drop(scrapes);
    drop(metrics_server);
    printer.keep_order(true);

    // Detach first, then drain: records written before the last probe went away still
    // get printed, and nothing new can arrive.
    drop(loader);
    if stop == Stop::StdoutClosed {
        return Ok(0);
    }
    let ring = ring.get_mut();
    while !drain(ring, layout, printer, &mut drained, DRAIN_BUDGET) {
        if stopped.elapsed() > FINAL_DRAIN || printer.output_closed() || printer.stdout_stuck() {
            drained.discarded += ring_discard(ring);
            break;
        }
        if !printer.has_room() {
            printer.settle_stdout(Instant::now() + Duration::from_millis(5));
        }
    }
    let mut exit_code = 0;
    let why = match stop {
        Stop::Duration => "Duration complete.".to_owned(),
        Stop::Interrupt => "Received Ctrl+C, stopping...".to_owned(),
        Stop::Terminate => "Received SIGTERM, stopping...".to_owned(),
        Stop::HangUp => "Received SIGHUP, stopping...".to_owned(),
        Stop::StdoutClosed => unreachable!("returned above"),
        Stop::Exited => match launch.as_mut() {
            Some(launch) => {
                let status = launch.exit_status();
                let (what, code) = status.map_or(("ended".to_owned(), 1), launch::describe);
                exit_code = code;
                format!("{} {what}.", escape::printable(&launch.label))
            }
            None => format!("Process {} exited.", watched.unwrap_or(0)),
        },
    };
    if let (Some(ring), Some(dwarf)) = (stack_ring.as_mut(), dwarf.as_mut()) {
        while !dwarf.take(ring.get_mut(), DRAIN_BUDGET) && stopped.elapsed() < FINAL_DRAIN {}
    }
    printer.status(&format!("\n{why}\nUprobe detached."));
    let tables = report::tables(run, &aggregates)?;
    printer.tables(&tables);
    let stack_rows = match (symbolizer, &dwarf) {
        (Some(mut symbolizer), _) => {
            symbolizer.update(&aggregates)?;
            Some(symbolizer.rows(&aggregates, &targets.labels)?)
        }
        (None, Some(dwarf)) => Some(dwarf.rows(&targets.labels)),
        (None, None) => None,
    };
    if let Some(rows) = stack_rows {
        let rows = stacks::merge_and_sort(rows);
        printer.stacks(&rows);
        for line in stack_files.write(run, &rows)? {
            printer.to_stderr(&line);
        }
    }
    // What stdout has not taken by the deadline is counted as lost, not waited for.
    printer.flush(true);
    printer.settle_stdout(stopped + FINAL_DRAIN + FINAL_WRITE);
    let losses = aggregates.losses()?;
    let printed = printer.printed();
    let unwritten = drained.read - printed + drained.discarded;
    // A run that prints no lines says what its tables hold instead.
    let aggregated = if plan.per_event {
        None
    } else {
        tables.calls_aggregated(plan.count)
    };
    let closing = Closing {
        aggregated,
        summary: crate::output::json::Summary {
            seen: drained.read + drained.discarded + losses.ringbuf_full,
            printed,
            lost: losses.ringbuf_full + unwritten,
            uncounted: losses.counts_full + losses.stacks_failed + losses.unpaired,
            unreadable: losses.unreadable,
            unreturned: losses.abandoned,
            in_progress: if plan.returns {
                aggregates.calls_in_progress()?
            } else {
                0
            },
        },
        counts_full: losses.counts_full,
        stacks_failed: losses.stacks_failed,
        unpaired: losses.unpaired,
        unwritten,
    };
    printer.summary(&closing);
    Ok(exit_code)
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
