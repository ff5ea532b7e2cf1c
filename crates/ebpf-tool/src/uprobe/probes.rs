//! Putting the run's probes on, and moving them when the traced file changes under them
//! (rewritten in place, or replaced by an upgrade: see `target::watch`).

use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

use tokio::io::unix::AsyncFd;

use super::{ProbePoints, Run};
use crate::{
    loader::{AttachPoint, LoadError, Loader, ProbeKind},
    output::{escape::printable, printer::Printer},
    target::watch::{Change, FileWatch},
};

/// A changed file gets probes again once it has been quiet this long (a copy or an
/// upgrade writes it in many pieces).
pub const SETTLE: Duration = Duration::from_millis(300);

/// The probes of each kind a run puts on: for each probe id with points (none where a
/// function is gone from a changed file), its entry, and its returns as the run sees
/// them. A function whose first instruction returns gets one probe for both, so the
/// entry is always seen first.
pub fn attach_points(
    path: &Path,
    points: &[(usize, &ProbePoints)],
    returns: bool,
    return_sites: bool,
    sessions: bool,
) -> Vec<(ProbeKind, Vec<AttachPoint>)> {
    let mut kinds: Vec<(ProbeKind, Vec<AttachPoint>)> = Vec::new();
    let mut add = |kind: ProbeKind, offset: u64, probe: usize| {
        let point = AttachPoint {
            path: path.to_owned(),
            offset,
            cookie: probe as u64,
            ref_ctr_offset: 0,
        };
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, list)) => list.push(point),
            None => kinds.push((kind, vec![point])),
        }
    };
    for &(probe, at) in points {
        let entry_returns = return_sites && at.returns.contains(&at.entry);
        if returns && !return_sites && sessions {
            add(ProbeKind::Session, at.entry, probe);
            continue;
        }
        if entry_returns {
            add(ProbeKind::EntryReturnSite, at.entry, probe);
        } else {
            add(ProbeKind::Entry, at.entry, probe);
        }
        if returns && !return_sites {
            add(ProbeKind::Return, at.entry, probe);
        }
        if returns && return_sites {
            for &offset in at.returns.iter().filter(|&&o| o != at.entry) {
                add(ProbeKind::ReturnSite, offset, probe);
            }
        }
    }
    kinds
}

/// The points of every function of the run, under their probe ids; `sessions` when the
/// loader sees entries and returns in uprobe sessions.
pub fn run_points(run: &Run, sessions: bool) -> Vec<(ProbeKind, Vec<AttachPoint>)> {
    let targets = &run.targets;
    let points: Vec<(usize, &ProbePoints)> = targets.points.iter().enumerate().collect();
    with_semaphores(
        attach_points(
            &targets.binary,
            &points,
            run.plan.returns,
            targets.return_sites,
            sessions,
        ),
        &targets.semaphores,
    )
}

/// Each USDT site's entry point with its semaphore (`semaphores[probe id]`).
fn with_semaphores(
    mut kinds: Vec<(ProbeKind, Vec<AttachPoint>)>,
    semaphores: &[u64],
) -> Vec<(ProbeKind, Vec<AttachPoint>)> {
    for (kind, points) in &mut kinds {
        if *kind == ProbeKind::Entry {
            for point in points {
                point.ref_ctr_offset = semaphores.get(point.cookie as usize).copied().unwrap_or(0);
            }
        }
    }
    kinds
}

