//! The run loop: attach, drain the ring buffer to stdout, stop on the first of duration,
//! Ctrl+C, SIGTERM or a closed stdout, then detach and account for every event.

use std::{
    io::{self, BufWriter, ErrorKind, StdoutLock, Write},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use super::Plan;
use crate::{
    events,
    loader::{AttachPoint, Channels, KernelSettings, Loader, ProbeKind},
    output::text,
    privilege,
};

/// How often buffered output is checked for a reader that went away, and the ring buffer
/// drained even if a wake-up was missed.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(200);
const STDOUT_BUFFER_BYTES: usize = 64 * 1024;

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Duration,
    Interrupt,
    Terminate,
    /// Nobody reads stdout any more (`| head -1`): end quietly.
    StdoutClosed,
}

/// What happened to the events, for the closing summary.
#[derive(Debug, Default)]
struct Tally {
    seen: u64,
    printed: u64,
    malformed: u64,
}

/// Runs `ebpf-tool uprobe` to completion. Exit status 0 for every clean stop.
pub fn run(plan: Plan) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(run_async(plan))
}

async fn run_async(plan: Plan) -> anyhow::Result<()> {
    privilege::check()?;
    // Installed before attaching so a signal during start-up also detaches cleanly.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut out = BufWriter::with_capacity(STDOUT_BUFFER_BYTES, io::stdout().lock());

    let announced = announce(&mut out, &plan);
    if is_closed(&announced) {
        return Ok(());
    }
    announced?;

    privilege::raise_memlock_limit();
    let settings = KernelSettings {
        tool_tgid: std::process::id(),
        target_tgid: plan.pid,
    };
    let (mut loader, channels) = Loader::load(settings)?;
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
    loader.attach(ProbeKind::Entry, &points)?;

    let ready = writeln!(
        out,
        "Uprobe attached successfully. Waiting for events...\n\
         (Functions called will trigger the probe)\n"
    )
    .and_then(|()| {
        if plan.duration.is_none() {
            writeln!(out, "Press Ctrl+C to stop...")?;
        }
        out.flush()
    });
    if is_closed(&ready) {
        return Ok(());
    }
    ready?;

    let Channels { events, lost } = channels;
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as the AsyncFd
    // that owns the ring buffer exists.
    let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
        .map_err(io::Error::from)?;
    let mut tally = Tally::default();
    let deadline = async {
        match plan.duration {
            Some(duration) => tokio::time::sleep(duration).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);

    let stop = loop {
        let drained = tokio::select! {
            _ = interrupt.recv() => break Stop::Interrupt,
            _ = terminate.recv() => break Stop::Terminate,
            () = &mut deadline => break Stop::Duration,
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let drained = drain(guard.get_inner_mut(), &mut out, &plan, &mut tally);
                guard.clear_ready();
                drained
            }
            _ = housekeeping.tick() => {
                if stdout_reader_gone() {
                    break Stop::StdoutClosed;
                }
                drain(ring.get_mut(), &mut out, &plan, &mut tally)
            }
        };
        match drained.and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::BrokenPipe => break Stop::StdoutClosed,
            Err(e) => return Err(e.into()),
        }
    };

    // Detach first, then drain: records written before the last probe went away still
    // get printed, and nothing new can arrive.
    drop(loader);
    if stop == Stop::StdoutClosed {
        return Ok(());
    }
    let finished = drain(ring.get_mut(), &mut out, &plan, &mut tally).and_then(|()| {
        let why = match stop {
            Stop::Duration => "Duration complete.",
            Stop::Interrupt => "Received Ctrl+C, stopping...",
            Stop::Terminate => "Received SIGTERM, stopping...",
            Stop::StdoutClosed => unreachable!("handled above"),
        };
        writeln!(out, "\n{why}\nUprobe detached.")?;
        out.flush()
    });
    if is_closed(&finished) {
        return Ok(());
    }
    finished?;
    let lost = lost.lost()?;
    eprintln!(
        "ebpf-tool: {} events seen, {} printed, {lost} lost{}",
        tally.seen,
        tally.printed,
        if tally.malformed > 0 {
            format!(", {} malformed", tally.malformed)
        } else {
            String::new()
        }
    );
    if lost > 0 {
        eprintln!(
            "ebpf-tool: warning: {lost} calls were not reported because the ring buffer was full"
        );
    }
    Ok(())
}

/// The opening lines, as the spec gives them, plus where the function really is.
fn announce(out: &mut impl Write, plan: &Plan) -> io::Result<()> {
    writeln!(
        out,
        "Attaching uprobe to {}:{}",
        plan.binary_arg, plan.function_arg
    )?;
    for function in &plan.functions {
        writeln!(
            out,
            "Resolved {} in {} at file offset {:#x}",
            function.name,
            plan.binary.display(),
            function.file_offset
        )?;
    }
    if let Some(pid) = plan.pid {
        writeln!(out, "Only process {pid}")?;
    }
    writeln!(
        out,
        "Duration: {} seconds (0 = until Ctrl+C)",
        plan.duration.map_or(0, |d| d.as_secs())
    )?;
    out.flush()
}

/// Prints every record waiting in the ring buffer.
fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut BufWriter<StdoutLock<'static>>,
    plan: &Plan,
    tally: &mut Tally,
) -> io::Result<()> {
    while let Some(record) = ring.next() {
        tally.seen += 1;
        let event = match events::decode(&record) {
            Ok(event) => event,
            Err(err) => {
                if tally.malformed == 0 {
                    eprintln!("ebpf-tool: skipping bad record: {err}");
                }
                tally.malformed += 1;
                continue;
            }
        };
        let function = plan
            .functions
            .get(event.probe_id as usize)
            .map_or("?", |f| f.name.as_str());
        text::write_event(out, &event, function)?;
        tally.printed += 1;
    }
    Ok(())
}

fn is_closed<T>(result: &io::Result<T>) -> bool {
    matches!(result, Err(e) if e.kind() == ErrorKind::BrokenPipe)
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
