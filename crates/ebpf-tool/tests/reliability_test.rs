//! Privileged: tracing never changes what the traced program does, leaves nothing behind
//! when the tool is killed, and two tracers of one function both see every call.

#[macro_use]
mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Tracer, comm_of, parse_events, run_fixture, target_fixture};

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn traced_program_output_and_status_are_unchanged_in_every_mode() {
    require_root!();
    let fixture = target_fixture();
    let untraced = Command::new(&fixture)
        .args(["chain", "300"])
        .output()
        .unwrap();
    assert!(untraced.status.success());
    let modes: [&[&str]; 7] = [
        &[],
        &["--ret"],
        &["--latency"],
        &["--count", "--by", "tid"],
        &["--stacks"],
        &["--hist", "0"],
        &["-a", "0:str", "--json"],
    ];
    for mode in modes {
        for function in ["fixture_target", "fixture_chain_*"] {
            let mut args = vec!["uprobe", path(&fixture), function];
            args.extend_from_slice(mode);
            let tracer = Tracer::start(&args);
            let traced = Command::new(&fixture)
                .args(["chain", "300"])
                .output()
                .unwrap();
            tracer.interrupt().ok();
            assert_eq!(
                traced.status.code(),
                untraced.status.code(),
                "{mode:?} {function}"
            );
            assert_eq!(
                traced.stdout, untraced.stdout,
                "{mode:?} {function}: output changed"
            );
        }
    }
}

/// The ids of the BPF programs and links process `pid` holds, from its fds' fdinfo
/// (`prog_id:` / `link_id:` lines).
fn held_bpf_ids(pid: u32) -> (Vec<u64>, Vec<u64>) {
    let (mut programs, mut links) = (Vec::new(), Vec::new());
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
        for line in info.lines() {
            let id = |key: &str| {
                line.strip_prefix(key)
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            if let Some(id) = id("prog_id:") {
                programs.push(id);
            }
            if let Some(id) = id("link_id:") {
                links.push(id);
            }
        }
    }
    (programs, links)
}

/// The ids of every loaded BPF object of `kind` ("prog" or "link"), per `bpftool`.
fn live_ids(kind: &str) -> Vec<u64> {
    let out = Command::new("bpftool")
        .args(["-j", kind, "show"])
        .output()
        .expect("bpftool (scripts/setup.sh installs it)");
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.iter().filter_map(|o| o["id"].as_u64()).collect()
}

#[test]
fn sigkill_leaves_no_program_or_link_behind() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&["uprobe", path(&fixture), "fixture_*", "--latency"]);
    let (programs, links) = held_bpf_ids(tracer.child.id());
    assert!(
        !programs.is_empty() && !links.is_empty(),
        "programs {programs:?}, links {links:?}"
    );
    let live = live_ids("prog");
    assert!(
        programs.iter().all(|id| live.contains(id)),
        "bpftool sees the tool's programs"
    );
    tracer.signal(libc::SIGKILL);
    let finished = tracer.finish(Duration::from_secs(10));
    assert_eq!(finished.status.code(), None, "killed by a signal");
    // The kernel releases programs and links with their last fd; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (live_programs, live_links) = (live_ids("prog"), live_ids("link"));
        let left: Vec<u64> = programs
            .iter()
            .chain(&links)
            .filter(|id| live_programs.contains(id) || live_links.contains(id))
            .copied()
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still loaded after SIGKILL: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the fixture runs as before, with no breakpoint left in its text.
    let (_, sum) = run_fixture(&fixture, "calls", 5);
    assert_eq!(sum, "350");
}

#[test]
fn two_tracers_of_one_function_both_see_every_call() {
    require_root!();
    let fixture = target_fixture();
    let first = Tracer::start(&["uprobe", path(&fixture), "fixture_target"]);
    let second = Tracer::start(&["uprobe", path(&fixture), "fixture_target", "--ret"]);
    let (pid, _) = run_fixture(&fixture, "calls", 40);
    for tracer in [first, second] {
        let lines = tracer.interrupt().ok();
        let events: Vec<_> = parse_events(&lines)
            .into_iter()
            .filter(|e| e.pid == pid)
            .collect();
        assert_eq!(events.len(), 40, "{lines:?}");
    }
}

