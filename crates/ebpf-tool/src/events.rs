//! Decodes ring-buffer records into `Record`s, checking sizes first: a record of the wrong
//! size means the kernel object and this binary disagree, which must not be misread.

use ebpf_tool_common::{
    COMM_LEN, Config, EVENT_HEAD_SIZE, EventHead, KIND_CALL, KIND_ENTRY, KIND_UNSEEN_ENTRY,
    MAX_SLOTS, MAX_VALUES, RETURN_WORDS, SLOT_BYTES, at_return, record_size, slots_offset,
    values_offset,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring-buffer record of {got} bytes, shorter than a record's head")]
    Short { got: usize },
    #[error("ring-buffer record of unknown kind {kind}")]
    Kind { kind: u8 },
    #[error("ring-buffer record of {got} bytes, expected {expected}")]
    Size { got: usize, expected: usize },
}

/// What the records of one run carry besides the head, as its `Config` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLayout {
    pub values: u32,
    pub slots: u32,
}

impl RecordLayout {
    pub fn of(config: &Config) -> RecordLayout {
        RecordLayout {
            values: config.spec.count.min(MAX_VALUES as u32),
            slots: config.spec.slots.min(MAX_SLOTS as u32),
        }
    }
}

/// One call as decoded from a record; what the record did not carry is 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallEvent {
    pub timestamp_ns: u64,
    pub values: [u64; MAX_VALUES],
    pub ret: u64,
    pub latency_ns: u64,
    pub tgid: u32,
    pub tid: u32,
    pub probe_id: u32,
    pub kind: u8,
    pub truncated: u8,
    pub faults: u16,
    pub comm: [u8; COMM_LEN],
}

impl CallEvent {
    /// A return whose entry was not seen: no values, no latency.
    pub fn entry_unseen(&self) -> bool {
        self.kind == KIND_UNSEEN_ENTRY
    }

    pub fn at_return(&self) -> bool {
        at_return(self.kind)
    }
}

/// One decoded record: the fixed part, and the byte slots borrowed from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub event: CallEvent,
    /// Slot `s`'s `SLOT_BYTES`, as written (a string ends at its first NUL; a buffer's
    /// length is one of the values).
    pub slots: [&'a [u8]; MAX_SLOTS],
}

/// Decodes one record written under `layout`, checking its kind and exact size first.
/// No allocation.
pub fn decode(record: &[u8], layout: RecordLayout) -> Result<Record<'_>, DecodeError> {
    if record.len() < EVENT_HEAD_SIZE {
        return Err(DecodeError::Short { got: record.len() });
    }
    // SAFETY: the record holds at least EVENT_HEAD_SIZE bytes (checked above), `EventHead`
    // is plain integers (any bit pattern is valid) and `read_unaligned` makes no alignment
    // assumption about the ring's memory.
    let head = unsafe { record.as_ptr().cast::<EventHead>().read_unaligned() };
    if !matches!(head.kind, KIND_ENTRY | KIND_CALL | KIND_UNSEEN_ENTRY) {
        return Err(DecodeError::Kind { kind: head.kind });
    }
    let expected = record_size(head.kind, layout.values, layout.slots);
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
        truncated: head.truncated,
        faults: head.faults,
        comm: head.comm,
        ..CallEvent::default()
    };
    if at_return(head.kind) {
        event.ret = word(EVENT_HEAD_SIZE);
        event.latency_ns = word(EVENT_HEAD_SIZE + 8);
    }
    const _: () = assert!(RETURN_WORDS == 2);
    let values_at = values_offset(head.kind);
    for (n, value) in event
        .values
        .iter_mut()
        .take(layout.values as usize)
        .enumerate()
    {
        *value = word(values_at + 8 * n);
    }
    let mut slots: [&[u8]; MAX_SLOTS] = [&[]; MAX_SLOTS];
    let slots_at = slots_offset(head.kind, layout.values);
    for (i, slot) in slots.iter_mut().take(layout.slots as usize).enumerate() {
        let start = slots_at + i * SLOT_BYTES;
        *slot = &record[start..start + SLOT_BYTES];
    }
    Ok(Record { event, slots })
}

/// The bytes of a NUL-padded `comm`, without the padding.
pub fn comm_bytes(comm: &[u8; COMM_LEN]) -> &[u8] {
    until_nul(comm)
}

