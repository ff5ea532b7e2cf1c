//! NDJSON: one object per line, every line with a "type" ("call", "count", "hist",
//! "stack", "summary"). Field names are stable and documented in the README. Strings from
//! other processes are decoded lossily, so the output is always valid JSON.

use std::io::{self, Write};

use ebpf_tool_common::KIND_CALL;
use serde::Serialize;

use super::{
    ArgValue, EventFormat, arg_values,
    hist::Histogram,
    return_value,
    stacks::StackRow,
    table::{CountRow, Group},
};
use crate::events::{Record, comm_bytes};

/// `{"type":"call","timestamp_ns":..,"pid":..,"tid":..,"comm":"..","func":"..","args":{..}[,"ret":..][,"latency_ns":..]}`
pub fn write_event(
    out: &mut impl Write,
    record: &Record<'_>,
    function: &str,
    format: &EventFormat,
) -> io::Result<()> {
    let event = &record.event;
    write!(
        out,
        "{{\"type\":\"call\",\"timestamp_ns\":{},\"pid\":{},\"tid\":{},\"comm\":",
        event.timestamp_ns, event.tgid, event.tid
    )?;
    write_json_string(out, comm_bytes(&event.comm))?;
    let key: &[u8] = if format.usdt {
        b",\"probe\":"
    } else {
        b",\"func\":"
    };
    out.write_all(key)?;
    write_json_string(out, function.as_bytes())?;
    if event.entry_unseen() {
        out.write_all(b",\"entry_seen\":false")?;
    } else {
        out.write_all(b",\"args\":{")?;
        let mut truncated = Vec::new();
        let mut unreadable = Vec::new();
        let mut not_utf8 = Vec::new();
        for (n, (key, value)) in arg_values(format, record).enumerate() {
            if n > 0 {
                out.write_all(b",")?;
            }
            write_json_string(out, key.as_bytes())?;
            out.write_all(b":")?;
            write_json_value(out, &value)?;
            if let ArgValue::Bytes { bytes, .. } = &value
                && std::str::from_utf8(bytes).is_err()
            {
                not_utf8.push(key);
            }
            match value {
                ArgValue::Bytes {
                    truncated: true, ..
                } => truncated.push(key),
                ArgValue::Unreadable => unreadable.push(key),
                _ => {}
            }
        }
        out.write_all(b"}")?;
        if !truncated.is_empty() {
            out.write_all(b",\"truncated\":")?;
            serde_json::to_writer(&mut *out, &truncated)?;
        }
        if !unreadable.is_empty() {
            out.write_all(b",\"unreadable\":")?;
            serde_json::to_writer(&mut *out, &unreadable)?;
        }
        // JSON strings hold text: say which values had bytes shown as U+FFFD.
        if !not_utf8.is_empty() {
            out.write_all(b",\"not_utf8\":")?;
            serde_json::to_writer(&mut *out, &not_utf8)?;
        }
    }
    if event.at_return()
        && let Some(ret) = return_value(format, record)
    {
        out.write_all(b",\"ret\":")?;
        write_json_value(out, &ret)?;
    }
    if format.latency && event.kind == KIND_CALL {
        write!(out, ",\"latency_ns\":{}", event.latency_ns)?;
    }
    out.write_all(b"}\n")
}

