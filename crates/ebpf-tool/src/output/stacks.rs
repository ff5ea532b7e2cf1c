//! `--stacks` results: symbolized user stacks with how often each reached the function,
//! printed as a top-N list, as collapsed ("folded") lines, or as a flame graph (inferno).

use std::io::{self, Write};

use serde::Serialize;

use super::escape::write_escaped;

/// One distinct stack. `frames` run from the probed function outwards (innermost first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackRow {
    pub func: String,
    pub comm: String,
    pub count: u64,
    pub frames: Vec<String>,
}

/// Merges rows with identical (func, comm, frames) — one stack seen in several processes —
/// and sorts them by count, largest first.
pub fn merge_and_sort(mut rows: Vec<StackRow>) -> Vec<StackRow> {
    rows.sort_by(|a, b| (&a.func, &a.comm, &a.frames).cmp(&(&b.func, &b.comm, &b.frames)));
    let mut merged: Vec<StackRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match merged.last_mut() {
            Some(last)
                if last.func == row.func && last.comm == row.comm && last.frames == row.frames =>
            {
                last.count += row.count;
            }
            _ => merged.push(row),
        }
    }
    merged.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.frames.cmp(&b.frames)));
    merged
}

/// The `top` most frequent stacks, each as its frames (innermost first) and a count.
pub fn write_text(out: &mut impl Write, rows: &[StackRow], top: usize) -> io::Result<()> {
    for row in rows.iter().take(top) {
        for frame in &row.frames {
            out.write_all(b"    ")?;
            write_escaped_frame(out, frame)?;
            out.write_all(b"\n")?;
        }
        out.write_all(b"    [")?;
        write_escaped(out, row.comm.as_bytes())?;
        writeln!(out, "] {} calls\n", row.count)?;
    }
    if rows.len() > top {
        writeln!(out, "({} more stacks not shown)", rows.len() - top)?;
    }
    Ok(())
}

/// Collapsed stacks, one line per stack, root first: `comm;main;a;b;target COUNT`, the
/// input format of flamegraph.pl and inferno. Functions only: inlined calls and source
/// lines (which `--stacks` prints) are left out, so one function is one box.
pub fn folded_lines(rows: &[StackRow]) -> Vec<String> {
    rows.iter()
        .map(|row| {
            let mut line = sanitize_frame(&row.comm);
            for frame in row.frames.iter().rev().filter_map(|f| function_of(f)) {
                line.push(';');
                line.push_str(&sanitize_frame(frame));
            }
            line.push(' ');
            line.push_str(&row.count.to_string());
            line
        })
        .collect()
}

/// Writes a flame graph SVG of `rows`.
pub fn write_flamegraph(out: impl Write, rows: &[StackRow], title: &str) -> io::Result<()> {
    let lines = folded_lines(rows);
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_owned();
    options.count_name = "calls".to_owned();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)
        .map_err(io::Error::other)
}

/// A frame as its function alone: `f (a.c:3)` -> `f`; None for an inlined call.
fn function_of(frame: &str) -> Option<&str> {
    if frame.ends_with(" [inlined]") {
        return None;
    }
    // A location is `FILE:LINE)` with no space: C++ parameter lists hold spaces.
    let is_location = |location: &str| {
        location
            .strip_suffix(')')
            .and_then(|l| l.rsplit_once(':'))
            .is_some_and(|(file, line)| {
                !file.contains(' ') && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
            })
    };
    match frame.rsplit_once(" (") {
        Some((name, location)) if is_location(location) => Some(name),
        _ => Some(frame),
    }
}

/// Folded format separates frames with ';' and the count with ' ': keep both out of names,
/// and control bytes too.
fn sanitize_frame(frame: &str) -> String {
    frame
        .chars()
        .map(|c| if c == ';' || c.is_control() { '_' } else { c })
        .collect::<String>()
        .replace(' ', "\u{a0}")
}

fn write_escaped_frame(out: &mut impl Write, frame: &str) -> io::Result<()> {
    // Frames are symbol names from files on disk; spaces in C++ names are fine to show.
    for part in frame.split(' ').enumerate() {
        if part.0 > 0 {
            out.write_all(b" ")?;
        }
        write_escaped(out, part.1.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn folded_frames_are_functions_without_lines_or_inlined_calls() {
        let cpp = "f(std::pair<int, (anonymous namespace)::X>)";
        let rows = [row(
            &["leaf (a.c:3) [inlined]", "outer (a.c:9)", "main", cpp],
            2,
        )];
        let expected = format!("app;{};main;outer 2", cpp.replace(' ', "\u{a0}"));
        assert_eq!(folded_lines(&rows), [expected]);
    }

    use super::*;

    fn row(frames: &[&str], count: u64) -> StackRow {
        StackRow {
            func: "target".into(),
            comm: "app".into(),
            count,
            frames: frames.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn merges_identical_stacks_and_sorts() {
        let rows = merge_and_sort(vec![
            row(&["target", "b", "main"], 2),
            row(&["target", "c", "main"], 5),
            row(&["target", "b", "main"], 4),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].count, rows[0].frames[1].as_str()), (6, "b"));
        assert_eq!((rows[1].count, rows[1].frames[1].as_str()), (5, "c"));
    }

    #[test]
    fn folded_lines_are_root_first() {
        let lines = folded_lines(&[row(&["target", "b;x", "main"], 3)]);
        assert_eq!(lines, ["app;main;b_x;target 3"]);
    }

    #[test]
    fn flamegraph_is_svg_naming_the_frames() {
        let mut svg = Vec::new();
        write_flamegraph(&mut svg, &[row(&["target", "b", "a", "main"], 3)], "t").unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("<svg"));
        assert!(svg.contains("target"));
    }

    #[test]
    fn text_lists_frames_then_count() {
        let mut out = Vec::new();
        write_text(&mut out, &[row(&["target", "main"], 3)], 10).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "    target\n    main\n    [app] 3 calls\n\n"
        );
    }
}
