//! Helpers shared by the integration tests: privilege gating, fixture builds, running
//! ebpf-tool until its probe is attached, and parsing its event lines.
#![allow(dead_code)] // each test file uses a different subset

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
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

/// Returns from the calling test when it needs root and does not have it (and fails it
/// under `EBPF_TOOL_REQUIRE_PRIVILEGED=1`, see `is_root`). Used as `require_root!();`.
#[macro_export]
macro_rules! require_root {
    () => {{
        fn here() {}
        let name = std::any::type_name_of_val(&here);
        if !$crate::common::privileged(name.trim_end_matches("::here")) {
            return;
        }
    }};
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

/// Compiles `tests/fixtures/<name>.c` with `cc` into the test's scratch directory, once
/// per process and set of flags, and returns the executable's path.
pub fn build_c_fixture(name: &str, flags: &[&str]) -> PathBuf {
    build_fixture("cc", &format!("{name}.c"), flags)
}

/// Compiles `tests/fixtures/<name>.cpp` with `g++`.
pub fn build_cpp_fixture(name: &str, flags: &[&str]) -> PathBuf {
    build_fixture("g++", &format!("{name}.cpp"), flags)
}

/// Compiles `tests/fixtures/rust_fixture.rs` as crate `fixture` with the given symbol
/// mangling: "legacy" (stable rustc's default) or "v0".
pub fn build_rust_fixture(mangling: &str) -> PathBuf {
    let mut flags = vec!["-O", "--crate-name", "fixture"];
    if mangling == "v0" {
        flags.push("-Csymbol-mangling-version=v0");
    }
    build_fixture("rustc", "rust_fixture.rs", &flags)
}

/// Builds `tests/fixtures/go_fixture.go` with the Go toolchain (Debian's golang-go).
pub fn build_go_fixture() -> PathBuf {
    build_go_fixture_with(&[])
}

/// `build_go_fixture` with extra `go build` flags (`-ldflags=-s -w` strips it).
pub fn build_go_fixture_with(flags: &[&str]) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let tag: String = flags
        .iter()
        .flat_map(|f| f.chars().filter(|c| c.is_ascii_alphanumeric()))
        .collect();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("go_fixture{tag}-{}", std::process::id()));
    if !out.exists() {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/go_fixture.go");
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache");
        let partial = out.with_extension("partial");
        let status = Command::new("go")
            .arg("build")
            .args(flags)
            .arg("-o")
            .arg(&partial)
            .arg(&source)
            .env("GOCACHE", &cache)
            .env("GOPATH", cache.join("gopath"))
            .env("GO111MODULE", "off")
            .env("GOFLAGS", "")
            .status()
            .expect("run go (scripts/setup.sh installs golang-go)");
        assert!(status.success(), "go build failed");
        std::fs::rename(&partial, &out).unwrap();
    }
    out
}

/// Compiles several files of `tests/fixtures` (C and assembly) with `cc` into one
/// executable named after the first.
pub fn build_c_fixture_files(files: &[&str], flags: &[&str]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut all: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    all.extend(files[1..].iter().map(|f| dir.join(f).display().to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    build_fixture("cc", files[0], &all)
}

fn build_fixture(compiler: &str, file: &str, flags: &[&str]) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let name = file.split('.').next().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file);
    let tag: String = flags
        .iter()
        .map(|f| {
            Path::new(f)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(f)
        })
        .flat_map(|f| f.chars().filter(|c| c.is_ascii_alphanumeric()))
        .collect();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let compiler_tag = compiler.replace('+', "p");
    let out = dir.join(format!("{name}-{compiler_tag}{tag}-{}", std::process::id()));
    if !out.exists() {
        // Build under another name and rename: nobody can exec a half-written file.
        let partial = out.with_extension("partial");
        let status = Command::new(compiler)
            .args(flags)
            .arg("-o")
            .arg(&partial)
            .arg(&source)
            .status()
            .unwrap_or_else(|e| panic!("run {compiler} (scripts/setup.sh installs it): {e}"));
        assert!(
            status.success(),
            "{compiler} failed for {}",
            source.display()
        );
        std::fs::rename(&partial, &out).unwrap();
    }
    out
}