/// `{"type":"count","func":"..","<by>":..,"count":N}` per row; `by` is "pid", "tid" or
/// "comm" (numbers for pid and tid), absent when counting by function.
pub fn write_counts(out: &mut impl Write, by: Option<&str>, rows: &[CountRow]) -> io::Result<()> {
    for row in rows {
        let mut object = serde_json::Map::new();
        object.insert("type".into(), "count".into());
        object.insert("func".into(), row.func.clone().into());
        if let (Some(key), Some(group)) = (by, &row.group) {
            object.insert(key.into(), group.json());
        }
        object.insert("count".into(), row.count.into());
        serde_json::to_writer(&mut *out, &object)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[derive(Serialize)]
struct HistLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    func: &'a str,
    /// With `--by`: `{"arg0": "/etc/passwd"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<serde_json::Map<String, serde_json::Value>>,
    /// "latency_ns" or "argN".
    of: &'a str,
    p50: u64,
    p90: u64,
    p99: u64,
    avg: u64,
    #[serde(flatten)]
    hist: &'a Histogram,
}

/// `{"type":"hist","func":"..","of":"latency_ns","count":..,"sum":..,"min":..,"max":..,"avg":..,"p50":..,"p90":..,"p99":..,"buckets":[..]}`: buckets by power of two
pub fn write_hist(
    out: &mut impl Write,
    func: &str,
    group: Option<(&str, &Group)>,
    of: &str,
    hist: &Histogram,
) -> io::Result<()> {
    let line = HistLine {
        kind: "hist",
        func,
        group: group.map(|(key, value)| {
            let mut object = serde_json::Map::new();
            object.insert(key.into(), value.json());
            object
        }),
        of,
        p50: hist.percentile(50.0),
        p90: hist.percentile(90.0),
        p99: hist.percentile(99.0),
        avg: hist.average(),
        hist,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// `{"type":"stack","func":"..","comm":"..","count":N,"frames":["innermost",..]}`
pub fn write_stacks(out: &mut impl Write, rows: &[StackRow]) -> io::Result<()> {
    #[derive(Serialize)]
    struct StackLine<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        row: &'a StackRow,
    }
    for row in rows {
        serde_json::to_writer(&mut *out, &StackLine { kind: "stack", row })?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The closing line: how many calls were seen, printed and lost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Records read from the ring buffer.
    pub seen: u64,
    /// Records printed.
    pub printed: u64,
    /// Records the kernel had no ring-buffer room for.
    pub lost: u64,
    /// Calls that could not be counted or timed (tables full, return without its entry).
    pub uncounted: u64,
    /// String arguments that could not be read (shown as unreadable, never as "").
    pub unreadable: u64,
    /// Calls whose return was never seen (left by longjmp, an exception, a tail jump or
    /// a panic): entries without a return record.
    pub unreturned: u64,
    /// Calls entered that had not returned when tracing ended (still running, or their
    /// process exited inside them).
    pub in_progress: u64,
}

/// `{"type":"summary","seen":..,"printed":..,"lost":..,"uncounted":..}`
pub fn write_summary(out: &mut impl Write, summary: &Summary) -> io::Result<()> {
    #[derive(Serialize)]
    struct SummaryLine<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(flatten)]
        summary: &'a Summary,
    }
    serde_json::to_writer(
        &mut *out,
        &SummaryLine {
            kind: "summary",
            summary,
        },
    )?;
    out.write_all(b"\n")
}

/// A value: numbers as numbers, hex as a string, strings as strings, an unreadable value
/// or a NULL string as null.
fn write_json_value(out: &mut impl Write, value: &ArgValue<'_>) -> io::Result<()> {
    match value {
        ArgValue::Unsigned(v) => write!(out, "{v}"),
        ArgValue::Signed(v) => write!(out, "{v}"),
        ArgValue::Hex(v) => write!(out, "\"{v:#x}\""),
        ArgValue::Bytes { bytes, .. } => write_json_string(out, bytes),
        ArgValue::Unreadable | ArgValue::Null => out.write_all(b"null"),
        ArgValue::Name(name) => write_json_string(out, name.as_bytes()),
        ArgValue::Float(v) if v.is_finite() => write!(out, "{v}"),
        ArgValue::Float(v) => write_json_string(out, v.to_string().as_bytes()),
    }
}

/// Bytes as a JSON string: UTF-8 where valid, U+FFFD where not; serde escapes controls.
fn write_json_string(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &String::from_utf8_lossy(bytes))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ebpf_tool_common::{SLOT_BYTES, SLOT_FAULT};
    use serde_json::Value;

    use super::*;
    use crate::{
        events::CallEvent,
        values::{ValueLayout, request::ValueType},
    };

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("valid JSON")
    }

    fn format(args: &[&str]) -> EventFormat {
        let requests: Vec<_> = args.iter().map(|a| a.parse().unwrap()).collect();
        EventFormat {
            usdt: false,
            layout: ValueLayout::new(&requests)
                .unwrap()
                .with_return(ValueType::parse("i64").unwrap())
                .unwrap(),
            latency: true,
        }
    }

    #[test]
    fn call_event_carries_every_field() {
        let mut event = CallEvent {
            timestamp_ns: 5,
            ret: (-2i64) as u64,
            latency_ns: 99,
            tgid: 1,
            tid: 2,
            kind: KIND_CALL,
            truncated: 1,
            ..Default::default()
        };
        event.values[..3].copy_from_slice(&[7, 255, 9]);
        event.comm[..3].copy_from_slice(b"a\x1b\xff");
        let mut text = [0u8; SLOT_BYTES];
        text[..8].copy_from_slice(b"he\"llo\n\xff");
        let record = Record {
            event,
            slots: [&text, &[0; SLOT_BYTES]],
        };
        let mut out = Vec::new();
        write_event(
            &mut out,
            &record,
            "f",
            &format(&["0:str", "1:hex", "+8(arg2)"]),
        )
        .unwrap();
        assert!(out.ends_with(b"}\n"));
        let v = parse(&out);
        assert_eq!(v["type"], "call");
        assert_eq!(v["pid"], 1);
        assert_eq!(v["tid"], 2);
        assert_eq!(v["comm"], "a\u{1b}\u{fffd}");
        assert_eq!(v["func"], "f");
        assert_eq!(v["args"]["arg0"], "he\"llo\n\u{fffd}");
        assert_eq!(v["args"]["arg1"], "0xff");
        assert_eq!(v["args"]["+8(arg2)"], 9);
        assert_eq!(v["truncated"][0], "arg0");
        assert_eq!(v["ret"], -2);
        assert_eq!(v["latency_ns"], 99);
    }

    #[test]
    fn unreadable_values_are_null_and_listed() {
        let mut event = CallEvent {
            kind: ebpf_tool_common::KIND_ENTRY,
            faults: 1 << 1 | 1 << SLOT_FAULT,
            ..Default::default()
        };
        event.values[..2].copy_from_slice(&[0x1000, 0]);
        let record = Record {
            event,
            slots: [&[0; SLOT_BYTES], &[0; SLOT_BYTES]],
        };
        let mut out = Vec::new();
        write_event(&mut out, &record, "f", &format(&["0:str", "+8(arg1)"])).unwrap();
        let v = parse(&out);
        assert_eq!(v["args"]["arg0"], Value::Null);
        assert_eq!(v["args"]["+8(arg1)"], Value::Null);
        assert_eq!(v["unreadable"], serde_json::json!(["arg0", "+8(arg1)"]));
        assert!(
            v.get("ret").is_none(),
            "an entry record has no return value"
        );
    }

    #[test]
    fn counts_hist_stacks_summary_are_objects() {
        let mut out = Vec::new();
        let rows = [CountRow {
            func: "malloc".into(),
            group: Some(Group::Number("42".into())),
            count: 3,
        }];
        write_counts(&mut out, Some("pid"), &rows).unwrap();
        let mut fine = vec![0; ebpf_tool_common::HIST_BUCKETS];
        fine[1] = 2;
        let hist = Histogram {
            fine,
            count: 2,
            sum: 2,
            min: 1,
            max: 1,
        };
        write_hist(&mut out, "malloc", None, "arg0", &hist).unwrap();
        let stack = StackRow {
            func: "f".into(),
            comm: "c".into(),
            count: 1,
            frames: vec!["f".into()],
        };
        write_stacks(&mut out, &[stack]).unwrap();
        write_summary(
            &mut out,
            &Summary {
                seen: 1,
                printed: 1,
                lost: 0,
                uncounted: 0,
                unreadable: 0,
                unreturned: 0,
                in_progress: 0,
            },
        )
        .unwrap();
        let lines: Vec<Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(parse)
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({"type":"count","func":"malloc","pid":42,"count":3})
        );
        assert_eq!(lines[1]["type"], "hist");
        assert_eq!(lines[1]["of"], "arg0");
        assert_eq!(lines[1]["p50"], 1);
        assert_eq!(lines[2]["frames"][0], "f");
        assert_eq!(
            lines[3],
            serde_json::json!({"type":"summary","seen":1,"printed":1,"lost":0,"uncounted":0,"unreadable":0,"unreturned":0,"in_progress":0})
        );
    }
}
