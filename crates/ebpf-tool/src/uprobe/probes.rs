//! Putting the run's probes on, and moving them when the traced file changes under them
//! (rewritten in place, or replaced by an upgrade: see `target::watch`).

use std::{
    io,
    path::Path,
    time::{Duration, Instant},
};

use tokio::io::unix::AsyncFd;

use super::Run;
use crate::{
    loader::{AttachPoint, LoadError, Loader, ProbeKind},
    output::{escape::printable, printer::Printer},
    target::watch::{Change, FileWatch},
};

/// A changed file gets probes again once it has been quiet this long (a copy or an
/// upgrade writes it in many pieces).
pub const SETTLE: Duration = Duration::from_millis(300);

/// One attach point per probe id: `offsets[id]`, or none where a function is not
/// probed (gone from a changed file).
pub fn attach_points(path: &Path, offsets: impl Iterator<Item = Option<u64>>) -> Vec<AttachPoint> {
    offsets
        .enumerate()
        .filter_map(|(index, offset)| {
            Some(AttachPoint {
                path: path.to_owned(),
                offset: offset?,
                cookie: index as u64,
            })
        })
        .collect()
}

/// Attaches the entry (and return) probes at `points`, saying which were refused.
pub fn attach(
    printer: &mut Printer,
    run: &Run,
    loader: &mut Loader,
    points: &[AttachPoint],
) -> Result<(), LoadError> {
    let (plan, targets) = (&run.plan, &run.targets);
    let started = Instant::now();
    let mut kinds = vec![ProbeKind::Entry];
    if plan.returns {
        kinds.push(ProbeKind::Return);
    }
    for kind in kinds {
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
        .and_then(|symbols| Ok(symbols.resolve(&plan.function_arg)?));
    let functions = match resolved {
        Ok(resolution) => resolution.functions,
        Err(err) => {
            printer.warning(&format!(
                "probes stay off: {} can no longer be traced: {err}",
                targets.binary.display()
            ));
            return watch_file(printer, &targets.binary);
        }
    };
    let offsets = targets.labels.iter().map(|label| {
        functions
            .iter()
            .find(|f| &f.label() == label)
            .map(|f| f.file_offset)
    });
    let points = attach_points(&targets.binary, offsets);
    let missing = targets.labels.len() - points.len();
    if points.is_empty() {
        printer.warning("probes stay off: the new file has none of the traced functions");
    } else if let Err(err) = attach(printer, run, loader, &points) {
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
