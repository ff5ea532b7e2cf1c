//! Helpers shared by the integration tests: privilege gating, fixture builds, running
//! ebpf-tool until its probe is attached, and parsing its event lines.
#![allow(dead_code)] // each test file uses a different subset

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

/// Set by `.ci/run`: a privileged test that would skip fails instead.
pub const REQUIRE_PRIVILEGED: &str = "EBPF_TOOL_REQUIRE_PRIVILEGED";

/// True when running as root. When not root, a privileged test should skip, except under
/// `EBPF_TOOL_REQUIRE_PRIVILEGED=1`, where skipping would hide untested code: then it fails.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && std::env::var(REQUIRE_PRIVILEGED).is_ok_and(|v| v == "1") {
        panic!("{REQUIRE_PRIVILEGED}=1 but the tests are not running as root");
    }
    root
}

/// Skips the calling test (returns false) when it cannot run unprivileged.
pub fn privileged(test: &str) -> bool {
    let root = is_root();
    if !root {
        eprintln!("Skipping {test}: requires root");
    }
    root
}

pub fn tool() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ebpf-tool"))
}

/// Compiles `tests/fixtures/<name>.c` with `cc` into the test's scratch directory (once per
/// set of flags) and returns the executable's path.
pub fn build_c_fixture(name: &str, flags: &[&str]) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.c"));
    let tag: String = flags
        .iter()
        .flat_map(|f| f.chars().filter(|c| c.is_ascii_alphanumeric()))
        .collect();
    let out =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{tag}-{}", std::process::id()));
    if !out.exists() {
        let status = Command::new("cc")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&source)
            .status()
            .expect("run cc (scripts/setup.sh installs gcc)");
        assert!(status.success(), "cc failed for {}", source.display());
    }
    out
}

/// The standard fixture: `fixture_target` and `malloc` called N times, frame pointers on.
pub fn target_fixture() -> PathBuf {
    build_c_fixture("target", &["-O2", "-g", "-fno-omit-frame-pointer"])
}

/// A running ebpf-tool whose probes are attached, with its stdout being collected.
pub struct Tracer {
    pub child: Child,
    /// Every stdout line so far; the reader thread sends them here.
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Tracer {
    /// Starts `ebpf-tool <args>` and waits until it says its probe is attached.
    pub fn start(args: &[&str]) -> Tracer {
        let mut child = Command::new(tool())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ebpf-tool");
        let stdout = child.stdout.take().unwrap();
        let lines = spawn_reader(stdout);
        let mut tracer = Tracer {
            child,
            lines,
            seen: Vec::new(),
        };
        tracer.wait_for_line("Uprobe attached successfully", Duration::from_secs(30));
        tracer
    }

    /// Reads lines until one contains `needle`; panics with what was seen on timeout.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    let _ = self.child.kill();
                    let out = self.child.wait_with_output_ref();
                    panic!(
                        "ebpf-tool never printed {needle:?}; stdout so far: {:?}; stderr: {out}",
                        self.seen
                    );
                }
            }
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child, which we have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Waits for the tool to exit (at most `timeout`) and returns (status, stdout, stderr).
    pub fn finish(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>, String) {
        let status = wait_timeout(&mut self.child, timeout);
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        let stderr = self.child.wait_with_output_ref();
        (status, self.seen, stderr)
    }
}

trait StderrText {
    fn wait_with_output_ref(&mut self) -> String;
}

impl StderrText for Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read as _;
        let mut text = String::new();
        if let Some(mut stderr) = self.stderr.take() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }
}

fn spawn_reader(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for `child` to exit, killing it (and failing the test) after `timeout`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {timeout:?}", child.id());
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// One parsed event line: `uprobe triggered! pid=.. tid=.. comm=.. arg0=.. func=..`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLine {
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub arg0: u64,
    pub func: String,
}

/// The entry events among `lines`, in order.
pub fn parse_events(lines: &[String]) -> Vec<EventLine> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.split("uprobe triggered! ").nth(1)?;
            let field = |key: &str| {
                rest.split(' ')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            Some(EventLine {
                pid: field("pid")?.parse().ok()?,
                tid: field("tid")?.parse().ok()?,
                comm: field("comm")?,
                arg0: field("arg0")?.parse().ok()?,
                func: field("func")?,
            })
        })
        .collect()
}

/// Runs the target fixture's "calls" mode to completion with `n` iterations; returns its
/// pid and stdout.
pub fn run_target(fixture: &Path, n: u32) -> (u32, String) {
    run_fixture(fixture, "calls", n)
}

/// Runs the target fixture in `mode` with `n` to completion; returns its pid and stdout.
pub fn run_fixture(fixture: &Path, mode: &str, n: u32) -> (u32, String) {
    let child = Command::new(fixture)
        .args([mode, &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run fixture");
    let pid = child.id();
    let out = child.wait_with_output().expect("fixture output");
    assert!(out.status.success(), "fixture failed: {:?}", out.status);
    (pid, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The system's libc, as the spec's tests look for it.
pub fn libc_path() -> &'static str {
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib/libc.so.6",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("libc.so.6 at a usual path")
}
