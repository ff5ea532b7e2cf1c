//! The one owner of stdout and stderr for a run: status lines, events, tables,
//! histograms, stacks and the summary, as text or as JSON. Everything goes through
//! `Sink`s, so no write can block the run loop (see `sink`).
//!
//! Where lines go: in text mode the status lines the spec prescribes ("Attaching uprobe
//! ...", "Uprobe detached.") and the tables go to stdout with the events, the summary
//! and warnings to stderr; in JSON mode stdout carries only JSON objects and every other
//! line goes to stderr.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use super::{
    EventFormat,
    escape::printable,
    hist::{Histogram, human_ns},
    json,
    sink::Sink,
    sink::State,
    stacks,
    stacks::StackRow,
    table,
    table::{CountRow, Group},
    text,
};
use crate::events::Record;

/// How long a line for stderr waits for stdout's earlier lines to be written first, so
/// a terminal shows both in order; a stuck stdout only delays stderr by this much.
const ORDER_WAIT: Duration = Duration::from_millis(50);

/// How many stacks the text report lists.
const TOP_STACKS: usize = 10;

/// The in-kernel tables at one moment, as plain data.
#[derive(Debug, Default)]
pub struct Tables {
    /// `--count`: the group column's name (pid, tid, comm, arg0) when grouped, and the
    /// rows.
    pub counts: Option<(Option<String>, Vec<CountRow>)>,
    pub hists: Vec<HistTable>,
}

impl Tables {
    /// How many calls the tables account for: the count table's total, else the
    /// histograms' samples; with the word for how ("counted", "timed", "measured").
    pub fn calls_aggregated(&self, counted: bool) -> Option<(u64, &'static str)> {
        if counted && let Some((_, rows)) = &self.counts {
            return Some((rows.iter().map(|r| r.count).sum(), "counted"));
        }
        if self.hists.is_empty() {
            return None;
        }
        let latency: u64 = self
            .hists
            .iter()
            .filter(|h| h.of == HistOf::Latency)
            .map(|h| h.hist.count)
            .sum();
        if self.hists.iter().any(|h| h.of == HistOf::Latency) {
            return Some((latency, "timed"));
        }
        Some((self.hists.iter().map(|h| h.hist.count).sum(), "measured"))
    }
}

/// One histogram of one function.
#[derive(Debug)]
pub struct HistTable {
    pub func: String,
    /// With `--by`: the group's name (`arg0`, `comm`) and value.
    pub group: Option<(String, Group)>,
    pub of: HistOf,
    pub hist: Histogram,
    /// Printed in text even when empty (a run of one function says "0 calls").
    pub show_empty: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistOf {
    Latency,
    /// An argument, by the name it is shown with (`arg0`).
    Value(String),
}

/// What a run says before it attaches: the spec's opening lines, plus where each
/// function really is.
pub struct Announcement<'a> {
    pub binary_arg: &'a str,
    pub function_arg: &'a str,
    pub binary: &'a std::path::Path,
    /// Each function's label and file offset.
    pub functions: Vec<(&'a str, u64)>,
    pub notes: &'a [String],
    pub pid: Option<std::num::NonZeroU32>,
    pub duration: Option<Duration>,
}

/// The closing counts of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Closing {
    pub summary: json::Summary,
    /// Without per-call lines: the calls the tables hold (counted, or timed), and which.
    pub aggregated: Option<(u64, &'static str)>,
    /// Calls the kernel could not count (`--count --by` table full).
    pub counts_full: u64,
    pub stacks_failed: u64,
    pub unpaired: u64,
    /// Records read from the ring but not written before the output deadline.
    pub unwritten: u64,
}

pub struct Printer {
    json: bool,
    format: EventFormat,
    /// `labels[probe_id]` names the function of an event.
    labels: Vec<String>,
    stdout: Sink,
    stderr: Sink,
    warned_malformed: bool,
    /// Whether a stderr line waits for stdout's earlier lines: at start-up and at the end,
    /// where a terminal should show them in order, not while events stream (a wait there
    /// would stall reading the ring).
    ordered: bool,
}

impl Printer {
    pub fn new(json: bool, format: EventFormat, labels: Vec<String>) -> Printer {
        Printer {
            json,
            format,
            labels,
            stdout: Sink::new(libc::STDOUT_FILENO),
            stderr: Sink::new(libc::STDERR_FILENO),
            warned_malformed: false,
            ordered: true,
        }
    }

    /// A status line: stdout in text mode, stderr in JSON mode.
    pub fn status(&mut self, line: &str) {
        if self.json {
            self.to_stderr(line);
        } else {
            let out = self.stdout.buffer();
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            self.stdout.flush(false);
        }
    }

