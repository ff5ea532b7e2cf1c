//! Privileged tests of Go programs: arguments read with Go's register ABI, returns seen
//! at return instructions and paired by goroutine (goroutines change threads and their
//! stacks move between a call's entry and its return), stripped binaries resolved from
//! Go's own function table, and Debian's `go` command. Every run also checks that the
//! traced program printed what it prints untraced and exited as it does.

#[macro_use]
mod common;

use std::{path::Path, process::Command};

use common::{EventLine, Tracer, parse_events};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the fixture `mode n` with 4 Ps, untraced first, then traced by `args`; asserts
/// the traced run printed and exited the same, and returns the traced run's events and
/// ebpf-tool's stderr.
fn traced_run(
    go: &Path,
    mode: &str,
    n: u32,
    args: &[&str],
) -> (Vec<EventLine>, Vec<String>, String) {
    let run = || {
        Command::new(go)
            .args([mode, &n.to_string()])
            .env("GOMAXPROCS", "4")
            .output()
            .unwrap()
    };
    let untraced = run();
    assert!(untraced.status.success(), "{untraced:?}");
    let mut all = vec!["uprobe", path(go)];
    all.extend(args);
    let tracer = Tracer::start(&all);
    let traced = run();
    let finished = tracer.interrupt();
    let stderr = finished.stderr.clone();
    let lines = finished.ok();
    assert_eq!(
        traced.stdout, untraced.stdout,
        "the program computed the same"
    );
    assert_eq!(traced.status.code(), untraced.status.code());
    (parse_events(&lines), lines, stderr)
}

#[test]
fn go_arguments_and_results_are_read_from_go_s_registers() {
    require_root!();
    let go = common::private_copy(&common::build_go_fixture());
    let (events, lines, _) = traced_run(&go, "add", 300, &["main.add", "-a", "0,1", "--ret"]);
    let got: Vec<(i64, i64, i64)> = events
        .iter()
        .map(|e| (e.number("arg0"), e.number("arg1"), e.number("ret")))
        .collect();
    let expected: Vec<(i64, i64, i64)> = (0..300).map(|i| (i, 1000, i + 1000)).collect();
    assert_eq!(got, expected, "{lines:?}");
}

#[test]
fn a_go_string_is_two_words_and_gostr_reads_it() {
    require_root!();
    let go = common::private_copy(&common::build_go_fixture());
    // greet(name string, times int): name is words 0-1, times word 2.
    let (events, lines, _) = traced_run(
        &go,
        "greet",
        20,
        &["main.greet", "-a", "0:gostr,2", "--ret"],
    );
    assert_eq!(events.len(), 20, "{lines:?}");
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.field("arg0"), Some("\"gopher\""), "{event:?}");
        assert_eq!(event.number("arg2"), i as i64);
        assert_eq!(event.number("ret"), 6 * i as i64);
    }
}

/// Eight goroutines on four Ps sleep and yield inside `nap(ms)`, so they resume on other
/// threads: each return must still find its own entry (`ret` is the call's own `ms`)
/// and its latency cover the sleep.
#[test]
fn returns_pair_by_goroutine_across_threads() {
    require_root!();
    let go = common::private_copy(&common::build_go_fixture());
    let calls = 160;
    let (events, lines, stderr) = traced_run(
        &go,
        "nap",
        calls,
        &["main.nap", "-a", "0", "--ret", "--latency"],
    );
    assert_eq!(events.len(), calls as usize, "{lines:?}");
    for event in &events {
        let ms = event.number("arg0");
        assert!((1..=5).contains(&ms), "{event:?}");
        assert_eq!(
            event.number("ret"),
            ms,
            "paired with another call: {event:?}"
        );
        assert!(
            event.number("latency_ns") >= ms * 1_000_000,
            "a {ms} ms nap timed shorter: {event:?}"
        );
    }
    assert!(
        !stderr.contains("without a seen entry") && !stderr.contains("never seen returning"),
        "{stderr}"
    );
}

/// Fresh goroutines recurse 64 deep with 1 KiB frames: their stacks are copied to bigger
/// ones while the calls are in flight. Every return is seen, with its own result
/// (deep(n) returns n(n+1)/2), deeper than a thread's call stack keeps.
#[test]
fn returns_survive_goroutine_stacks_that_move() {
    require_root!();
    let go = common::private_copy(&common::build_go_fixture());
    let goroutines = 30;
    let (events, lines, stderr) =
        traced_run(&go, "deep", goroutines, &["main.deep", "-a", "0", "--ret"]);
    assert_eq!(events.len(), goroutines as usize * 65, "{stderr}");
    let mut per_depth = [0u32; 65];
    for event in &events {
        let n = event.number("arg0");
        assert_eq!(event.number("ret"), n * (n + 1) / 2, "{event:?}");
        per_depth[n as usize] += 1;
    }
    assert!(per_depth.iter().all(|&c| c == goroutines), "{per_depth:?}");
    assert!(
        !lines.iter().any(|l| l.contains("entry=unseen")),
        "{lines:?}"
    );
    assert!(!stderr.contains("never seen returning"), "{stderr}");
}

#[test]
fn stripped_go_binaries_are_traced_by_name() {
    require_root!();
    let stripped = common::private_copy(&common::build_go_fixture_with(&["-ldflags=-s -w"]));
    let symtab = Command::new("nm").arg(&stripped).output().unwrap();
    assert!(
        String::from_utf8_lossy(&symtab.stderr).contains("no symbols"),
        "the copy is stripped"
    );
    let listed = Command::new(common::tool())
        .args(["uprobe", "--list", path(&stripped), "main.*"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.lines().any(|l| l.ends_with("  main.add")),
        "{listed}"
    );
    let (events, lines, _) = traced_run(&stripped, "add", 50, &["main.add", "-a", "0,1", "--ret"]);
    let got: Vec<(i64, i64)> = events
        .iter()
        .map(|e| (e.number("arg0"), e.number("ret")))
        .collect();
    assert_eq!(
        got,
        (0..50).map(|i| (i, i + 1000)).collect::<Vec<_>>(),
        "{lines:?}"
    );
}

/// Debian's `go` command is stripped: its functions come from `.gopclntab`. `go version`
/// runs `main.invoke` once; `main.main` ends in os.Exit, so it never returns, which the
/// summary says rather than hiding. A private copy of the command (found on $PATH), so
/// the fixture builds of tests running meanwhile are not counted.
#[test]
fn the_go_command_is_traced_by_name() {
    require_root!();
    let which = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v go)\""])
        .output()
        .unwrap();
    let installed = String::from_utf8(which.stdout).unwrap();
    let go = common::private_copy(Path::new(installed.trim()));
    let version = || {
        let out = Command::new(&go).arg("version").output().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("go version go1."));
    };
    let tracer = Tracer::start(&["uprobe", path(&go), "main.invoke", "--latency", "-q"]);
    version();
    let lines = tracer.interrupt().ok();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("main.invoke latency: count=1 ")),
        "{lines:?}"
    );

    let tracer = Tracer::start(&["uprobe", path(&go), "main.main", "--latency", "-q"]);
    version();
    let finished = tracer.interrupt();
    assert!(
        finished
            .stderr
            .contains(", 1 calls not returned from when tracing ended"),
        "{}",
        finished.stderr
    );
}

#[test]
fn uretprobes_are_never_placed_in_go_programs() {
    require_root!();
    let go = common::build_go_fixture();
    let out = Command::new(common::tool())
        .args(["uprobe", path(&go), "main.add", "--ret", "--uretprobes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is a Go program") && stderr.contains("goroutine stacks"),
        "{stderr}"
    );
}
