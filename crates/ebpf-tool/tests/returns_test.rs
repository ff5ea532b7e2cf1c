//! Privileged tests of return probes: return values, returns paired with their entries
//! (recursion, longjmp, threads sharing call slots), latency.
//! Each runs a fixture whose behaviour is known exactly and checks the exact outcome,
//! twice: with returns seen by uretprobes, and at return instructions (`--ret-sites`).

#[macro_use]
mod common;

use std::path::Path;

use common::{Tracer, parse_events, run_fixture, target_fixture};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `uretprobes` and `return_sites` tests of one body taking the extra flags.
macro_rules! both_ways {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uretprobes() {
                super::$name(&[]);
            }

            #[test]
            fn return_sites() {
                super::$name(&["--ret-sites"]);
            }
        }
    };
}

both_ways!(ret_reports_each_return_value);
both_ways!(ret_pairs_recursive_calls);
both_ways!(ret_survives_calls_that_never_return);
both_ways!(ret_pairs_calls_of_concurrent_threads);
both_ways!(ret_pairs_calls_when_threads_share_one_call_slot);
both_ways!(latency_times_each_call_and_builds_a_histogram);

/// Starts a tracer with `args` and the mode's `extra` flags.
fn trace(args: &[&str], extra: &[&str]) -> Tracer {
    let all: Vec<&str> = args.iter().chain(extra).copied().collect();
    Tracer::start(&all)
}

fn ret_reports_each_return_value(extra: &[&str]) {
    require_root!();
    let fixture = target_fixture();
    let tracer = trace(
        &["uprobe", path(&fixture), "fixture_target", "--ret"],
        extra,
    );
    let (pid, _) = run_fixture(&fixture, "calls", 60);
    let lines = tracer.interrupt().ok();
    let events: Vec<_> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    assert_eq!(events.len(), 60, "{lines:?}");
    for (i, event) in events.iter().enumerate() {
        let x = i as i64 * 10 + 1;
        assert_eq!(event.number("arg0"), x);
        assert_eq!(event.number("ret"), 3 * x + 7, "{event:?}");
    }
}

fn ret_pairs_recursive_calls(extra: &[&str]) {
    require_root!();
    let fixture = target_fixture();
    let tracer = trace(
        &[
            "uprobe",
            path(&fixture),
            "fixture_recurse",
            "--ret",
            "--latency",
        ],
        extra,
    );
    let (pid, out) = run_fixture(&fixture, "recurse", 5);
    assert_eq!(out, "5");
    let lines = tracer.interrupt().ok();
    let events: Vec<_> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    // Innermost returns first: fixture_recurse(0) returns 0, ..., fixture_recurse(5) returns 5.
    let pairs: Vec<(i64, i64)> = events
        .iter()
        .map(|e| (e.number("arg0"), e.number("ret")))
        .collect();
    assert_eq!(pairs, (0..=5).map(|n| (n, n)).collect::<Vec<_>>());
    // An outer call lasts at least as long as the calls it contains.
    let latencies: Vec<i64> = events.iter().map(|e| e.number("latency_ns")).collect();
    assert!(latencies.windows(2).all(|w| w[0] <= w[1]), "{latencies:?}");
}

/// Half the calls leave through longjmp and never return. Their frames must not pile up
/// (there are more of them than a thread's stack holds): every call that does return is
/// still paired with its own arguments.
fn ret_survives_calls_that_never_return(extra: &[&str]) {
    require_root!();
    let fixture = target_fixture();
    let tracer = trace(
        &[
            "uprobe",
            path(&fixture),
            "fixture_jump",
            "--ret",
            "-a",
            "0:i64",
        ],
        extra,
    );
    let calls = 40; // 20 abandoned frames: more than MAX_DEPTH (8)
    let (pid, out) = run_fixture(&fixture, "jump", calls);
    let finished = tracer.interrupt();
    let summary = finished.stderr.clone();
    let lines = finished.ok();
    // Each abandoned call is dropped, and said, when the next call takes its place.
    assert!(
        summary.contains(", 20 calls never seen returning"),
        "{summary}"
    );
    let odd: Vec<i64> = (0..calls as i64).filter(|i| i % 2 == 1).collect();
    assert_eq!(out, odd.iter().map(|i| 2 * i).sum::<i64>().to_string());
    let pairs: Vec<(i64, i64)> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .map(|e| (e.number("arg0"), e.number("ret")))
        .collect();
    assert_eq!(
        pairs,
        odd.iter().map(|&i| (i, 2 * i)).collect::<Vec<_>>(),
        "{lines:?}"
    );
}