#[test]
fn hostile_names_and_strings_never_reach_the_terminal_raw() {
    require_root!();
    // A process can name itself anything: give the fixture a file name with an escape.
    let fixture = target_fixture();
    let hostile = fixture.with_file_name("\x1b[31mred\x07");
    common::run_tool("cp", &[fixture.as_os_str(), hostile.as_os_str()]);
    let tracer = Tracer::start(&["uprobe", path(&hostile), "fixture_target"]);
    let status = Command::new(&hostile)
        .args(["calls", "3"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let lines = tracer.interrupt().ok();
    let events = parse_events(&lines);
    assert_eq!(events.len(), 3, "{lines:?}");
    assert!(
        events.iter().all(|e| e.comm == "\\x1b[31mred\\x07"),
        "{events:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.contains('\x1b') && !l.contains('\x07'))
    );

    let tracer = Tracer::start(&["uprobe", path(&hostile), "fixture_target", "--json"]);
    Command::new(&hostile)
        .args(["calls", "2"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let lines = tracer.interrupt().ok();
    let calls: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("valid JSON"))
        .filter(|v: &serde_json::Value| v["type"] == "call")
        .collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["comm"], comm_of(&hostile));
    std::fs::remove_file(&hostile).unwrap();
}

#[test]
fn go_programs_are_traced_without_harm() {
    require_root!();
    let go = common::private_copy(&common::build_go_fixture());
    let untraced = Command::new(&go)
        .args(["compute", "2000"])
        .output()
        .unwrap();
    assert!(untraced.status.success());

    // Entry and return probes alike: exact counts, same output, while four goroutines'
    // stacks grow and move.
    for mode in ["--count", "--latency"] {
        let tracer = Tracer::start(&["uprobe", path(&go), "main.compute", mode]);
        let traced = Command::new(&go)
            .args(["compute", "2000"])
            .output()
            .unwrap();
        let lines = tracer.interrupt().ok();
        assert_eq!(traced.stdout, untraced.stdout);
        assert!(traced.status.success());
        let counted = match mode {
            "--count" => lines
                .iter()
                .any(|l| l.split_whitespace().eq(["main.compute", "2000"])),
            _ => lines
                .iter()
                .any(|l| l.starts_with("main.compute latency: count=2000 ")),
        };
        assert!(counted, "{mode}: {lines:?}");
    }
}

/// Uretprobes replace return addresses with the kernel's trampoline, which the C++
/// unwinder cannot step through: an exception leaving a function traced by one aborts
/// the program. So in code that unwinds, returns are seen at return instructions: no
/// abort, every return seen, and every call an exception left counted.
#[test]
fn cpp_exceptions_are_safe_under_entry_and_return_probes() {
    require_root!();
    let exe = common::private_copy(&common::build_cpp_fixture("throws", &["-O2"]));
    let untraced = Command::new(&exe).arg("30").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&untraced.stdout), "450 15\n");

    let tracer = Tracer::start(&[
        "uprobe",
        exe.to_str().unwrap(),
        "fixture_thrower",
        "--count",
    ]);
    let traced = Command::new(&exe).arg("30").output().unwrap();
    let lines = tracer.interrupt().ok();
    assert_eq!(traced.stdout, untraced.stdout);
    assert!(traced.status.success());
    // One function: its compiler-split `.cold` part (where the throw lives) is no entry.
    let rows: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("fixture_thrower"))
        .collect();
    assert_eq!(rows.len(), 1, "{lines:?}");
    assert!(
        rows[0]
            .split_whitespace()
            .eq(["fixture_thrower(long)", "30"]),
        "{lines:?}"
    );

    let tracer = Tracer::start(&[
        "uprobe",
        exe.to_str().unwrap(),
        "fixture_thrower",
        "--ret",
        "-a",
        "0:i64",
    ]);
    let traced = Command::new(&exe).arg("30").output().unwrap();
    let finished = tracer.interrupt();
    let stderr = finished.stderr.clone();
    let lines = finished.ok();
    assert_eq!(traced.stdout, untraced.stdout, "no abort");
    assert!(traced.status.success());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("returns are seen at each return instruction")),
        "{lines:?}"
    );
    let returns: Vec<(i64, i64)> = common::parse_events(&lines)
        .iter()
        .map(|e| (e.number("arg0"), e.number("ret")))
        .collect();
    let odd: Vec<(i64, i64)> = (0..30).filter(|i| i % 2 == 1).map(|i| (i, 2 * i)).collect();
    assert_eq!(returns, odd, "{lines:?}");
    assert!(
        stderr.contains(", 15 calls never seen returning"),
        "{stderr}"
    );

    // Uretprobes on request, with the risk said.
    let warning = "a C++ exception that propagates out of a function traced with uretprobes";
    let run = |binary: &str, function: &str, flags: &[&str]| {
        let out = Command::new(common::tool())
            .args(["uprobe", binary, function, "-d", "1"])
            .args(flags)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let exe = exe.to_str().unwrap();
    assert!(run(exe, "fixture_thrower", &["--ret", "--uretprobes"]).contains(warning));
    assert!(!run(exe, "fixture_thrower", &["--ret"]).contains(warning));
    let c = target_fixture();
    assert!(!run(c.to_str().unwrap(), "fixture_target", &["--ret"]).contains("uses unwinding"));
}

