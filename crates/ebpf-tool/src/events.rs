//! Decodes ring-buffer records into `Record`s, checking sizes first: a record of the wrong
//! size means the kernel object and this binary disagree, which must not be misread.

use ebpf_tool_common::{
    COMM_LEN, Config, EVENT_HEAD_SIZE, EventHead, KIND_CALL, KIND_ENTRY, MAX_ARGS, MAX_STR_ARGS,
    RETURN_WORDS, STR_CAP, args_offset, record_size, strings_offset,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring-buffer record of {got} bytes, shorter than a record's head")]
    Short { got: usize },
    #[error("ring-buffer record of unknown kind {kind}")]
    Kind { kind: u16 },
    #[error("ring-buffer record of {got} bytes, expected {expected}")]
    Size { got: usize, expected: usize },
}

/// What the records of one run carry besides the head, as its `Config` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLayout {
    /// Argument registers (the first ones).
    pub args: u32,
    /// String arguments.
    pub strings: u32,
}

impl RecordLayout {
    pub fn of(config: &Config) -> RecordLayout {
        RecordLayout {
            args: config.record_args.min(MAX_ARGS as u32),
            strings: config.str_arg_count.min(MAX_STR_ARGS as u32),
        }
    }
}

/// One call as decoded from a record; what the record did not carry is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallEvent {
    pub timestamp_ns: u64,
    pub args: [u64; MAX_ARGS],
    pub ret: u64,
    pub latency_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub probe_id: u32,
    pub kind: u16,
    pub flags: u16,
    pub comm: [u8; COMM_LEN],
}

/// One decoded record: the fixed part, and the string arguments borrowed from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub event: CallEvent,
    /// The `i`-th string argument's bytes (without NUL); empty when not captured.
    pub strings: [&'a [u8]; MAX_STR_ARGS],
}

/// Decodes one record written under `layout`, checking its kind and exact size first: a
/// record of another size means the kernel object and this binary disagree, which must
/// not be misread. No allocation.
pub fn decode(record: &[u8], layout: RecordLayout) -> Result<Record<'_>, DecodeError> {
    if record.len() < EVENT_HEAD_SIZE {
        return Err(DecodeError::Short { got: record.len() });
    }
    // SAFETY: the record holds at least EVENT_HEAD_SIZE bytes (checked above), `EventHead`
    // is plain integers (any bit pattern is valid) and `read_unaligned` makes no alignment
    // assumption about the ring's memory.
    let head = unsafe { record.as_ptr().cast::<EventHead>().read_unaligned() };
    if head.kind != KIND_ENTRY && head.kind != KIND_CALL {
        return Err(DecodeError::Kind { kind: head.kind });
    }
    let expected = record_size(head.kind, layout.args, layout.strings);
    if record.len() != expected {
        return Err(DecodeError::Size {
            got: record.len(),
            expected,
        });
    }
    let word =
        |offset: usize| u64::from_ne_bytes(record[offset..offset + 8].try_into().expect("8 bytes"));
    let mut event = CallEvent {
        timestamp_ns: head.timestamp_ns,
        tgid: head.tgid,
        tid: head.tid,
        probe_id: head.probe_id,
        kind: head.kind,
        flags: head.flags,
        comm: head.comm,
        ..CallEvent::default()
    };
    if head.kind == KIND_CALL {
        event.ret = word(EVENT_HEAD_SIZE);
        event.latency_ns = word(EVENT_HEAD_SIZE + 8);
    }
    const _: () = assert!(RETURN_WORDS == 2);
    let args_at = args_offset(head.kind);
    for (n, arg) in event.args.iter_mut().take(layout.args as usize).enumerate() {
        *arg = word(args_at + 8 * n);
    }
    let mut strings: [&[u8]; MAX_STR_ARGS] = [&[]; MAX_STR_ARGS];
    let strings_at = strings_offset(head.kind, layout.args);
    for (i, string) in strings.iter_mut().take(layout.strings as usize).enumerate() {
        let start = strings_at + i * STR_CAP;
        *string = until_nul(&record[start..start + STR_CAP]);
    }
    Ok(Record { event, strings })
}

