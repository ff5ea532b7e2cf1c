//! Bytes to a file descriptor (stdout, stderr) without ever holding up the caller: a
//! thread of its own does the blocking writes, fed batches through a bounded queue. When
//! the reader is slow or stuck (`| sleep 60`, a frozen terminal), the queue fills and
//! the caller is told there is no room, so it can stop reading records (the kernel then
//! drops and counts them) instead of blocking in `write` where no signal, deadline or
//! Ctrl+C can reach it. At the end the caller waits a bounded time for the queue to
//! drain and abandons the thread if it does not: exiting ends it mid-write.

use std::{
    fs::File,
    io::{self, Write as _},
    mem::ManuallyDrop,
    os::fd::{FromRawFd as _, RawFd},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread,
    time::Instant,
};

/// A batch is sent once it holds this much; more only grows the latency of a line.
pub const BATCH_BYTES: usize = 64 * 1024;
/// A writer that has finished nothing for this long has a stuck reader: waiting for it
/// at the end of a run is given up at once rather than at the deadline.
pub const STALLED: std::time::Duration = std::time::Duration::from_millis(100);
/// Batches queued for the writer thread: with the one being filled, at most this many
/// plus one are held in memory when the reader stalls.
const QUEUED_BATCHES: usize = 8;

/// Bytes to write and how many records they hold (to count what was really printed).
struct Batch {
    bytes: Vec<u8>,
    records: u64,
}

/// What became of the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// The reader went away (EPIPE) or the terminal hung up (EIO): end quietly.
    Closed,
    /// Any other write error.
    Failed,
}

struct Shared {
    /// Records whose bytes were fully written.
    written_records: AtomicU64,
    /// Batches fully written.
    written_batches: AtomicU64,
    state: AtomicU8,
}

/// The writing end of one descriptor.
pub struct Sink {
    queue: Option<SyncSender<Batch>>,
    /// Emptied buffers coming back, so steady output allocates nothing.
    spare: Receiver<Vec<u8>>,
    /// The batch being filled.
    current: Vec<u8>,
    current_records: u64,
    /// A full batch the queue had no room for, kept until it has.
    held: Option<Batch>,
    /// Batches handed to the writer.
    sent_batches: u64,
    /// The written-batch count last looked at, and when it last moved (or output was
    /// last all written), to tell a slow reader from a stuck one.
    seen_written: u64,
    last_progress: Instant,
    shared: Arc<Shared>,
    done: Receiver<()>,
}

impl Sink {
    /// Starts the writer thread for `fd`, which stays open after the sink is gone.
    pub fn new(fd: RawFd, name: &str) -> Sink {
        let (queue, batches) = mpsc::sync_channel::<Batch>(QUEUED_BATCHES);
        let (give_back, spare) = mpsc::sync_channel::<Vec<u8>>(QUEUED_BATCHES + 2);
        let (finished, done) = mpsc::sync_channel::<()>(1);
        let shared = Arc::new(Shared {
            written_records: AtomicU64::new(0),
            written_batches: AtomicU64::new(0),
            state: AtomicU8::new(State::Open as u8),
        });
        let writer_shared = shared.clone();
        thread::Builder::new()
            .name(format!("ebpf-tool {name}"))
            .spawn(move || {
                // SAFETY: `fd` is a descriptor this process holds open for its whole life
                // (stdout or stderr); ManuallyDrop keeps the File from closing it.
                let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
                for mut batch in batches {
                    match file.write_all(&batch.bytes) {
                        Ok(()) => {
                            writer_shared
                                .written_records
                                .fetch_add(batch.records, Ordering::Release);
                            writer_shared
                                .written_batches
                                .fetch_add(1, Ordering::Release);
                        }
                        Err(e) => {
                            let state = match e.raw_os_error() {
                                Some(libc::EPIPE | libc::EIO) => State::Closed,
                                _ if e.kind() == io::ErrorKind::BrokenPipe => State::Closed,
                                _ => State::Failed,
                            };
                            writer_shared.state.store(state as u8, Ordering::Release);
                            break;
                        }
                    }
                    batch.bytes.clear();
                    let _ = give_back.try_send(batch.bytes);
                }
                let _ = finished.send(());
            })
            .expect("spawn the output thread");
        Sink {
            queue: Some(queue),
            spare,
            current: Vec::with_capacity(BATCH_BYTES),
            current_records: 0,
            held: None,
            sent_batches: 0,
            seen_written: 0,
            last_progress: Instant::now(),
            shared,
            done,
        }
    }