/// Starts ebpf-tool with stdout going to a pipe that nobody reads (the read end is
/// returned, to keep it open) and stderr collected by a thread.
fn start_unread(
    args: &[&str],
) -> (
    std::process::Child,
    std::process::ChildStdout,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead as _;
    let mut child = Command::new(common::tool())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    (child, stdout, rx)
}

/// seen = printed + lost, from the text summary line.
fn summary_adds_up(stderr: &[String]) -> (u64, u64, u64) {
    let line = stderr
        .iter()
        .find(|l| l.contains(" events seen, "))
        .unwrap_or_else(|| panic!("no summary: {stderr:?}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (seen, printed, lost) = (numbers[0], numbers[1], numbers[2]);
    assert_eq!(seen, printed + lost, "{line}");
    (seen, printed, lost)
}

#[test]
fn signals_stop_the_run_under_flood_even_when_stdout_is_never_read() {
    require_root!();
    let fixture = target_fixture();
    let mut flood = Command::new(&fixture)
        .args(["flood", "60"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for (signal, json) in [
        (libc::SIGINT, true),
        (libc::SIGTERM, true),
        (libc::SIGHUP, true),
        (libc::SIGINT, false),
        (libc::SIGHUP, false),
    ] {
        let mut args = vec!["uprobe", path(&fixture), "fixture_target", "-a", "0"];
        if json {
            args.push("--json");
        }
        let (mut child, unread, stderr) = start_unread(&args);
        let mut lines = Vec::new();
        if json {
            // Status lines go to stderr in JSON mode: wait until the probe is attached.
            while !lines.iter().any(|l: &String| l.contains("Uprobe attached")) {
                lines.push(stderr.recv_timeout(Duration::from_secs(30)).unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(1500)); // the pipe and the queue fill
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let sent = Instant::now();
        let status = common::wait_timeout(&mut child, Duration::from_secs(10));
        let took = sent.elapsed();
        assert!(status.success(), "signal {signal}: {status:?}");
        lines.extend(stderr.try_iter());
        if json {
            // The JSON summary would be on stdout, which nobody reads.
            assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:?}");
        } else {
            let (seen, printed, lost) = summary_adds_up(&lines);
            assert!(seen > 0 && lost > 0 && printed < seen, "{lines:?}");
        }
        eprintln!("signal {signal} (json {json}): exited {took:?} after it");
        drop(unread);
    }
    assert!(
        flood.try_wait().unwrap().is_none(),
        "the traced program died"
    );
    flood.kill().unwrap();
    let _ = flood.wait();
}

#[test]
fn a_reader_that_leaves_while_output_waits_ends_the_run() {
    require_root!();
    // Measured before: the reader closing its end while a full queue waited for it
    // left the run loop spinning on the broken pipe, deaf to Ctrl+C and its deadline.
    let fixture = target_fixture();
    let mut flood = Command::new(&fixture)
        .args(["flood", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    for args in [
        &["uprobe", path(&fixture), "fixture_target", "-a", "0"][..],
        &["uprobe", path(&fixture), "fixture_target", "-d", "20"][..],
    ] {
        let (mut child, unread, stderr) = start_unread(args);
        std::thread::sleep(Duration::from_millis(1500)); // the pipe and the queue fill
        drop(unread);
        let left = Instant::now();
        let status = common::wait_timeout(&mut child, Duration::from_secs(10));
        let took = left.elapsed();
        let lines: Vec<String> = stderr.try_iter().collect();
        assert!(status.success(), "{args:?}: {status:?} {lines:?}");
        assert!(took < Duration::from_secs(5), "{args:?}: took {took:?}");
        assert!(!lines.iter().any(|l| l.contains("panicked")), "{lines:?}");
        eprintln!("{args:?}: exited {took:?} after its reader left");
    }
    assert!(
        flood.try_wait().unwrap().is_none(),
        "the traced program died"
    );
    flood.kill().unwrap();
    let _ = flood.wait();
}

#[test]
fn a_slow_reader_cannot_stretch_the_duration() {
    require_root!();
    use std::io::BufRead as _;
    // Measured before: with a producer much faster than its reader, -d 1 ran 21 s.
    let fixture = target_fixture();
    let mut flood = Command::new(&fixture)
        .args(["flood", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (mut child, stdout, stderr) =
        start_unread(&["uprobe", path(&fixture), "fixture_target", "-d", "1"]);
    let reader = std::thread::spawn(move || {
        let mut read = 0u64;
        for _line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            read += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        read
    });
    let status = common::wait_timeout(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let lines: Vec<String> = stderr.try_iter().collect();
    let (_, printed, lost) = summary_adds_up(&lines);
    assert!(lost > 0, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("were not printed") || l.contains("ring buffer was full")),
        "losses are said: {lines:?}"
    );
    flood.kill().unwrap();
    let _ = flood.wait();
    let read = reader.join().unwrap();
    // Everything counted as printed reached the pipe (the reader still gets it after
    // the tool exited); status lines come on top.
    assert!(read >= printed, "read {read}, printed {printed}");
}

#[test]
fn a_traced_file_rewritten_or_replaced_gets_its_probes_moved_not_left_in_other_code() {
    require_root!();
    // Two builds of the fixture whose fixture_target lies at different offsets: after
    // the rewrite, a probe left at the old offset would sit inside other code.
    let first = target_fixture();
    let second = common::private_copy(&common::build_c_fixture("target", &["-O0", "-pthread"]));
    let untraced = |exe: &std::path::Path, n: &str| {
        let out = Command::new(exe).args(["calls", n]).output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let (want_second, want_first) = (untraced(&second, "5"), untraced(&first, "3"));
    let traced = first.with_file_name(format!("rewritten-{}", std::process::id()));
    common::run_tool("cp", &[first.as_os_str(), traced.as_os_str()]);
    let mut tracer = Tracer::start(&["uprobe", path(&traced), "fixture_target", "--count"]);

    // In place, as cp does it: same inode, new contents.
    common::run_tool("cp", &[second.as_os_str(), traced.as_os_str()]);
    tracer.wait_for_lines("Reattached 1 of 1 functions", 1, Duration::from_secs(10));
    let out = Command::new(&traced).args(["calls", "5"]).output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(
        out.stdout, want_second,
        "the rewritten program computed differently"
    );

    // Replaced, as a package upgrade does it: a new file renamed over the path.
    let staged = traced.with_extension("new");
    common::run_tool("cp", &[first.as_os_str(), staged.as_os_str()]);
    std::fs::rename(&staged, &traced).unwrap();
    tracer.wait_for_lines("Reattached 1 of 1 functions", 2, Duration::from_secs(10));
    let out = Command::new(&traced).args(["calls", "3"]).output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(out.stdout, want_first);

    let finished = tracer.interrupt();
    let stderr = finished.stderr.clone();
    let lines = finished.ok();
    assert!(
        stderr.contains("was rewritten while traced: its probes are detached")
            && stderr.contains("was replaced by another file while traced"),
        "{stderr}"
    );
    // Every call of both new files counted, at their own offsets.
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["fixture_target", "8"])),
        "{lines:?}"
    );
    std::fs::remove_file(&traced).unwrap();
}