/// Builds `tests/fixtures/fixlib.c` as `dir/libfixlib.so` (known to no cache) and
/// `uses_fixlib.c` as `dir/uses_fixlib`, which finds the library through its RUNPATH
/// (`$ORIGIN`); returns (library, program).
pub fn build_fixlib(dir: &Path, flags: &[&str]) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let (lib, program) = (dir.join("libfixlib.so"), dir.join("uses_fixlib"));
    let cc = |extra: &[&std::ffi::OsStr]| {
        let status = Command::new("cc").args(flags).args(extra).status().unwrap();
        assert!(status.success(), "cc {flags:?} {extra:?}");
    };
    cc(&[
        "-shared".as_ref(),
        "-fPIC".as_ref(),
        "-o".as_ref(),
        lib.as_os_str(),
        fixtures.join("fixlib.c").as_os_str(),
    ]);
    cc(&[
        "-o".as_ref(),
        program.as_os_str(),
        fixtures.join("uses_fixlib.c").as_os_str(),
        "-L".as_ref(),
        dir.as_os_str(),
        "-lfixlib".as_ref(),
        "-Wl,-rpath,$ORIGIN".as_ref(),
    ]);
    (lib, program)
}

/// Runs `program args...` and asserts it succeeded; for strip, objcopy, xz.
pub fn run_tool(program: &str, args: &[&std::ffi::OsStr]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

/// A private copy of a built fixture. Uprobes attach to a file (an inode), so tests that
/// run in parallel each trace their own copy and never see each other's calls.
pub fn private_copy(built: &Path) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let copy = built.with_file_name(format!("fx{}-{n}", std::process::id()));
    let partial = copy.with_extension("partial");
    // Copied by another process: a descriptor open for writing in this one would be
    // inherited by any child a parallel test forks meanwhile, and exec of the copy would
    // fail with ETXTBSY while that child lives.
    run_tool("cp", &[built.as_os_str(), partial.as_os_str()]);
    std::fs::rename(&partial, &copy).unwrap();
    copy
}

/// The standard fixture (`tests/fixtures/target.c`, frame pointers on), as a private copy.
pub fn target_fixture() -> PathBuf {
    private_copy(&build_c_fixture(
        "target",
        &["-O2", "-g", "-fno-omit-frame-pointer", "-pthread"],
    ))
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// A running ebpf-tool whose probes are attached, with its stdout and stderr collected.
pub struct Tracer {
    pub child: Child,
    lines: mpsc::Receiver<(Stream, String)>,
    /// Every stdout line so far.
    pub seen: Vec<String>,
    /// Every stderr line so far.
    pub seen_err: Vec<String>,
}

impl Tracer {
    /// Starts `ebpf-tool <args>` and waits until it says its probe is attached (on stdout,
    /// or on stderr in JSON mode).
    pub fn start(args: &[&str]) -> Tracer {
        Tracer::start_with_env(args, &[])
    }

    /// `start`, with extra environment variables for ebpf-tool.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Tracer {
        let mut child = Command::new(tool())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ebpf-tool");
        let (tx, lines) = mpsc::channel();
        spawn_reader(child.stdout.take().unwrap(), Stream::Out, tx.clone());
        spawn_reader(child.stderr.take().unwrap(), Stream::Err, tx);
        let mut tracer = Tracer {
            child,
            lines,
            seen: Vec::new(),
            seen_err: Vec::new(),
        };
        tracer.wait_for_line("Uprobe attached successfully", Duration::from_secs(30));
        tracer
    }

    fn receive(&mut self, timeout: Duration) -> bool {
        match self.lines.recv_timeout(timeout) {
            Ok((Stream::Out, line)) => self.seen.push(line),
            Ok((Stream::Err, line)) => self.seen_err.push(line),
            Err(_) => return false,
        }
        true
    }

    /// Reads lines until one (on either stream) contains `needle`; panics on timeout.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) {
        self.wait_for_lines(needle, 1, timeout);
    }

    /// Reads lines until `count` of them (on either stream) contain `needle`.
    pub fn wait_for_lines(&mut self, needle: &str, count: usize, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let found = |t: &Tracer| {
            t.seen
                .iter()
                .chain(&t.seen_err)
                .filter(|l| l.contains(needle))
                .count()
                >= count
        };
        while !found(self) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !self.receive(left) {
                let _ = self.child.kill();
                panic!(
                    "ebpf-tool never printed {needle:?}; stdout: {:?}; stderr: {:?}",
                    self.seen, self.seen_err
                );
            }
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child, which we have not reaped.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Ctrl+C after a moment for the last records to arrive, then `finish`.
    pub fn interrupt(self) -> Finished {
        std::thread::sleep(Duration::from_millis(300));
        self.signal(libc::SIGINT);
        self.finish(Duration::from_secs(15))
    }

    /// Waits for the tool to exit (at most `timeout`) and collects what it printed.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let status = wait_timeout(&mut self.child, timeout);
        while self.receive(Duration::from_secs(2)) {}
        Finished {
            status,
            stdout: std::mem::take(&mut self.seen),
            stderr: self.seen_err.join("\n"),
        }
    }
}