/// Four threads nest calls at the same time. Each return must pair with its own entry:
/// `fixture_nest(x, d)` returns `x + d` and `x` differs per thread and call, so a frame
/// popped from another thread's or another call's stack shows as a wrong sum.
fn nested_calls_pair_exactly_across_threads(call_slots: &str, extra: &[&str]) {
    const THREADS: i64 = 4;
    const CALLS: i64 = 400;
    let fixture = target_fixture();
    let mut args = vec![
        "uprobe",
        path(&fixture),
        "fixture_nest",
        "--ret",
        "-a",
        "0:i64",
        "-a",
        "1:i64",
    ];
    args.extend(extra);
    let tracer = Tracer::start_with_env(&args, &[("EBPF_TOOL_CALL_SLOTS", call_slots)]);
    let (pid, out) = run_fixture(&fixture, "threads", CALLS as u32);
    let lines = tracer.interrupt().ok();
    let expected_sum: i64 = (0..THREADS)
        .flat_map(|t| (0..CALLS).map(move |i| t * 1000 + i + 3))
        .sum();
    assert_eq!(out, expected_sum.to_string());
    let mut got: Vec<(i64, i64, i64)> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .map(|e| (e.number("arg0"), e.number("arg1"), e.number("ret")))
        .collect();
    got.sort_unstable();
    let expected: Vec<(i64, i64, i64)> = (0..THREADS)
        .flat_map(|t| (0..CALLS).map(move |i| t * 1000 + i))
        .flat_map(|x| (0..=3).map(move |d| (x, d, x + d)))
        .collect();
    assert_eq!(got.len(), expected.len(), "calls paired");
    let wrong: Vec<_> = got
        .iter()
        .zip(&expected)
        .filter(|(g, e)| g != e)
        .take(5)
        .collect();
    assert!(wrong.is_empty(), "mispaired (got, expected): {wrong:?}");
    assert!(
        !lines.iter().any(|l| l.contains("entry=unseen")),
        "every return found its entry"
    );
}

fn ret_pairs_calls_of_concurrent_threads(extra: &[&str]) {
    require_root!();
    nested_calls_pair_exactly_across_threads("4096", extra);
}

/// One call slot for all threads: while one holds it, the others keep their calls in the
/// hash-map fallback, and a thread may have frames in both.
fn ret_pairs_calls_when_threads_share_one_call_slot(extra: &[&str]) {
    require_root!();
    nested_calls_pair_exactly_across_threads("1", extra);
}

fn latency_times_each_call_and_builds_a_histogram(extra: &[&str]) {
    require_root!();
    let fixture = target_fixture();
    let tracer = trace(
        &["uprobe", path(&fixture), "fixture_sleep", "--latency"],
        extra,
    );
    let (pid, _) = run_fixture(&fixture, "sleep", 5);
    let lines = tracer.interrupt().ok();
    let events: Vec<_> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    assert_eq!(events.len(), 5);
    for event in &events {
        let ns = event.number("latency_ns");
        assert!(
            (20_000_000..60_000_000).contains(&ns),
            "20 ms sleep took {ns} ns"
        );
    }
    let summary = lines
        .iter()
        .find(|l| l.starts_with("fixture_sleep latency: count=5 "))
        .unwrap_or_else(|| panic!("no latency summary in {lines:?}"));
    assert!(
        summary.contains(" min=20.") || summary.contains(" min=2"),
        "{summary}"
    );
    // 20 ms lies in [2^24, 2^25) ns.
    assert!(
        lines
            .iter()
            .any(|l| l.trim_start().starts_with("16777216 -> 33554431 : 5 ")),
        "{lines:?}"
    );
}

/// `--latency -q` sees entries and returns in uprobe sessions where the kernel has them
/// (the session program is loaded while the run lasts), and in maps with
/// EBPF_TOOL_SESSIONS=off; both time the same five 20 ms sleeps.
#[test]
fn latency_histograms_are_the_same_in_sessions_and_in_maps() {
    require_root!();
    let fixture = target_fixture();
    // Off first: a session program the "on" run loaded might still be on its way out
    // of the kernel when the "off" run looks.
    for sessions in ["off", "on"] {
        let tracer = Tracer::start_with_env(
            &["uprobe", path(&fixture), "fixture_sleep", "--latency", "-q"],
            &[("EBPF_TOOL_SESSIONS", sessions)],
        );
        let loaded = session_program_loaded();
        run_fixture(&fixture, "sleep", 5);
        let lines = tracer.interrupt().ok();
        assert_eq!(
            loaded,
            sessions == "on" && kernel_has_uprobe_sessions(),
            "EBPF_TOOL_SESSIONS={sessions}: session program loaded = {loaded}"
        );
        let summary = lines
            .iter()
            .find(|l| l.starts_with("fixture_sleep latency: count=5 "))
            .unwrap_or_else(|| panic!("sessions {sessions}: no count=5 summary in {lines:?}"));
        assert!(summary.contains(" min=2"), "sessions {sessions}: {summary}");
        // 20 ms lies in [2^24, 2^25) ns.
        assert!(
            lines
                .iter()
                .any(|l| l.trim_start().starts_with("16777216 -> 33554431 : 5 ")),
            "sessions {sessions}: {lines:?}"
        );
    }
}

/// Whether a program named hello_session is loaded in the kernel now (bpftool asks it).
fn session_program_loaded() -> bool {
    let out = std::process::Command::new("bpftool")
        .args(["prog", "show", "name", "hello_session"])
        .output()
        .expect("bpftool (scripts/setup.sh installs it)");
    out.status.success() && !out.stdout.is_empty()
}

/// What `ebpf-tool features --json` (one JSON object per line) says of uprobe sessions.
fn kernel_has_uprobe_sessions() -> bool {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebpf-tool"))
        .args(["features", "--json"])
        .output()
        .expect("ebpf-tool features");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|f| f["name"] == "uprobe sessions" && f["available"] == true)
}
