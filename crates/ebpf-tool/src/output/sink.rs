//! Bytes to stdout or stderr without ever holding up the caller. When the reader is slow
//! or stuck (`| sleep 60`, a frozen terminal), a blocking write would leave the run loop
//! where no signal, deadline or Ctrl+C can reach it. So output waits in a bounded queue,
//! written only as far as the descriptor takes it without blocking; a full queue tells
//! the caller to stop reading records (the kernel then drops and counts them), and its
//! descriptor's writability says when to go on.
//!
//! Non-blocking writes without touching anybody else's descriptor: `O_NONBLOCK` lives in
//! the open file description, which a pipe or terminal shares with the shell and the
//! other processes of the pipeline. So a pipe, FIFO or terminal is opened again through
//! `/proc/self/fd/N` (a description of our own) and made non-blocking there; a socket
//! gets `send(MSG_DONTWAIT)`; a regular file or /dev/null is written as it is (its
//! writes do not wait on a reader).

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, Write as _},
    mem::ManuallyDrop,
    os::{
        fd::{AsRawFd, FromRawFd as _, RawFd},
        unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    },
    time::{Duration, Instant},
};

/// Output is handed to the descriptor once this much is buffered (or when asked).
pub const BATCH_BYTES: usize = 64 * 1024;
/// At most this much waits for a slow reader; past it the caller is told there is no
/// room. A 2 MiB ring buffer holds the rest.
const MAX_PENDING_BYTES: usize = 1024 * 1024;
/// A reader that takes nothing for this long is stuck: waiting for it at the end of a
/// run is given up at once rather than at the deadline.
pub const STALLED: Duration = Duration::from_millis(100);

/// What became of the descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Open,
    /// The reader went away (EPIPE) or the terminal hung up (EIO): end quietly.
    Closed,
    /// Any other write error.
    Failed,
}

/// How writes reach the descriptor.
enum Target {
    /// Our own non-blocking description of a pipe, FIFO or terminal.
    NonBlocking(File),
    /// A socket, written with `MSG_DONTWAIT`.
    Socket(RawFd),
    /// A regular file or device whose writes need no reader: written directly.
    Direct(ManuallyDrop<File>),
}

/// Bytes handed over but not yet written, and how many records they finish.
struct Chunk {
    bytes: Vec<u8>,
    /// Written so far.
    at: usize,
    records: u64,
}

/// The writing end of one descriptor.
pub struct Sink {
    target: Target,
    /// The chunk being filled.
    current: Vec<u8>,
    current_records: u64,
    pending: VecDeque<Chunk>,
    pending_bytes: usize,
    /// Emptied buffers, so steady output allocates nothing.
    spare: Vec<Vec<u8>>,
    written_records: u64,
    state: State,
    /// When a write last made progress, or nothing was waiting.
    last_progress: Instant,
}

impl Sink {
    /// Writes to `fd` (stdout or stderr), which stays open after the sink is gone.
    pub fn new(fd: RawFd) -> Sink {
        Sink {
            target: Target::for_fd(fd),
            current: Vec::with_capacity(BATCH_BYTES),
            current_records: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            spare: Vec::new(),
            written_records: 0,
            state: State::Open,
            last_progress: Instant::now(),
        }
    }

    /// The descriptor writes go to: poll it for writability when there is no room.
    pub fn fd(&self) -> RawFd {
        match &self.target {
            Target::NonBlocking(file) => file.as_raw_fd(),
            Target::Socket(fd) => *fd,
            Target::Direct(file) => file.as_raw_fd(),
        }
    }

    /// True when waiting for writability means something (the descriptor can be full).
    pub fn can_be_full(&self) -> bool {
        !matches!(self.target, Target::Direct(_))
    }