/// `bytes` up to its first NUL.
pub fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(kind: u8) -> EventHead {
        let mut head = EventHead {
            timestamp_ns: 1,
            tgid: 100,
            tid: 101,
            probe_id: 2,
            kind,
            truncated: 0,
            faults: 0,
            comm: [0; COMM_LEN],
        };
        head.comm[..4].copy_from_slice(b"bash");
        head
    }

    /// A record as the kernel lays it out: head, [ret, latency], values, slots.
    fn encode(head: &EventHead, words: &[u64], slots: &[[u8; SLOT_BYTES]]) -> Vec<u8> {
        // SAFETY: viewing a plain-integer struct as bytes.
        let head_bytes = unsafe {
            std::slice::from_raw_parts((head as *const EventHead).cast::<u8>(), EVENT_HEAD_SIZE)
        };
        let mut bytes = head_bytes.to_vec();
        words.iter().for_each(|w| bytes.extend(w.to_ne_bytes()));
        slots.iter().for_each(|s| bytes.extend(s));
        bytes
    }

    const TWO_VALUES: RecordLayout = RecordLayout {
        values: 2,
        slots: 0,
    };

    #[test]
    fn decodes_an_entry_record_with_the_values_it_carries() {
        let bytes = encode(&head(KIND_ENTRY), &[10, 20], &[]);
        let record = decode(&bytes, TWO_VALUES).unwrap();
        assert_eq!(record.event.values[..3], [10, 20, 0]);
        assert_eq!((record.event.tgid, record.event.tid), (100, 101));
        assert_eq!((record.event.ret, record.event.latency_ns), (0, 0));
        assert_eq!(comm_bytes(&record.event.comm), b"bash");
        assert_eq!(record.slots, [b"" as &[u8]; MAX_SLOTS]); // the layout has none
    }

    #[test]
    fn decodes_return_value_and_latency_of_a_call_record() {
        let bytes = encode(&head(KIND_CALL), &[7, 9, 10, 20], &[]);
        let record = decode(&bytes, TWO_VALUES).unwrap();
        assert_eq!((record.event.ret, record.event.latency_ns), (7, 9));
        assert_eq!(record.event.values[..2], [10, 20]);
        let unseen = encode(&head(KIND_UNSEEN_ENTRY), &[7, 0, 0, 0], &[]);
        assert!(decode(&unseen, TWO_VALUES).unwrap().event.entry_unseen());
    }

    #[test]
    fn borrows_the_slots() {
        let mut slots = [[0; SLOT_BYTES]; MAX_SLOTS];
        slots[0][..5].copy_from_slice(b"hello");
        slots[1] = [b'x'; SLOT_BYTES]; // no NUL at all: bounded by the slot
        let layout = RecordLayout {
            values: 1,
            slots: 2,
        };
        let bytes = encode(&head(KIND_ENTRY), &[0x1000], &slots);
        let record = decode(&bytes, layout).unwrap();
        assert_eq!(until_nul(record.slots[0]), b"hello");
        assert_eq!(record.slots[0].len(), SLOT_BYTES);
        assert_eq!(until_nul(record.slots[1]).len(), SLOT_BYTES);
    }

    #[test]
    fn rejects_wrong_sizes_and_kinds() {
        assert_eq!(
            decode(&[0; 3], TWO_VALUES),
            Err(DecodeError::Short { got: 3 })
        );
        let one_value = encode(&head(KIND_ENTRY), &[10], &[]);
        assert_eq!(
            decode(&one_value, TWO_VALUES),
            Err(DecodeError::Size {
                got: EVENT_HEAD_SIZE + 8,
                expected: EVENT_HEAD_SIZE + 16
            })
        );
        let odd = encode(&head(7), &[10, 20], &[]);
        assert_eq!(decode(&odd, TWO_VALUES), Err(DecodeError::Kind { kind: 7 }));
    }

    /// Whatever the bytes, decoding answers without panicking, and accepts exactly the
    /// records of the layout's size for their kind.
    #[test]
    fn any_bytes_decode_or_fail_cleanly() {
        for values in 0..=MAX_VALUES as u32 {
            for slots in 0..=MAX_SLOTS as u32 {
                let layout = RecordLayout { values, slots };
                for kind in [KIND_ENTRY, KIND_CALL, KIND_UNSEEN_ENTRY, 3] {
                    for len in 0..=record_size(KIND_CALL, MAX_VALUES as u32, MAX_SLOTS as u32) + 8 {
                        let mut bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
                        if len >= EVENT_HEAD_SIZE {
                            bytes[std::mem::offset_of!(EventHead, kind)] = kind;
                        }
                        let valid = len >= EVENT_HEAD_SIZE
                            && kind <= KIND_UNSEEN_ENTRY
                            && len == record_size(kind, values, slots);
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
