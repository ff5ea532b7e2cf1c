//! `--count` results: rows of (function, group, count), sorted, as an aligned table.

use std::io::{self, Write};

use serde::Serialize;

use super::escape::{write_escaped, write_printable};

/// One row of the count table. `group` is the pid, tid or comm when grouped by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountRow {
    pub func: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub count: u64,
}

/// Sorts rows by count, largest first, then by function and group for a stable order.
pub fn sort_rows(rows: &mut [CountRow]) {
    rows.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.func.cmp(&b.func))
            .then_with(|| a.group.cmp(&b.group))
    });
}

/// Writes the table: a header naming the group column (`PID`, `TID`, `COMM`), or just
/// `FUNC COUNT` when counting by function.
pub fn write_text(out: &mut impl Write, group: Option<&str>, rows: &[CountRow]) -> io::Result<()> {
    let func_width = rows.iter().map(|r| r.func.len()).max().unwrap_or(4).max(4);
    let group_width = rows
        .iter()
        .filter_map(|r| r.group.as_ref().map(String::len))
        .max()
        .unwrap_or(0)
        .max(group.map_or(0, str::len));
    match group {
        Some(name) => writeln!(
            out,
            "{:<func_width$}  {name:<group_width$}  {:>10}",
            "FUNC", "COUNT"
        )?,
        None => writeln!(out, "{:<func_width$}  {:>10}", "FUNC", "COUNT")?,
    }
    for row in rows {
        // Function names come from files and may hold spaces (`area() const`): printable;
        // groups (comm) come from processes: fully escaped.
        write_printable(out, &row.func)?;
        write!(
            out,
            "{:pad$}  ",
            "",
            pad = func_width.saturating_sub(row.func.len())
        )?;
        if let Some(value) = &row.group {
            write_escaped(out, value.as_bytes())?;
            write!(
                out,
                "{:pad$}  ",
                "",
                pad = group_width.saturating_sub(value.len())
            )?;
        }
        writeln!(out, "{:>10}", row.count)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(func: &str, group: Option<&str>, count: u64) -> CountRow {
        CountRow {
            func: func.into(),
            group: group.map(Into::into),
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
}
