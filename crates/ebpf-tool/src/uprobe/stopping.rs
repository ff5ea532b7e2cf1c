//! What ends a run besides its deadline: the signals it listens for, and, with `-c`,
//! passing them on to the command and giving it time to end.

use std::{
    io,
    time::{Duration, Instant},
};

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::launch::Launch;

/// After a signal, how long the command of `-c` gets to end before the run stops anyway.
const COMMAND_GRACE: Duration = Duration::from_secs(2);

/// The signals that end a run. Installed before attaching, so a signal during start-up
/// also ends it cleanly: a process killed by SIGHUP while its uprobes are registered
/// makes the kernel fail to unregister them ("leaking uprobe").
pub struct Signals {
    pub interrupt: Signal,
    pub terminate: Signal,
    pub hangup: Signal,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }
}

/// A signal for a run with a command: passed on to it (unless a terminal's Ctrl+C already
/// reached it), and the run goes on until it ends, for at most `COMMAND_GRACE`. False
/// without a command, or for a second signal: stop now.
pub fn pass_on(launch: Option<&Launch>, grace: &mut Option<Instant>, signal: libc::c_int) -> bool {
    let Some(launch) = launch else {
        return false;
    };
    if grace.is_some() {
        return false;
    }
    if !(signal == libc::SIGINT && launch.shares_terminal_signals()) {
        launch.signal(signal);
    }
    *grace = Some(Instant::now() + COMMAND_GRACE);
    true
}