    /// The opening lines. Paths and names may come from anywhere (a hostile symlink, a
    /// symbol table): shown with control characters escaped.
    pub fn announce(&mut self, a: &Announcement<'_>) {
        const SHOWN: usize = 10;
        self.status(&format!(
            "Attaching {} to {}:{}",
            if self.format.usdt {
                "USDT probe"
            } else {
                "uprobe"
            },
            printable(a.binary_arg),
            printable(a.function_arg)
        ));
        let binary = printable(&a.binary.to_string_lossy());
        let what = if self.format.usdt { "a site of" } else { "" };
        for (label, offset) in a.functions.iter().take(SHOWN) {
            self.status(&format!(
                "Resolved {what}{}{} in {binary} at file offset {offset:#x}",
                if what.is_empty() { "" } else { " " },
                printable(label)
            ));
        }
        if a.functions.len() > SHOWN {
            self.status(&format!(
                "... and {} more functions",
                a.functions.len() - SHOWN
            ));
        }
        for note in a.notes {
            self.status(&format!("Note: {}", printable(note)));
        }
        if let Some(pid) = a.pid {
            self.status(&format!("Only process {pid}"));
        }
        self.status(&format!(
            "Duration: {} seconds (0 = until Ctrl+C)",
            a.duration.map_or(0, |d| d.as_secs())
        ));
    }

    /// Which functions are not probed, by label with why: each with its reason when
    /// there are few, grouped by reason when a glob ran into many.
    pub fn skipped(&mut self, skipped: &[(String, String)]) {
        const LISTED: usize = 5;
        if skipped.len() <= LISTED {
            for (label, why) in skipped {
                self.status(&format!("Skipped {}: {}", printable(label), printable(why)));
            }
            return;
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
            let more = if more > 0 {
                format!(", and {more} more")
            } else {
                String::new()
            };
            self.status(&format!(
                "Skipped {} functions ({}{more}): {}",
                names.len(),
                shown.join(", "),
                printable(reason)
            ));
        }
    }

    /// `ebpf-tool: warning: TEXT` on stderr, escaped.
    pub fn warning(&mut self, text: &str) {
        self.to_stderr(&format!("ebpf-tool: warning: {}", printable(text)));
    }

    /// Events start (`false`) or have stopped (`true`) streaming; see `ordered`.
    pub fn keep_order(&mut self, ordered: bool) {
        self.ordered = ordered;
    }

    /// A line for stderr, after what stdout already holds.
    pub fn to_stderr(&mut self, line: &str) {
        if self.ordered {
            self.stdout.settle(ORDER_WAIT);
        }
        let err = self.stderr.buffer();
        err.extend_from_slice(line.as_bytes());
        err.push(b'\n');
        self.stderr.flush(true);
    }

    /// Whether another event fits: false while too much waits for stdout's reader.
    pub fn has_room(&mut self) -> bool {
        self.stdout.has_room()
    }

    /// stdout as written: when there is no room, wait for it to be writable (when it
    /// can be full at all).
    pub fn stdout_fd(&self) -> Option<std::os::fd::RawFd> {
        self.stdout.can_be_full().then(|| self.stdout.fd())
    }

    /// One event line (text) or object (JSON).
    pub fn event(&mut self, record: &Record<'_>) {
        let function = self
            .labels
            .get(record.event.probe_id as usize)
            .map_or("?", String::as_str);
        let out = self.stdout.buffer();
        let written = if self.json {
            json::write_event(out, record, function, &self.format)
        } else {
            text::write_event(out, record, function, &self.format)
        };
        written.expect("writing to a Vec cannot fail");
        self.stdout.record_done();
    }

    /// A record that does not decode: said once per run.
    pub fn malformed(&mut self, err: &dyn std::fmt::Display) {
        if !self.warned_malformed {
            self.to_stderr(&format!("ebpf-tool: skipping bad record: {err}"));
            self.warned_malformed = true;
        }
    }

    /// Hands full batches to the writers; `now` sends a partial one too.
    pub fn flush(&mut self, now: bool) {
        self.stdout.flush(now);
        self.stderr.flush(now);
    }

    /// True once stdout cannot be written any more (its reader left, its terminal hung
    /// up): the run ends quietly.
    pub fn output_closed(&self) -> bool {
        self.stdout.state() != State::Open
    }

    /// Whether stdout's reader has taken nothing for a while (see `sink::STALLED`).
    pub fn stdout_stuck(&self) -> bool {
        self.stdout.stalled_for() >= super::sink::STALLED
    }

    /// Events written to stdout so far.
    pub fn printed(&self) -> u64 {
        self.stdout.written_records()
    }

    /// The count table and histograms.
    pub fn tables(&mut self, tables: &Tables) {
        let out = self.stdout.buffer();
        let rendered = render_tables(out, tables, self.json);
        rendered.expect("writing to a Vec cannot fail");
        self.stdout.flush(false);
    }

