//! `-c CMD`: the command is started stopped before it executes anything of its own (a
//! child blocked on a pipe between fork and exec), put in a cgroup of ours so it and its
//! descendants are the only tasks traced, and let go once every probe is attached:
//! constructors and the dynamic loader's calls are seen, and a short program is never
//! raced. Its exit ends the run; its status is the tool's.

mod cgroup;
pub mod exit;

use std::{
    ffi::OsString,
    fs::File,
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::process::{CommandExt as _, ExitStatusExt as _},
    },
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    thread::JoinHandle,
};

pub use cgroup::Cgroup;

/// Why a command could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot run '{name}': {source}")]
    Start { name: String, source: io::Error },
    #[error("cannot run '{name}': not found on $PATH")]
    NotOnPath { name: String },
    #[error("the command is empty")]
    Empty,
}

/// How the kernel tells the command's tasks from the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Its cgroup: the command and every process it starts.
    Cgroup(u64),
    /// Its pid only (no cgroup v2 to use): processes it starts are not traced.
    Process(u32),
}

/// A command started and held before its exec, or running after `release`.
pub struct Launch {
    /// The command as the user wrote it, for messages.
    pub label: String,
    /// The program file it executes.
    pub program: PathBuf,
    pub pid: u32,
    pub scope: Scope,
    /// Why descendants are not followed, when they are not.
    pub scope_note: Option<String>,
    /// Writing a byte lets the child exec.
    go: Option<File>,
    spawner: Option<JoinHandle<io::Result<Child>>>,
    child: Option<Child>,
    _cgroup: Option<Cgroup>,
}

impl Launch {
    /// Forks the command, stopped before exec, and gives it a cgroup of its own.
    pub fn start(argv: &[String]) -> Result<Launch, LaunchError> {
        let name = argv.first().ok_or(LaunchError::Empty)?.clone();
        let program = find_program(&name)?;
        let start_error = |source| LaunchError::Start {
            name: name.clone(),
            source,
        };
        let (go_read, go_write) = pipe().map_err(start_error)?;
        let (pid_read, pid_write) = pipe().map_err(start_error)?;
        let mut command = Command::new(&program);
        command.args(&argv[1..]);
        // argv[0] as written, as a shell would pass it.
        command.arg0(OsString::from(&name));
        let (go_fd, pid_fd) = (go_read.as_raw_fd(), pid_write.as_raw_fd());
        let go_write_fd = go_write.as_raw_fd();
        // SAFETY: between fork and exec the child only calls async-signal-safe functions
        // (close, getpid, write, read) on descriptors it inherited.
        unsafe {
            command.pre_exec(move || {
                // Only the tool may hold the writing end: its exit must reach the read.
                libc::close(go_write_fd);
                let pid = libc::getpid().to_ne_bytes();
                if libc::write(pid_fd, pid.as_ptr().cast(), pid.len()) != pid.len() as isize {
                    return Err(io::Error::last_os_error());
                }
                let mut byte = 0u8;
                // Nothing read: the tool went away before attaching; do not run untraced.
                if libc::read(go_fd, (&raw mut byte).cast(), 1) != 1 {
                    return Err(io::Error::other("ebpf-tool went away before attaching"));
                }
                Ok(())
            });
        }
        // `spawn` returns only once the child has exec'd (it reports exec errors), which
        // happens after `release`: it waits on a thread of its own.
        let spawner = std::thread::spawn(move || {
            let spawned = command.spawn();
            drop((go_read, pid_write));
            spawned
        });
        let mut pid_bytes = [0u8; 4];
        let mut pid_read = File::from(pid_read);
        if pid_read.read_exact(&mut pid_bytes).is_err() {
            let err = spawner
                .join()
                .ok()
                .and_then(Result::err)
                .unwrap_or_else(|| io::Error::other("the command did not start"));
            return Err(start_error(err));
        }
        let pid = u32::from_ne_bytes(pid_bytes);
        let (scope, cgroup, scope_note) = match Cgroup::create().and_then(|c| {
            c.add(pid)?;
            Ok(c)
        }) {
            Ok(cgroup) => (Scope::Cgroup(cgroup.id), Some(cgroup), None),
            Err(err) => (
                Scope::Process(pid),
                None,
                Some(format!(
                    "Note: no cgroup for the command ({err}): only its own process is traced, not the processes it starts"
                )),
            ),
        };
        Ok(Launch {
            label: argv.join(" "),
            program,
            pid,
            scope,
            scope_note,
            go: Some(File::from(go_write)),
            spawner: Some(spawner),
            child: None,
            _cgroup: cgroup,
        })
    }

    /// Lets the command exec and run; an exec that fails (not executable, bad format)
    /// is its error.
    pub fn release(&mut self) -> Result<(), LaunchError> {
        if let Some(mut go) = self.go.take() {
            let _ = go.write_all(b"g");
        }
        let Some(spawner) = self.spawner.take() else {
            return Ok(());
        };
        match spawner.join() {
            Ok(Ok(child)) => {
                self.child = Some(child);
                Ok(())
            }
            Ok(Err(source)) => Err(LaunchError::Start {
                name: self.label.clone(),
                source,
            }),
            Err(_) => Err(LaunchError::Start {
                name: self.label.clone(),
                source: io::Error::other("the thread starting it panicked"),
            }),
        }
    }

    /// Passes a signal the tool received on to the command.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill on our own child's pid, which stays ours until we reap it.
        unsafe { libc::kill(self.pid as libc::pid_t, signal) };
    }

    /// Whether a terminal's Ctrl+C reached the command already: it runs in the terminal's
    /// foreground process group, as we do.
    pub fn shares_terminal_signals(&self) -> bool {
        // SAFETY: plain queries of process groups.
        unsafe {
            let foreground = libc::tcgetpgrp(0);
            foreground > 0
                && foreground == libc::getpgrp()
                && libc::getpgid(self.pid as libc::pid_t) == foreground
        }
    }

    /// The command's status once it has exited (non-blocking).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        // A command never let go (an error before attaching) must not run untraced:
        // closing the pipe makes its exec fail, and it exits.
        self.go.take();
        if let Some(spawner) = self.spawner.take() {
            let _ = spawner.join();
        }
    }
}

/// How a command's end is told: "exited with status 3", "was killed by signal 9
/// (SIGKILL)"; and the status the tool exits with (128 + signal, as a shell says).
pub fn describe(status: ExitStatus) -> (String, u8) {
    if let Some(code) = status.code() {
        (format!("exited with status {code}"), code as u8)
    } else if let Some(signal) = status.signal() {
        (
            format!("was killed by signal {signal} ({})", signal_name(signal)),
            128u8.wrapping_add(signal as u8),
        )
    } else {
        ("ended".to_owned(), 1)
    }
}

fn signal_name(signal: i32) -> String {
    // SAFETY: strsignal returns a static or thread-local string for any number.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::strsignal(signal)) };
    text.to_string_lossy().into_owned()
}

/// The file `name` executes: a path as is, otherwise the first executable on `$PATH`.
fn find_program(name: &str) -> Result<PathBuf, LaunchError> {
    if name.contains('/') {
        let path = Path::new(name);
        return match path.try_exists() {
            Ok(true) => Ok(path.to_owned()),
            Ok(false) => Err(LaunchError::Start {
                name: name.to_owned(),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            }),
            Err(source) => Err(LaunchError::Start {
                name: name.to_owned(),
                source,
            }),
        };
    }
    crate::target::search_path(name).ok_or_else(|| LaunchError::NotOnPath {
        name: name.to_owned(),
    })
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
