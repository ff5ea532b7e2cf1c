//! The ring buffer's side of the run loop: records drained into the printer while it has
//! room, counted, or thrown away unread at the end (and counted as lost).

use aya::maps::{MapData, RingBuf};

use crate::{events, output::printer::Printer};

/// A descriptor owned elsewhere, to wait on.
pub struct FdRef(pub std::os::fd::RawFd);

impl std::os::fd::AsRawFd for FdRef {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// Records read from the ring, and thrown away unread at the end.
#[derive(Debug, Default)]
pub struct Drained {
    pub read: u64,
    pub discarded: u64,
}

/// Prints records waiting in the ring buffer while the printer has room, at most
/// `budget` of them; true when the ring is empty.
pub fn drain(
    ring: &mut RingBuf<MapData>,
    layout: events::RecordLayout,
    printer: &mut Printer,
    drained: &mut Drained,
    budget: usize,
) -> bool {
    for _ in 0..budget {
        if !printer.has_room() {
            return false;
        }
        let Some(record) = ring.next() else {
            return true;
        };
        drained.read += 1;
        match events::decode(&record, layout) {
            Ok(record) => printer.event(&record),
            Err(err) => printer.malformed(&err),
        }
    }
    false
}

/// Empties the ring without printing; returns how many records it held.
pub fn ring_discard(ring: &mut RingBuf<MapData>) -> u64 {
    let mut discarded = 0;
    while ring.next().is_some() {
        discarded += 1;
    }
    discarded
}