/// The bytes of a NUL-padded `comm`, without the padding.
pub fn comm_bytes(comm: &[u8; COMM_LEN]) -> &[u8] {
    until_nul(comm)
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(kind: u16) -> EventHead {
        let mut head = EventHead {
            timestamp_ns: 1,
            tgid: 100,
            tid: 101,
            probe_id: 2,
            kind,
            flags: 0,
            comm: [0; COMM_LEN],
        };
        head.comm[..4].copy_from_slice(b"bash");
        head
    }

    /// A record as the kernel lays it out: head, [ret, latency], args, strings.
    fn encode(head: &EventHead, words: &[u64], strings: &[[u8; STR_CAP]]) -> Vec<u8> {
        // SAFETY: viewing a plain-integer struct as bytes.
        let head_bytes = unsafe {
            std::slice::from_raw_parts((head as *const EventHead).cast::<u8>(), EVENT_HEAD_SIZE)
        };
        let mut bytes = head_bytes.to_vec();
        words.iter().for_each(|w| bytes.extend(w.to_ne_bytes()));
        strings.iter().for_each(|s| bytes.extend(s));
        bytes
    }

    const TWO_ARGS: RecordLayout = RecordLayout {
        args: 2,
        strings: 0,
    };

    #[test]
    fn decodes_an_entry_record_with_the_arguments_it_carries() {
        let bytes = encode(&head(KIND_ENTRY), &[10, 20], &[]);
        let record = decode(&bytes, TWO_ARGS).unwrap();
        assert_eq!(record.event.args, [10, 20, 0, 0, 0, 0]);
        assert_eq!((record.event.tgid, record.event.tid), (100, 101));
        assert_eq!((record.event.ret, record.event.latency_ns), (0, 0));
        assert_eq!(comm_bytes(&record.event.comm), b"bash");
        assert_eq!(record.strings, [b"" as &[u8]; MAX_STR_ARGS]);
    }

    #[test]
    fn decodes_return_value_and_latency_of_a_call_record() {
        let bytes = encode(&head(KIND_CALL), &[7, 9, 10, 20], &[]);
        let record = decode(&bytes, TWO_ARGS).unwrap();
        assert_eq!((record.event.ret, record.event.latency_ns), (7, 9));
        assert_eq!(record.event.args[..2], [10, 20]);
    }

    #[test]
    fn borrows_the_strings() {
        let mut strings = [[0; STR_CAP]; MAX_STR_ARGS];
        strings[0][..5].copy_from_slice(b"hello");
        strings[1] = [b'x'; STR_CAP]; // no NUL at all: bounded by the slot
        let layout = RecordLayout {
            args: 1,
            strings: 2,
        };
        let bytes = encode(&head(KIND_ENTRY), &[0x1000], &strings);
        let record = decode(&bytes, layout).unwrap();
        assert_eq!(record.strings[0], b"hello");
        assert_eq!(record.strings[1].len(), STR_CAP);
    }

    #[test]
    fn rejects_wrong_sizes_and_kinds() {
        assert_eq!(
            decode(&[0; 3], TWO_ARGS),
            Err(DecodeError::Short { got: 3 })
        );
        let one_arg = encode(&head(KIND_ENTRY), &[10], &[]);
        assert_eq!(
            decode(&one_arg, TWO_ARGS),
            Err(DecodeError::Size {
                got: EVENT_HEAD_SIZE + 8,
                expected: EVENT_HEAD_SIZE + 16
            })
        );
        let odd = encode(&head(7), &[10, 20], &[]);
        assert_eq!(decode(&odd, TWO_ARGS), Err(DecodeError::Kind { kind: 7 }));
    }

    /// Whatever the bytes, decoding answers without panicking, and accepts exactly the
    /// records of the layout's size for their kind.
    #[test]
    fn any_bytes_decode_or_fail_cleanly() {
        for args in 0..=MAX_ARGS as u32 {
            for strings in 0..=MAX_STR_ARGS as u32 {
                let layout = RecordLayout { args, strings };
                for kind in [KIND_ENTRY, KIND_CALL, 2] {
                    for len in 0..=record_size(KIND_CALL, 6, 2) + 8 {
                        let mut bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
                        if len >= EVENT_HEAD_SIZE {
                            let at = std::mem::offset_of!(EventHead, kind);
                            bytes[at..at + 2].copy_from_slice(&kind.to_ne_bytes());
                        }
                        let valid = len >= EVENT_HEAD_SIZE
                            && kind <= KIND_CALL
                            && len == record_size(kind, args, strings);
                        assert_eq!(
                            decode(&bytes, layout).is_ok(),
                            valid,
                            "{layout:?} {kind} {len}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_full_comm_has_no_terminator() {
        assert_eq!(comm_bytes(b"0123456789abcdef"), b"0123456789abcdef");
    }
}