    /// The chunk being filled, to write into; call `record_done` after each record.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.current
    }

    /// Counts one record written into `buffer` since the last call.
    pub fn record_done(&mut self) {
        self.current_records += 1;
    }

    /// Whether a caller may add more: false while too much waits for the reader.
    pub fn has_room(&mut self) -> bool {
        if self.state != State::Open {
            // Nothing will ever be written: keep no bytes and never make anyone wait.
            self.current.clear();
            self.pending.clear();
            self.pending_bytes = 0;
            return true;
        }
        if self.current.len() >= BATCH_BYTES {
            self.flush(true);
        }
        self.pending_bytes + self.current.len() < MAX_PENDING_BYTES
    }

    /// Writes what the descriptor takes without blocking: with `now`, the chunk being
    /// filled too; otherwise only once a batch is full.
    pub fn flush(&mut self, now: bool) {
        if !self.current.is_empty() && (now || self.current.len() >= BATCH_BYTES) {
            let next = self
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(BATCH_BYTES));
            let bytes = std::mem::replace(&mut self.current, next);
            self.pending_bytes += bytes.len();
            self.pending.push_back(Chunk {
                bytes,
                at: 0,
                records: std::mem::take(&mut self.current_records),
            });
        }
        while self.state == State::Open
            && let Some(chunk) = self.pending.front_mut()
        {
            match self.target.write(&chunk.bytes[chunk.at..]) {
                Ok(n) => {
                    chunk.at += n;
                    self.pending_bytes -= n;
                    self.last_progress = Instant::now();
                    if chunk.at == chunk.bytes.len() {
                        let mut done = self.pending.pop_front().expect("front exists");
                        self.written_records += done.records;
                        done.bytes.clear();
                        if self.spare.len() < 4 {
                            self.spare.push(done.bytes);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.state = match e.raw_os_error() {
                        Some(libc::EPIPE | libc::EIO) => State::Closed,
                        _ => State::Failed,
                    };
                }
            }
        }
        if self.pending.is_empty() {
            self.last_progress = Instant::now();
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Records whose bytes have reached the descriptor.
    pub fn written_records(&self) -> u64 {
        self.written_records
    }

    /// How long output has waited without the reader taking any of it: zero while it
    /// keeps up, growing while it does not read.
    pub fn stalled_for(&self) -> Duration {
        if self.pending.is_empty() {
            Duration::ZERO
        } else {
            self.last_progress.elapsed()
        }
    }

    /// Writes everything, waiting for the descriptor as long as `timeout` allows, less
    /// when the reader takes nothing for `STALLED`; true when all of it was written.
    pub fn settle(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.flush(true);
        while !self.pending.is_empty() && self.state == State::Open {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stalled_for() >= STALLED {
                break;
            }
            let mut poll = libc::pollfd {
                fd: self.fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            let wait = left.min(STALLED).as_millis().max(1) as i32;
            // SAFETY: one valid pollfd; poll only writes `revents`.
            unsafe { libc::poll(&mut poll, 1, wait) };
            self.flush(false);
        }
        self.pending.is_empty() && self.state == State::Open
    }
}

impl Target {
    fn for_fd(fd: RawFd) -> Target {
        // SAFETY: `fd` is a descriptor this process holds open for its whole life (stdout
        // or stderr); ManuallyDrop keeps the File from closing it.
        let shared = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
        let Ok(meta) = shared.metadata() else {
            return Target::Direct(shared);
        };
        let kind = meta.file_type();
        if kind.is_socket() {
            return Target::Socket(fd);
        }
        if kind.is_fifo() || kind.is_char_device() {
            // /dev/null and friends are character devices that never block: only pipes
            // and terminals need a description of their own.
            let own = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
                .open(format!("/proc/self/fd/{fd}"));
            match own {
                Ok(file) if kind.is_fifo() || is_terminal(&file) => {
                    return Target::NonBlocking(file);
                }
                Ok(_) => {}
                Err(err) => {
                    log::debug!("cannot reopen fd {fd} non-blocking ({err}); writing it directly")
                }
            }
        }
        Target::Direct(shared)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Target::NonBlocking(file) => file.write(bytes),
            Target::Direct(file) => file.write(bytes),
            Target::Socket(fd) => {
                // SAFETY: sends from a valid buffer of `bytes.len()` bytes.
                let sent = unsafe {
                    libc::send(
                        *fd,
                        bytes.as_ptr().cast(),
                        bytes.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if sent < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(sent as usize)
                }
            }
        }
    }
}

fn is_terminal(file: &File) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(file.as_raw_fd()) == 1 }
}

#[cfg(test)]
mod tests {
    use std::{io::Read as _, thread};

    use super::*;

    fn pipe() -> (RawFd, File) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe() returns.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the read end is ours to own.
        (fds[1], unsafe { File::from_raw_fd(fds[0]) })
    }

    fn close(fd: RawFd) {
        // SAFETY: closing a descriptor this test created.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn writes_every_record_in_order() {
        let (write_end, mut read_end) = pipe();
        let reader = thread::spawn(move || {
            let mut text = String::new();
            read_end.read_to_string(&mut text).unwrap();
            text
        });
        let mut sink = Sink::new(write_end);
        assert!(matches!(sink.target, Target::NonBlocking(_)));
        for i in 0..100_000 {
            while !sink.has_room() {
                sink.settle(Duration::from_millis(10));
            }
            writeln!(sink.buffer(), "line {i}").unwrap();
            sink.record_done();
            sink.flush(false);
        }
        assert!(sink.settle(Duration::from_secs(10)));
        assert_eq!(sink.written_records(), 100_000);
        drop(sink);
        close(write_end);
        let text = reader.join().unwrap();
        assert_eq!(text.lines().count(), 100_000);
        assert_eq!(text.lines().last(), Some("line 99999"));
    }

    #[test]
    fn a_stuck_reader_fills_the_queue_and_never_blocks_the_caller() {
        let (write_end, read_end) = pipe();
        let mut sink = Sink::new(write_end);
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
        assert!(
            !sink.settle(Duration::from_secs(5)),
            "a stuck reader is given up on"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(sink.written_records() < accepted);
        // The pipe's own description was never made non-blocking.
        // SAFETY: F_GETFL only reads the flags.
        let flags = unsafe { libc::fcntl(write_end, libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        drop(read_end);
        close(write_end);
    }

    #[test]
    fn a_closed_reader_is_seen() {
        let (write_end, read_end) = pipe();
        drop(read_end);
        let mut sink = Sink::new(write_end);
        sink.buffer().extend_from_slice(b"x\n");
        sink.record_done();
        assert!(!sink.settle(Duration::from_secs(5)));
        assert_eq!(sink.state(), State::Closed);
        close(write_end);
    }
}
