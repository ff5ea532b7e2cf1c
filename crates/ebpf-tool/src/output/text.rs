//! The text form of an event, one line each, in the shape other tools and the tests parse:
//! `uprobe triggered! pid=<tgid> tid=<tid> comm=<comm> arg0=<n> [ret=<n>] [latency_ns=<n>] func=<name>`.

use std::io::{self, Write};

use super::{
    ArgValue, EventFormat, arg_values,
    escape::{write_escaped, write_quoted},
    return_value,
};
use crate::events::{Record, comm_bytes};

/// Writes one event line. `function` is the name of the probed function it came from.
pub fn write_event(
    out: &mut impl Write,
    record: &Record<'_>,
    function: &str,
    format: &EventFormat,
) -> io::Result<()> {
    let event = &record.event;
    let kind = if format.usdt { "usdt" } else { "uprobe" };
    write!(
        out,
        "{kind} triggered! pid={} tid={} comm=",
        event.tgid, event.tid
    )?;
    write_escaped(out, comm_bytes(&event.comm))?;
    if event.entry_unseen() {
        out.write_all(b" entry=unseen")?;
    } else {
        for (key, value) in arg_values(format, record) {
            out.write_all(b" ")?;
            write_escaped(out, key.as_bytes())?;
            out.write_all(b"=")?;
            write_value(out, &value)?;
        }
    }
    if let Some(ret) = return_value(format, record) {
        out.write_all(b" ret=")?;
        write_value(out, &ret)?;
    }
    if format.latency && !event.entry_unseen() {
        write!(out, " latency_ns={}", event.latency_ns)?;
    }
    let key: &[u8] = if format.usdt { b" probe=" } else { b" func=" };
    out.write_all(key)?;
    write_escaped(out, function.as_bytes())?;
    out.write_all(b"\n")
}

fn write_value(out: &mut impl Write, value: &ArgValue<'_>) -> io::Result<()> {
    match value {
        ArgValue::Unsigned(n) => write!(out, "{n}"),
        ArgValue::Signed(n) => write!(out, "{n}"),
        ArgValue::Hex(n) => write!(out, "{n:#x}"),
        ArgValue::Bytes { bytes, truncated } => {
            out.write_all(b"\"")?;
            write_quoted(out, bytes)?;
            out.write_all(if *truncated { b"\"..." } else { b"\"" })
        }
        ArgValue::Unreadable => out.write_all(b"(unreadable)"),
        ArgValue::Null => out.write_all(b"(null)"),
        ArgValue::Name(name) => write_escaped(out, name.as_bytes()),
        ArgValue::Float(v) => write!(out, "{v}"),
    }
}

#[cfg(test)]
mod tests {
    use ebpf_tool_common::{COMM_LEN, KIND_UNSEEN_ENTRY, MAX_SLOTS, SLOT_BYTES, SLOT_FAULT};

    use super::*;
    use crate::{
        events::CallEvent,
        values::{ValueLayout, request::ValueType},
    };

    fn format(args: &[&str], ret: bool, latency: bool) -> EventFormat {
        let requests: Vec<_> = args.iter().map(|a| a.parse().unwrap()).collect();
        let layout = ValueLayout::new(&requests).unwrap();
        EventFormat {
            usdt: false,
            layout: match ret {
                true => layout
                    .with_return(ValueType::parse("i64").unwrap())
                    .unwrap(),
                false => layout,
            },
            latency,
        }
    }

    fn event(comm: &[u8], values: &[u64]) -> CallEvent {
        let mut event = CallEvent {
            ret: u64::MAX,
            latency_ns: 1500,
            tgid: 42,
            tid: 43,
            ..Default::default()
        };
        event.values[..values.len()].copy_from_slice(values);
        event.comm[..comm.len()].copy_from_slice(comm);
        event
    }

    fn line(record: &Record<'_>, function: &str, format: &EventFormat) -> String {
        let mut out = Vec::new();
        write_event(&mut out, record, function, format).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn record(event: CallEvent) -> Record<'static> {
        Record {
            event,
            slots: [&[0; SLOT_BYTES]; MAX_SLOTS],
        }
    }

    #[test]
    fn default_line() {
        assert_eq!(
            line(
                &record(event(b"bash", &[4096])),
                "malloc",
                &format(&[], false, false)
            ),
            "uprobe triggered! pid=42 tid=43 comm=bash arg0=4096 func=malloc\n"
        );
    }

    #[test]
    fn typed_args_ret_and_latency() {
        assert_eq!(
            line(
                &record(event(b"app", &[0xff, u64::MAX])),
                "read",
                &format(&["1:hex", "2:i32"], true, true)
            ),
            "uprobe triggered! pid=42 tid=43 comm=app arg1=0xff arg2=-1 ret=-1 latency_ns=1500 func=read\n"
        );
    }

    #[test]
    fn strings_and_buffers_are_quoted_escaped_and_marked_when_cut() {
        let mut ev = event(b"app", &[1, 2, 3]);
        ev.truncated = 1 << 1;
        let mut first = [0u8; SLOT_BYTES];
        first[..7].copy_from_slice(b"a \"b\"\n\0");
        let mut second = [0u8; SLOT_BYTES];
        second[..4].copy_from_slice(b"lo\0n");
        let rec = Record {
            event: ev,
            slots: [&first, &second],
        };
        // arg3 is a buffer whose length (3, the hidden third value) keeps its NUL.
        assert_eq!(
            line(&rec, "f", &format(&["0:str", "1:buf:2"], false, false)),
            r#"uprobe triggered! pid=42 tid=43 comm=app arg0="a \"b\"\n" arg1="lo\x00"... func=f"#
                .to_owned()
                + "\n"
        );
    }

    #[test]
    fn unreadable_values_and_strings_say_so() {
        let mut ev = event(b"app", &[0, 0]);
        ev.faults = 1 | 1 << SLOT_FAULT;
        assert_eq!(
            line(
                &record(ev),
                "f",
                &format(&["+8(arg0)", "1:str"], false, false)
            ),
            "uprobe triggered! pid=42 tid=43 comm=app +8(arg0)=(unreadable) arg1=(unreadable) func=f\n"
        );
    }

    #[test]
    fn hostile_comm_is_escaped() {
        let comm = [0x1bu8; COMM_LEN];
        let text = line(&record(event(&comm, &[0])), "f", &format(&[], false, false));
        assert!(text.starts_with("uprobe triggered! pid=42 tid=43 comm=\\x1b\\x1b"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn a_return_without_its_entry_says_so() {
        let mut ev = event(b"app", &[]);
        ev.kind = KIND_UNSEEN_ENTRY;
        assert_eq!(
            line(&record(ev), "f", &format(&[], true, true)),
            "uprobe triggered! pid=42 tid=43 comm=app entry=unseen ret=-1 func=f\n"
        );
    }
}
