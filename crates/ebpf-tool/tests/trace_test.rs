//! Privileged end-to-end tests: ebpf-tool traces fixtures the tests build, and the events
//! must match what the fixture did exactly — count, process and argument values.

#[macro_use]
mod common;

use std::{
    io::Write as _,
    process::{Command, Stdio},
    time::Duration,
};

use common::{Tracer, comm_of, libc_path, parse_events, run_target, target_fixture};

const MALLOC_BASE: u64 = 123_000; // FIXTURE_MALLOC_BASE in fixtures/target.c

/// `fixture_target(i*10 + 1)` for i in 0..n, in order.
fn expected_args(n: u64) -> Vec<u64> {
    (0..n).map(|i| i * 10 + 1).collect()
}

/// What the fixture prints: the sum of `3*x + 7` over its arguments.
fn expected_sum(n: u64) -> String {
    expected_args(n)
        .iter()
        .map(|x| 3 * x + 7)
        .sum::<u64>()
        .to_string()
}

#[test]
fn every_call_is_one_event_with_its_argument() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&[
        "uprobe",
        fixture.to_str().unwrap(),
        "fixture_target",
        "-d",
        "0",
    ]);
    let (pid, sum) = run_target(&fixture, 250);
    assert_eq!(sum, expected_sum(250));
    let finished = tracer.interrupt();
    let stderr = finished.stderr.clone();
    let lines = finished.ok();

    let events: Vec<_> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    assert_eq!(events.len(), 250, "stdout: {lines:?}");
    assert_eq!(
        events.iter().map(|e| e.arg0).collect::<Vec<_>>(),
        expected_args(250)
    );
    assert!(
        events
            .iter()
            .all(|e| e.tid == pid && e.func == "fixture_target")
    );
    assert!(
        events.iter().all(|e| e.comm == comm_of(&fixture)),
        "{events:?}"
    );
    // Only the fixture runs this function: no event from anyone else.
    assert_eq!(parse_events(&lines).len(), 250);
    assert!(
        lines.iter().any(|l| l == "Received Ctrl+C, stopping..."),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("Uprobe detached."));
    assert!(
        stderr.contains("250 events seen, 250 printed, 0 lost"),
        "stderr: {stderr}"
    );
}

#[test]
fn duration_ends_the_run_and_detaches() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&[
        "uprobe",
        fixture.to_str().unwrap(),
        "fixture_target",
        "-d",
        "2",
    ]);
    let (pid, _) = run_target(&fixture, 5);
    let lines = tracer.finish(Duration::from_secs(10)).ok();
    let events: Vec<_> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    assert_eq!(
        events.iter().map(|e| e.arg0).collect::<Vec<_>>(),
        expected_args(5)
    );
    let tail: Vec<&str> = lines
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["Duration complete.", "Uprobe detached."]);
    // Detached: the fixture runs again and nothing is there to see it (the tool exited).
    let (_, sum) = run_target(&fixture, 5);
    assert_eq!(sum, expected_sum(5));
}

#[test]
fn sigterm_detaches_and_exits_zero() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&["uprobe", fixture.to_str().unwrap(), "fixture_target"]);
    assert!(
        tracer
            .seen
            .iter()
            .any(|l| l == "Duration: 0 seconds (0 = until Ctrl+C)")
    );
    let (pid, _) = run_target(&fixture, 3);
    std::thread::sleep(Duration::from_millis(300));
    tracer.signal(libc::SIGTERM);
    let lines = tracer.finish(Duration::from_secs(10)).ok();
    assert_eq!(
        parse_events(&lines).iter().filter(|e| e.pid == pid).count(),
        3,
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "Received SIGTERM, stopping..."));
    assert_eq!(lines.last().map(String::as_str), Some("Uprobe detached."));
}

#[test]
fn closed_stdout_ends_the_run_quietly() {
    require_root!();
    // `ebpf-tool uprobe libc malloc | head -1`: head exits after one line.
    let pipeline = format!(
        "{} uprobe {} malloc -d 30 | head -1",
        common::tool().display(),
        libc_path()
    );
    let started = std::time::Instant::now();
    let out = Command::new("bash")
        .args(["-o", "pipefail", "-c", &pipeline])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "status {:?}, stderr: {stderr}",
        out.status
    );
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.starts_with("Attaching uprobe to"));
    assert!(stderr.is_empty(), "expected no stderr, got: {stderr}");
    assert!(
        elapsed < Duration::from_secs(10),
        "took {elapsed:?} to notice"
    );
}

#[test]
fn never_traces_itself_but_sees_the_fixtures_mallocs() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&["uprobe", libc_path(), "malloc", "-d", "0"]);
    let tool_pid = tracer.child.id();
    let (pid, _) = run_target(&fixture, 40);
    let lines = tracer.interrupt().ok();
    let events = parse_events(&lines);
    assert_eq!(events.iter().filter(|e| e.pid == tool_pid).count(), 0);
    let sizes: Vec<u64> = events
        .iter()
        .filter(|e| e.pid == pid && (MALLOC_BASE..MALLOC_BASE + 1000).contains(&e.arg0))
        .map(|e| e.arg0)
        .collect();
    assert_eq!(sizes, (0..40).map(|i| MALLOC_BASE + i).collect::<Vec<_>>());
}

#[test]
fn pid_filter_reports_only_that_process() {
    require_root!();
    let fixture = target_fixture();
    let spawn_waiting = || {
        Command::new(&fixture)
            .args(["calls", "7", "wait"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut traced = spawn_waiting();
    let mut other = spawn_waiting();
    let pid = traced.id().to_string();
    let tracer = Tracer::start(&[
        "uprobe",
        fixture.to_str().unwrap(),
        "fixture_target",
        "-p",
        &pid,
    ]);
    for child in [&mut traced, &mut other] {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\ngo\n").unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success());
    }
    let lines = tracer.interrupt().ok();
    let events = parse_events(&lines);
    assert_eq!(events.len(), 7, "{lines:?}");
    assert!(events.iter().all(|e| e.pid == traced.id()));
    assert_eq!(
        events.iter().map(|e| e.arg0).collect::<Vec<_>>(),
        expected_args(7)
    );
}
