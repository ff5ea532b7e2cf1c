//! `--count` results: rows of (function, group, count), sorted, as an aligned table, and
//! the group values counts and histograms are kept under (`--by`).

use std::io::{self, Write};

use super::escape::{write_escaped, write_printable, write_quoted};

/// What a row (or a histogram) is grouped under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// A pid, a tid or a value, as shown (`42`, `-1`, `0x10`).
    Number(String),
    /// A process name: shown escaped, unquoted.
    Name(Vec<u8>),
    /// A string the call had: shown quoted, the logfmt way.
    Text(Vec<u8>),
    /// A value that could not be read.
    Unreadable,
}

impl Group {
    /// The group as a table or header shows it: escaped so it is one token.
    pub fn shown(&self) -> String {
        let mut out = Vec::new();
        let written: io::Result<()> = match self {
            Group::Number(n) => out.write_all(n.as_bytes()),
            Group::Name(name) => write_escaped(&mut out, name),
            Group::Text(text) => out
                .write_all(b"\"")
                .and_then(|()| write_quoted(&mut out, text))
                .and_then(|()| out.write_all(b"\"")),
            Group::Unreadable => out.write_all(b"(unreadable)"),
        };
        written.expect("writing to a Vec cannot fail");
        String::from_utf8(out).expect("escaping writes UTF-8")
    }

    /// The group in JSON: a number as a number, text as a string, unreadable as null.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Group::Number(n) => match (n.parse::<u64>(), n.parse::<i64>()) {
                (Ok(v), _) => v.into(),
                (_, Ok(v)) => v.into(),
                _ => n.clone().into(),
            },
            Group::Name(bytes) | Group::Text(bytes) => {
                String::from_utf8_lossy(bytes).into_owned().into()
            }
            Group::Unreadable => serde_json::Value::Null,
        }
    }
}

/// One row of the count table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    pub func: String,
    /// The pid, tid, comm or value when grouped by one.
    pub group: Option<Group>,
    pub count: u64,
}

/// Sorts rows by count, largest first, then by function and group for a stable order.
/// Rows of one name and group added into one: the sites of a USDT probe are separate
/// probes in the kernel but one probe to the user.
pub fn merge_rows(rows: &mut Vec<CountRow>) {
    rows.sort_by(|a, b| (&a.func, &a.group).cmp(&(&b.func, &b.group)));
    rows.dedup_by(|later, kept| {
        let same = later.func == kept.func && later.group == kept.group;
        if same {
            kept.count += later.count;
        }
        same
    });
}

pub fn sort_rows(rows: &mut [CountRow]) {
    rows.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.func.cmp(&b.func))
            .then_with(|| a.group.cmp(&b.group))
    });
}

/// Columns a string takes on a terminal, as printed (escapes included).
fn width(text: &str) -> usize {
    text.chars().count()
}

/// Writes the table: a header naming the group column (`PID`, `COMM`, `ARG0`), or just
/// `FUNC COUNT` when counting by function. Columns are measured as printed, so escaped
/// names line up; the last line says how many calls were counted.
pub fn write_text(out: &mut impl Write, group: Option<&str>, rows: &[CountRow]) -> io::Result<()> {
    let funcs: Vec<String> = rows.iter().map(|r| printable_name(&r.func)).collect();
    let groups: Vec<Option<String>> = rows
        .iter()
        .map(|r| r.group.as_ref().map(Group::shown))
        .collect();
    let func_width = funcs.iter().map(|f| width(f)).max().unwrap_or(4).max(4);
    let group_width = groups
        .iter()
        .flatten()
        .map(|g| width(g))
        .max()
        .unwrap_or(0)
        .max(group.map_or(0, width));
    match group {
        Some(name) => writeln!(
            out,
            "{:<func_width$}  {name:<group_width$}  {:>10}",
            "FUNC", "COUNT"
        )?,
        None => writeln!(out, "{:<func_width$}  {:>10}", "FUNC", "COUNT")?,
    }
    for ((func, shown), row) in funcs.iter().zip(&groups).zip(rows) {
        let pad = func_width - width(func);
        write!(out, "{func}{:pad$}  ", "")?;
        if let Some(shown) = shown {
            let pad = group_width - width(shown);
            write!(out, "{shown}{:pad$}  ", "")?;
        }
        writeln!(out, "{:>10}", row.count)?;
    }
    Ok(())
}

/// A function name as printed: names come from files and may hold spaces
/// (`area() const`), so only control characters are escaped.
fn printable_name(name: &str) -> String {
    let mut out = Vec::new();
    write_printable(&mut out, name).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("write_printable writes UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(func: &str, group: Option<&str>, count: u64) -> CountRow {
        CountRow {
            func: func.into(),
            group: group.map(|g| Group::Name(g.as_bytes().to_vec())),
            count,
        }
    }

    #[test]
    fn sorted_largest_first() {
        let mut rows = vec![
            row("free", None, 3),
            row("malloc", None, 10),
            row("calloc", None, 3),
        ];
        sort_rows(&mut rows);
        let order: Vec<&str> = rows.iter().map(|r| r.func.as_str()).collect();
        assert_eq!(order, ["malloc", "calloc", "free"]);
    }

    #[test]
    fn renders_with_and_without_a_group() {
        let mut out = Vec::new();
        write_text(&mut out, None, &[row("malloc", None, 10)]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "FUNC         COUNT\nmalloc          10\n"
        );

        let mut out = Vec::new();
        write_text(
            &mut out,
            Some("COMM"),
            &[row("malloc", Some("bash"), 7), row("malloc", Some("ls"), 2)],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "FUNC    COMM       COUNT\nmalloc  bash           7\nmalloc  ls             2\n"
        );
    }

    #[test]
    fn escaped_groups_line_up_as_printed() {
        let rows = [
            row("f", Some("a b\x1b"), 3),
            row("f", Some("plain"), 2),
            CountRow {
                func: "g".into(),
                group: Some(Group::Text(b"x \"y\"".to_vec())),
                count: 1,
            },
        ];
        let mut out = Vec::new();
        write_text(&mut out, Some("KEY"), &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].starts_with(r"f     a\x20b\x1b  "), "{text}");
        assert!(lines[3].starts_with(r#"g     "x \"y\""  "#), "{text}");
        // Every column starts where its header does: measured as printed.
        let key_at = lines[0].find("KEY").unwrap();
        assert_eq!(lines[1].find('a'), Some(key_at));
        assert_eq!(lines[2].find('p'), Some(key_at));
        assert_eq!(lines[3].find('"'), Some(key_at));
        let ends: Vec<usize> = lines.iter().map(|l| l.len()).collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");
    }
}
