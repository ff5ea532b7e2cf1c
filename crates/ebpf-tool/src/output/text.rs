//! The text form of an event, one line each, in the shape other tools and the tests parse:
//! `uprobe triggered! pid=<tgid> tid=<tid> comm=<comm> arg0=<n> [ret=<n>] [latency_ns=<n>] func=<name>`.

use std::io::{self, Write};

use ebpf_tool_common::EVENT_NO_ENTRY;

use super::{ArgValue, EventFormat, arg_values, escape::write_escaped};
use crate::events::{Record, comm_bytes};

/// Writes one event line. `function` is the name of the probed function it came from.
pub fn write_event(
    out: &mut impl Write,
    record: &Record<'_>,
    function: &str,
    format: &EventFormat,
) -> io::Result<()> {
    let event = &record.event;
    write!(
        out,
        "uprobe triggered! pid={} tid={} comm=",
        event.tgid, event.tid
    )?;
    write_escaped(out, comm_bytes(&event.comm))?;
    if event.flags & EVENT_NO_ENTRY == 0 {
        for (index, value) in arg_values(format, record) {
            write!(out, " arg{index}=")?;
            match value {
                ArgValue::Integer(n) => write!(out, "{n}")?,
                ArgValue::Hex(n) => write!(out, "{n:#x}")?,
                ArgValue::Str { bytes, truncated } => {
                    out.write_all(b"\"")?;
                    write_escaped(out, bytes)?;
                    out.write_all(if truncated { b"\"..." } else { b"\"" })?;
                }
                ArgValue::Unreadable => out.write_all(b"(unreadable)")?,
            }
        }
    } else {
        out.write_all(b" entry=unseen")?;
    }
    if format.ret {
        write!(out, " ret={}", event.ret as i64)?;
    }
    if format.latency && event.flags & EVENT_NO_ENTRY == 0 {
        write!(out, " latency_ns={}", event.latency_ns)?;
    }
    out.write_all(b" func=")?;
    write_escaped(out, function.as_bytes())?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use ebpf_tool_common::{COMM_LEN, EVENT_STR_TRUNCATED, MAX_STR_ARGS};

    use super::*;
    use crate::{
        events::CallEvent,
        output::args::{ArgSpec, ArgType},
    };

    fn event(comm: &[u8]) -> CallEvent {
        let mut event = CallEvent {
            args: [4096, 0xff, u64::MAX, 3, 4, 5],
            ret: u64::MAX,
            latency_ns: 1500,
            tgid: 42,
            tid: 43,
            ..Default::default()
        };
        event.comm[..comm.len()].copy_from_slice(comm);
        event
    }

    fn plain() -> EventFormat {
        EventFormat {
            args: vec![ArgSpec {
                index: 0,
                ty: ArgType::U64,
            }],
            ret: false,
            latency: false,
        }
    }

    fn line(record: &Record<'_>, function: &str, format: &EventFormat) -> String {
        let mut out = Vec::new();
        write_event(&mut out, record, function, format).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn record(event: CallEvent) -> Record<'static> {
        Record {
            event,
            strings: [b"" as &[u8]; MAX_STR_ARGS],
        }
    }

    #[test]
    fn default_line() {
        assert_eq!(
            line(&record(event(b"bash")), "malloc", &plain()),
            "uprobe triggered! pid=42 tid=43 comm=bash arg0=4096 func=malloc\n"
        );
    }

    #[test]
    fn typed_args_ret_and_latency() {
        let format = EventFormat {
            args: vec![
                ArgSpec {
                    index: 1,
                    ty: ArgType::Hex,
                },
                ArgSpec {
                    index: 2,
                    ty: ArgType::I32,
                },
            ],
            ret: true,
            latency: true,
        };
        assert_eq!(
            line(&record(event(b"app")), "read", &format),
            "uprobe triggered! pid=42 tid=43 comm=app arg1=0xff arg2=-1 ret=-1 latency_ns=1500 func=read\n"
        );
    }

    #[test]
    fn strings_are_quoted_escaped_and_marked_when_cut() {
        let format = EventFormat {
            args: vec![
                ArgSpec {
                    index: 0,
                    ty: ArgType::Str,
                },
                ArgSpec {
                    index: 3,
                    ty: ArgType::Str,
                },
            ],
            ret: false,
            latency: false,
        };
        let mut ev = event(b"app");
        ev.flags = EVENT_STR_TRUNCATED << 1;
        let rec = Record {
            event: ev,
            strings: [b"a \"b\"\n", b"long"],
        };
        assert_eq!(
            line(&rec, "f", &format),
            "uprobe triggered! pid=42 tid=43 comm=app arg0=\"a\\x20\\x22b\\x22\\x0a\" arg3=\"long\"... func=f\n"
        );
    }

    #[test]
    fn hostile_comm_is_escaped() {
        let comm = [0x1bu8; COMM_LEN];
        let text = line(&record(event(&comm)), "f", &plain());
        assert!(text.starts_with("uprobe triggered! pid=42 tid=43 comm=\\x1b\\x1b"));
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn a_return_without_its_entry_says_so() {
        let mut ev = event(b"app");
        ev.flags = EVENT_NO_ENTRY;
        let format = EventFormat {
            ret: true,
            latency: true,
            ..plain()
        };
        assert_eq!(
            line(&record(ev), "f", &format),
            "uprobe triggered! pid=42 tid=43 comm=app entry=unseen ret=-1 func=f\n"
        );
    }
}
