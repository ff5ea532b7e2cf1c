//! A process's exit, as a descriptor to wait on: a pidfd turns readable when the process
//! it names has exited, whoever its parent is (Linux 5.3+).

use std::{
    io,
    os::fd::{FromRawFd as _, OwnedFd},
};

/// A pidfd for `pid`; `ESRCH` when it has already gone.
pub fn watch(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
