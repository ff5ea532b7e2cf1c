//! Decodes ring-buffer records into `CallEvent`s, checking sizes first: a record of the
//! wrong size means the kernel object and this binary disagree, which must not be misread.

use ebpf_tool_common::{CALL_EVENT_SIZE, COMM_LEN, CallEvent};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ring-buffer record of {got} bytes, expected {CALL_EVENT_SIZE}")]
pub struct DecodeError {
    pub got: usize,
}

/// Copies one record out of the ring buffer. No allocation.
pub fn decode(record: &[u8]) -> Result<CallEvent, DecodeError> {
    if record.len() != CALL_EVENT_SIZE {
        return Err(DecodeError { got: record.len() });
    }
    // SAFETY: the length is checked above, `CallEvent` is plain integers (any bit pattern
    // is valid) and `read_unaligned` makes no alignment assumption about the record.
    Ok(unsafe { record.as_ptr().cast::<CallEvent>().read_unaligned() })
}

/// The bytes of a NUL-padded `comm`, without the padding.
pub fn comm_bytes(comm: &[u8; COMM_LEN]) -> &[u8] {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(COMM_LEN);
    &comm[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_record() {
        let mut event = CallEvent {
            timestamp_ns: 1,
            args: [10, 20, 30, 40, 50, 60],
            ret: 7,
            tgid: 100,
            tid: 101,
            probe_id: 2,
            kind: 0,
            comm: [0; COMM_LEN],
        };
        event.comm[..4].copy_from_slice(b"bash");
        // SAFETY: viewing a plain-integer struct as bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts((&event as *const CallEvent).cast::<u8>(), CALL_EVENT_SIZE)
        };
        let decoded = decode(bytes).unwrap();
        assert_eq!(decoded, event);
        assert_eq!(comm_bytes(&decoded.comm), b"bash");
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