/// A tracer a test did not finish (a failed assert unwinding past it) is stopped as a
/// user would stop it, so no probe outlives the test.
impl Drop for Tracer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGINT);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a finished ebpf-tool run printed.
pub struct Finished {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Finished {
    /// Asserts a clean exit and returns stdout.
    pub fn ok(self) -> Vec<String> {
        assert!(
            self.status.success(),
            "exit {:?}; stderr: {}",
            self.status,
            self.stderr
        );
        self.stdout
    }
}

fn spawn_reader(
    stream: impl std::io::Read + Send + 'static,
    which: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send((which, line)).is_err() {
                break;
            }
        }
    });
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
    /// Every `key=value` field, as printed.
    pub fields: Vec<(String, String)>,
}

impl EventLine {
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn number(&self, key: &str) -> i64 {
        self.field(key)
            .unwrap_or_else(|| panic!("no {key} in {self:?}"))
            .parse()
            .unwrap_or_else(|_| panic!("{key} is not a number in {self:?}"))
    }
}

/// A line's space-separated tokens, a quoted value (`"a \"b\" c"`, maybe followed by
/// `...`) staying one token, as a logfmt reader splits it.
pub fn logfmt_tokens(line: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut token = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            _ => {}
        }
        token.push(c);
    }
    tokens.push(token);
    tokens.retain(|t| !t.is_empty());
    tokens
}

/// The entry events among `lines`, in order.
pub fn parse_events(lines: &[String]) -> Vec<EventLine> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.split("uprobe triggered! ").nth(1)?;
            let fields: Vec<(String, String)> = logfmt_tokens(rest)
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            let field = |key: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            Some(EventLine {
                pid: field("pid")?.parse().ok()?,
                tid: field("tid")?.parse().ok()?,
                comm: field("comm")?,
                arg0: field("arg0")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(u64::MAX),
                func: field("func")?,
                fields,
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

/// The kernel's `comm` of a process started from `path`: its file name, cut to 15 bytes.
pub fn comm_of(path: &Path) -> String {
    let name = path.file_name().unwrap().to_str().unwrap();
    name[..name.len().min(15)].to_owned()
}

/// Starts the fixture in `mode` with `n`, paused before its calls (it waits for a line on
/// stdin), so a tracer can target its pid first.
pub fn paused_fixture(fixture: &Path, mode: &str, n: u32) -> Child {
    Command::new(fixture)
        .args([mode, &n.to_string(), "wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Lets a paused fixture make its calls and exit; asserts it succeeded.
pub fn release(mut child: Child) {
    use std::io::Write as _;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\ngo\n").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