    /// The batch being filled, to write into; call `record_done` after each record.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.current
    }

    /// Counts one record written into `buffer` since the last call.
    pub fn record_done(&mut self) {
        self.current_records += 1;
    }

    /// Whether a caller may add more: false while a full batch waits for room.
    pub fn has_room(&mut self) -> bool {
        self.flush(false);
        self.held.is_none() && self.current.len() < BATCH_BYTES
    }

    /// Hands the current batch to the writer when it is full (or `now`), without waiting.
    pub fn flush(&mut self, now: bool) {
        self.send_held();
        let full = self.current.len() >= BATCH_BYTES;
        if self.held.is_some() || self.current.is_empty() || !(now || full) {
            return;
        }
        let next = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_BYTES));
        let batch = Batch {
            bytes: std::mem::replace(&mut self.current, next),
            records: std::mem::take(&mut self.current_records),
        };
        self.held = Some(batch);
        self.send_held();
    }

    fn send_held(&mut self) {
        let (Some(batch), Some(queue)) = (self.held.take(), self.queue.as_ref()) else {
            return;
        };
        match queue.try_send(batch) {
            Ok(()) => self.sent_batches += 1,
            Err(TrySendError::Full(batch)) => self.held = Some(batch),
            // The writer stopped (its descriptor failed): nothing more can be written.
            Err(TrySendError::Disconnected(batch)) => {
                drop(batch);
                self.queue = None;
            }
        }
    }

    /// How long the writer has had output waiting without finishing a batch of it: zero
    /// while it keeps up, growing while its reader does not read.
    pub fn stalled_for(&mut self) -> std::time::Duration {
        let written = self.shared.written_batches.load(Ordering::Acquire);
        let pending = self.held.is_some() || written < self.sent_batches;
        if written != self.seen_written || !pending {
            self.seen_written = written;
            self.last_progress = Instant::now();
        }
        self.last_progress.elapsed()
    }

    /// Sends what is buffered and waits up to `timeout` for all of it to be written: lets
    /// a line on another descriptor come after it, as it would with blocking writes.
    pub fn settle(&mut self, timeout: std::time::Duration) {
        self.flush(true);
        let deadline = Instant::now() + timeout;
        while (self.held.is_some()
            || self.shared.written_batches.load(Ordering::Acquire) < self.sent_batches)
            && self.state() == State::Open
            && Instant::now() < deadline
            && self.stalled_for() < STALLED
        {
            thread::sleep(std::time::Duration::from_micros(200));
            self.send_held();
        }
    }

    pub fn state(&self) -> State {
        match self.shared.state.load(Ordering::Acquire) {
            0 => State::Open,
            1 => State::Closed,
            _ => State::Failed,
        }
    }

    /// Records whose bytes have reached the descriptor.
    pub fn written_records(&self) -> u64 {
        self.shared.written_records.load(Ordering::Acquire)
    }

    /// Sends what is left and waits until `deadline` for the writer to finish; true when
    /// everything was written. Past the deadline the writer is abandoned.
    pub fn finish(&mut self, deadline: Instant) -> bool {
        self.flush(true);
        while self.held.is_some() && Instant::now() < deadline && self.queue.is_some() {
            thread::sleep(std::time::Duration::from_millis(2));
            self.send_held();
        }
        let all_sent = self.held.is_none() && self.current.is_empty();
        self.queue = None; // the writer ends after the last queued batch
        let left = deadline.saturating_duration_since(Instant::now());
        let finished = self.done.recv_timeout(left).is_ok();
        all_sent && finished && self.state() == State::Open
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pipe() -> (RawFd, File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() returns.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the read end is ours to own.
        (fds[1], unsafe { File::from_raw_fd(fds[0]) })
    }

    #[test]
    fn writes_every_record_in_order() {
        let (write_end, mut read_end) = pipe();
        let reader = thread::spawn(move || {
            let mut text = String::new();
            io::Read::read_to_string(&mut read_end, &mut text).unwrap();
            text
        });
        let mut sink = Sink::new(write_end, "test");
        for i in 0..10_000 {
            while !sink.has_room() {
                thread::sleep(Duration::from_millis(1));
            }
            writeln!(sink.buffer(), "line {i}").unwrap();
            sink.record_done();
            sink.flush(false);
        }
        assert!(sink.finish(Instant::now() + Duration::from_secs(10)));
        assert_eq!(sink.written_records(), 10_000);
        // SAFETY: closing the write end we created, once the writer is done with it.
        unsafe { libc::close(write_end) };
        let text = reader.join().unwrap();
        assert_eq!(text.lines().count(), 10_000);
        assert_eq!(text.lines().last(), Some("line 9999"));
    }

    #[test]
    fn a_stuck_reader_fills_the_queue_and_never_blocks_the_caller() {
        let (write_end, read_end) = pipe();
        let mut sink = Sink::new(write_end, "test");
        let started = Instant::now();
        let mut accepted = 0u64;
        // Nobody reads: the pipe (64 KiB) and the queue fill, then there is no room.
        for _ in 0..1_000_000 {
            if !sink.has_room() {
                break;
            }
            sink.buffer().extend_from_slice(&[b'x'; 100]);
            sink.record_done();
            accepted += 1;
            sink.flush(false);
        }
        assert!(!sink.has_room());
        assert!(accepted < 20_000, "{accepted}");
        assert!(!sink.finish(Instant::now() + Duration::from_millis(100)));
        assert!(sink.written_records() < accepted);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(read_end);
    }

    #[test]
    fn a_closed_reader_is_seen() {
        let (write_end, read_end) = pipe();
        drop(read_end);
        let mut sink = Sink::new(write_end, "test");
        sink.buffer().extend_from_slice(b"x\n");
        sink.record_done();
        assert!(!sink.finish(Instant::now() + Duration::from_secs(5)));
        assert_eq!(sink.state(), State::Closed);
        // SAFETY: our own descriptor.
        unsafe { libc::close(write_end) };
    }
}
