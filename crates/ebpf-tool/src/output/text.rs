//! The text form of an event, one line each, in the shape other tools and the tests parse:
//! `uprobe triggered! pid=<tgid> tid=<tid> comm=<comm> arg0=<n> func=<name>`.

use std::io::{self, Write};

use ebpf_tool_common::{CallEvent, KIND_RETURN};

use super::escape::write_escaped;
use crate::events::comm_bytes;

/// Writes one event line. `function` is the name of the probed function it came from.
pub fn write_event(out: &mut impl Write, event: &CallEvent, function: &str) -> io::Result<()> {
    let what = if event.kind == KIND_RETURN {
        "uretprobe triggered!"
    } else {
        "uprobe triggered!"
    };
    write!(out, "{what} pid={} tid={} comm=", event.tgid, event.tid)?;
    write_escaped(out, comm_bytes(&event.comm))?;
    if event.kind == KIND_RETURN {
        write!(out, " ret={}", event.ret as i64)?;
    } else {
        write!(out, " arg0={}", event.args[0])?;
    }
    out.write_all(b" func=")?;
    write_escaped(out, function.as_bytes())?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use ebpf_tool_common::{COMM_LEN, KIND_ENTRY};

    use super::*;

    fn event(kind: u32, comm: &[u8]) -> CallEvent {
        let mut event = CallEvent {
            args: [4096, 1, 2, 3, 4, 5],
            ret: u64::MAX,
            tgid: 42,
            tid: 43,
            kind,
            ..Default::default()
        };
        event.comm[..comm.len()].copy_from_slice(comm);
        event
    }

    fn line(event: &CallEvent, function: &str) -> String {
        let mut out = Vec::new();
        write_event(&mut out, event, function).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn entry_line() {
        assert_eq!(
            line(&event(KIND_ENTRY, b"bash"), "malloc"),
            "uprobe triggered! pid=42 tid=43 comm=bash arg0=4096 func=malloc\n"
        );
    }

    #[test]
    fn return_line_shows_a_signed_return_value() {
        assert_eq!(
            line(&event(KIND_RETURN, b"bash"), "read"),
            "uretprobe triggered! pid=42 tid=43 comm=bash ret=-1 func=read\n"
        );
    }

    #[test]
    fn hostile_comm_is_escaped() {
        let comm = [0x1bu8; COMM_LEN];
        let text = line(&event(KIND_ENTRY, &comm), "f");
        assert!(text.starts_with("uprobe triggered! pid=42 tid=43 comm=\\x1b\\x1b"));
        assert!(!text.contains('\x1b'));
    }
}
