//! Decodes ring-buffer records into `Record`s, checking sizes first: a record of the wrong
//! size means the kernel object and this binary disagree, which must not be misread.

use ebpf_tool_common::{
    CALL_EVENT_SIZE, CALL_EVENT_WITH_STRINGS_SIZE, COMM_LEN, CallEvent, MAX_STR_ARGS, STR_CAP,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "ring-buffer record of {got} bytes, expected {CALL_EVENT_SIZE} or {CALL_EVENT_WITH_STRINGS_SIZE}"
)]
pub struct DecodeError {
    pub got: usize,
}

/// One decoded record: the fixed part, and the string arguments borrowed from the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub event: CallEvent,
    /// The `i`-th string argument's bytes (without NUL); empty when not captured.
    pub strings: [&'a [u8]; MAX_STR_ARGS],
}

/// Copies the fixed part out of one record and borrows its strings. No allocation.
pub fn decode(record: &[u8]) -> Result<Record<'_>, DecodeError> {
    if record.len() != CALL_EVENT_SIZE && record.len() != CALL_EVENT_WITH_STRINGS_SIZE {
        return Err(DecodeError { got: record.len() });
    }
    // SAFETY: the record holds at least CALL_EVENT_SIZE bytes (checked above),
    // `CallEvent` is plain integers (any bit pattern is valid) and `read_unaligned` makes
    // no alignment assumption about the ring's memory.
    let event = unsafe { record.as_ptr().cast::<CallEvent>().read_unaligned() };
    let mut strings: [&[u8]; MAX_STR_ARGS] = [&[]; MAX_STR_ARGS];
    if record.len() == CALL_EVENT_WITH_STRINGS_SIZE {
        for (i, string) in strings.iter_mut().enumerate() {
            let start = CALL_EVENT_SIZE + i * STR_CAP;
            *string = until_nul(&record[start..start + STR_CAP]);
        }
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
    use ebpf_tool_common::CallEventWithStrings;

    use super::*;

    fn bytes_of<T>(value: &T) -> &[u8] {
        // SAFETY: viewing a plain-integer struct as bytes.
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
    }

    fn sample() -> CallEvent {
        let mut event = CallEvent {
            timestamp_ns: 1,
            args: [10, 20, 30, 40, 50, 60],
            ret: 7,
            latency_ns: 9,
            tgid: 100,
            tid: 101,
            probe_id: 2,
            kind: 0,
            flags: 0,
            stack_id: -1,
            comm: [0; COMM_LEN],
        };
        event.comm[..4].copy_from_slice(b"bash");
        event
    }

    #[test]
    fn round_trips_a_record() {
        let event = sample();
        let record = decode(bytes_of(&event)).unwrap();
        assert_eq!(record.event, event);
        assert_eq!(record.strings, [b"" as &[u8]; MAX_STR_ARGS]);
        assert_eq!(comm_bytes(&record.event.comm), b"bash");
    }

    #[test]
    fn borrows_the_strings() {
        let mut with = CallEventWithStrings {
            event: sample(),
            strings: [[0; STR_CAP]; MAX_STR_ARGS],
        };
        with.strings[0][..5].copy_from_slice(b"hello");
        with.strings[1] = [b'x'; STR_CAP]; // no NUL at all: bounded by the slot
        let record = decode(bytes_of(&with)).unwrap();
        assert_eq!(record.strings[0], b"hello");
        assert_eq!(record.strings[1].len(), STR_CAP);
    }

    #[test]
    fn rejects_wrong_sizes() {
        assert_eq!(decode(&[0; 3]), Err(DecodeError { got: 3 }));
        assert!(decode(&[0; CALL_EVENT_SIZE + 8]).is_err());
    }

    #[test]
    fn a_full_comm_has_no_terminator() {
        assert_eq!(comm_bytes(b"0123456789abcdef"), b"0123456789abcdef");
    }
}