/// Attaches the probes of each kind, saying which were refused.
pub fn attach(
    printer: &mut Printer,
    run: &Run,
    loader: &mut Loader,
    kinds: &[(ProbeKind, Vec<AttachPoint>)],
) -> Result<(), LoadError> {
    let targets = &run.targets;
    let started = Instant::now();
    for (kind, points) in kinds {
        let (kind, points) = (*kind, points.as_slice());
        let mut report = loader.attach(kind, points)?;
        if report.attached == 0 && !report.failed.is_empty() {
            return Err(report.failed.swap_remove(0).1);
        }
        let failed: Vec<(String, String)> = report
            .failed
            .iter()
            .map(|(index, why)| {
                let reason = match why {
                    LoadError::Refused { why, .. } => why.clone(),
                    other => other.to_string(),
                };
                let probe = points[*index].cookie as usize;
                (targets.labels[probe].clone(), reason)
            })
            .collect();
        printer.skipped(&failed);
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
    Ok(())
}

/// Waits for the traced file to change; a run that cannot watch says so.
pub fn watch_file(printer: &mut Printer, path: &Path) -> Option<AsyncFd<FileWatch>> {
    // SAFETY: the FileWatch owns its inotify descriptor and keeps it open for as long as
    // the AsyncFd that owns the FileWatch exists.
    let registered =
        FileWatch::new(path).and_then(|w| unsafe { AsyncFd::register(w) }.map_err(io::Error::from));
    match registered {
        Ok(watch) => Some(watch),
        Err(err) => {
            printer.warning(&format!(
                "cannot watch {} for changes ({err}): if it is rewritten while traced, new runs of it may crash",
                path.display()
            ));
            None
        }
    }
}

/// The traced file changed: every probe comes off at once, before a process maps the
/// new contents with breakpoints at the old offsets.
pub fn file_changed(printer: &mut Printer, run: &Run, loader: &mut Loader, change: Change) {
    let targets = &run.targets;
    loader.detach_all();
    let what = match change {
        Change::Modified => "was rewritten",
        Change::Replaced => "was replaced by another file",
    };
    printer.warning(&format!(
        "{} {what} while traced: its probes are detached (at the old offsets they would land inside other code); they go back on when the new file has the functions",
        targets.binary.display()
    ));
}

/// Resolves FUNCTION again in the file now at the traced path and puts the probes back
/// on the functions it still has, under their old probe ids; watches the new file.
pub fn reattach(
    printer: &mut Printer,
    run: &Run,
    loader: &mut Loader,
) -> Option<AsyncFd<FileWatch>> {
    let (plan, targets) = (&run.plan, &run.targets);
    let resolved = crate::symbols::Symbols::read(&targets.binary)
        .map_err(anyhow::Error::from)
        .and_then(|symbols| {
            let functions = symbols.resolve_all(&plan.function_args)?.functions;
            Ok((symbols, functions))
        });
    let (symbols, functions) = match resolved {
        Ok(resolved) => resolved,
        Err(err) => {
            printer.warning(&format!(
                "probes stay off: {} can no longer be traced: {err}",
                targets.binary.display()
            ));
            return watch_file(printer, &targets.binary);
        }
    };
    // Old probe ids, so events keep naming their functions; a function whose returns the
    // new file hides counts as gone.
    let found: Vec<(usize, ProbePoints)> = targets
        .labels
        .iter()
        .enumerate()
        .filter_map(|(probe, label)| {
            let function = functions.iter().find(|f| &f.label() == label)?;
            let (at, _) = ProbePoints::of(&symbols, function, targets.return_sites).ok()?;
            Some((probe, at))
        })
        .collect();
    let points: Vec<(usize, &ProbePoints)> = found.iter().map(|(p, at)| (*p, at)).collect();
    let missing = targets.labels.len() - points.len();
    let kinds = with_semaphores(
        attach_points(
            &targets.binary,
            &points,
            plan.returns,
            targets.return_sites,
            loader.sessions(),
        ),
        &targets.semaphores,
    );
    if points.is_empty() {
        printer.warning("probes stay off: the new file has none of the traced functions");
    } else if let Err(err) = attach(printer, run, loader, &kinds) {
        printer.warning(&format!("probes stay off: {err}"));
    } else {
        printer.status(&format!(
            "Reattached {} of {} functions to the new {}{}",
            points.len(),
            targets.labels.len(),
            printable(&targets.binary.to_string_lossy()),
            if missing > 0 {
                format!(" ({missing} are gone from it)")
            } else {
                String::new()
            }
        ));
    }
    watch_file(printer, &targets.binary)
}