    /// The most frequent stacks.
    pub fn stacks(&mut self, rows: &[StackRow]) {
        let out = self.stdout.buffer();
        let rendered = if self.json {
            json::write_stacks(out, rows)
        } else {
            let total: u64 = rows.iter().map(|r| r.count).sum();
            writeln!(
                out,
                "\n{} distinct stacks, {total} calls; most frequent first:\n",
                rows.len()
            )
            .and_then(|()| stacks::write_text(out, rows, TOP_STACKS))
        };
        rendered.expect("writing to a Vec cannot fail");
        self.stdout.flush(false);
    }

    /// The closing summary: a JSON object on stdout, or lines on stderr in text mode.
    pub fn summary(&mut self, closing: &Closing) {
        let summary = &closing.summary;
        if self.json {
            let out = self.stdout.buffer();
            json::write_summary(out, summary).expect("writing to a Vec cannot fail");
            self.stdout.flush(true);
            return;
        }
        let mut line = match closing.aggregated {
            Some((calls, how)) => format!("ebpf-tool: {calls} calls {how}"),
            None => format!(
                "ebpf-tool: {} events seen, {} printed, {} lost",
                summary.seen, summary.printed, summary.lost
            ),
        };
        for (n, what) in [
            (closing.counts_full, "calls not counted (count table full)"),
            (closing.stacks_failed, "stacks not captured"),
            (
                summary.unreadable,
                "values unreadable (bad pointers or pages not present)",
            ),
            (closing.unpaired, "returns without a seen entry"),
            (
                summary.unreturned,
                "calls never seen returning (longjmp, exception, tail jump or panic)",
            ),
            (
                summary.in_progress,
                "calls not returned from when tracing ended (still running, or exited inside)",
            ),
        ] {
            if n > 0 {
                line.push_str(&format!(", {n} {what}"));
            }
        }
        self.to_stderr(&line);
        let ring_full = summary.lost - closing.unwritten;
        if ring_full > 0 {
            self.to_stderr(&format!(
                "ebpf-tool: warning: {ring_full} calls were not reported because the ring buffer was full (the reader fell behind)"
            ));
        }
        if closing.unwritten > 0 {
            self.to_stderr(&format!(
                "ebpf-tool: warning: {} events were not printed: stdout did not take them before the run had to end",
                closing.unwritten
            ));
        }
    }

    /// Waits until `deadline` (less for a stuck reader) for stdout to take everything.
    pub fn settle_stdout(&mut self, deadline: Instant) -> bool {
        self.stdout
            .settle(deadline.saturating_duration_since(Instant::now()))
    }

    /// The same for stderr.
    pub fn settle_stderr(&mut self, deadline: Instant) -> bool {
        self.stderr
            .settle(deadline.saturating_duration_since(Instant::now()))
    }
}

fn render_tables(out: &mut Vec<u8>, tables: &Tables, json: bool) -> std::io::Result<()> {
    if let Some((group, rows)) = &tables.counts {
        if json {
            json::write_counts(out, group.as_deref(), rows)?;
        } else {
            table::write_text(
                out,
                group.as_ref().map(|g| g.to_uppercase()).as_deref(),
                rows,
            )?;
        }
    }
    for table in &tables.hists {
        let hist = &table.hist;
        let of = match &table.of {
            HistOf::Latency => "latency_ns",
            HistOf::Value(name) => name,
        };
        if json {
            let group = table
                .group
                .as_ref()
                .map(|(key, group)| (key.as_str(), group));
            json::write_hist(out, &table.func, group, of, hist)?;
            continue;
        }
        if hist.count == 0 && !table.show_empty {
            continue;
        }
        // `func` or `func arg0="/etc/passwd"`: which histogram this is.
        let title = match &table.group {
            Some((key, group)) => format!("{} {key}={}", table.func, group.shown()),
            None => table.func.clone(),
        };
        match &table.of {
            HistOf::Value(name) => {
                writeln!(
                    out,
                    "\n{title} {name}: {} calls, p50={} p90={} p99={}",
                    hist.count,
                    hist.percentile(50.0),
                    hist.percentile(90.0),
                    hist.percentile(99.0),
                )?;
                hist.write_text(out, "value")?;
            }
            HistOf::Latency => {
                writeln!(
                    out,
                    "\n{title} latency: count={} min={} avg={} p50={} p90={} p99={} max={}",
                    hist.count,
                    human_ns(hist.min),
                    human_ns(hist.average()),
                    human_ns(hist.percentile(50.0)),
                    human_ns(hist.percentile(90.0)),
                    human_ns(hist.percentile(99.0)),
                    human_ns(hist.max),
                )?;
                hist.write_text(out, "ns")?;
            }
        }
    }
    Ok(())
}
