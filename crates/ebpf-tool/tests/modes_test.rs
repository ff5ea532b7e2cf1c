//! Privileged tests of what users trace for: typed and string arguments, filters,
//! in-kernel counts and histograms, stacks and flame graphs, JSON.
//! Each runs a fixture whose behaviour is known exactly and checks the exact outcome.

#[macro_use]
mod common;

use std::{path::Path, process::Command};

use common::{Tracer, parse_events, paused_fixture, release, run_fixture, target_fixture};
use serde_json::Value;

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The task's ids and comm are read through its BTF pointer where the kernel's BTF says
/// where they are, else through helpers: both give the same pid, tid, comm and filters.
#[test]
fn task_fields_read_by_either_path_agree() {
    require_root!();
    let fixture = target_fixture();
    let comm = common::comm_of(&fixture);
    for setting in ["on", "off"] {
        let tracer = Tracer::start_with_env(
            &[
                "uprobe",
                path(&fixture),
                "fixture_target",
                "--comm",
                &comm,
                "-a",
                "0:i64",
            ],
            &[("EBPF_TOOL_TASK_FIELDS", setting)],
        );
        let (pid, _) = run_fixture(&fixture, "calls", 7);
        let lines = tracer.interrupt().ok();
        let events = parse_events(&lines);
        assert_eq!(events.len(), 7, "{setting}: {lines:?}");
        for (i, event) in events.iter().enumerate() {
            assert_eq!((event.pid, event.tid), (pid, pid), "{setting}: {event:?}");
            assert_eq!(event.comm, comm, "{setting}");
            assert_eq!(event.number("arg0"), i as i64 * 10 + 1, "{setting}");
        }
    }
}

#[test]
fn string_arguments_are_read_and_truncation_is_marked() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_strings",
        "-a",
        "0:str,1:str",
        "-a",
        "1:hex",
    ]);
    let (pid, _) = run_fixture(&fixture, "strings", 3);
    let lines = tracer.interrupt().ok();
    let events: Vec<_> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    assert_eq!(events.len(), 3);
    let long = format!("\"{}\"...", "x".repeat(127));
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event.field("arg0"),
            Some(format!("\"fixture-{i}\"").as_str())
        );
        assert_eq!(event.field("arg1"), Some(long.as_str()));
    }
    // The same argument also shown as a pointer: the line carries both forms, in order.
    assert!(
        lines.iter().filter(|l| l.contains("... arg1=0x7")).count() == 3,
        "{lines:?}"
    );
}

#[test]
fn count_is_exact_per_function_and_per_process() {
    require_root!();
    let fixture = target_fixture();
    let traced = paused_fixture(&fixture, "calls", 37);
    let other = paused_fixture(&fixture, "calls", 11);
    let pid = traced.id().to_string();
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_target",
        "--count",
        "-p",
        &pid,
    ]);
    release(traced);
    release(other);
    let lines = tracer.interrupt().ok();
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["fixture_target", "37"])),
        "{lines:?}"
    );
    assert!(
        parse_events(&lines).is_empty(),
        "--count prints no per-call lines"
    );

    // Grouped by pid, without -p: one row per process, each exact.
    let a = paused_fixture(&fixture, "calls", 13);
    let b = paused_fixture(&fixture, "calls", 29);
    let (pa, pb) = (a.id().to_string(), b.id().to_string());
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_target",
        "--count",
        "--by",
        "pid",
    ]);
    release(a);
    release(b);
    let lines = tracer.interrupt().ok();
    assert!(
        lines.iter().any(|l| l
            .split_whitespace()
            .eq(["fixture_target", pb.as_str(), "29"])),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l
            .split_whitespace()
            .eq(["fixture_target", pa.as_str(), "13"])),
        "{lines:?}"
    );
}

#[test]
fn argument_filter_runs_in_the_kernel() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_target",
        "--count",
        "--filter",
        "arg0 >= 100",
    ]);
    run_fixture(&fixture, "calls", 57); // arguments 1, 11, ..., 561: 47 are >= 100
    let lines = tracer.interrupt().ok();
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["fixture_target", "47"])),
        "{lines:?}"
    );
}

#[test]
fn typed_filters_compare_the_typed_value() {
    require_root!();
    // fixture_int(int x) with x = -20..19: the register holds an int, upper bits zero.
    let fixture = target_fixture();
    for (filter, expected) in [
        ("arg0:i32 < 0", "20"),
        ("arg0:i32 >= -5", "25"),
        ("arg0:i32 == -1", "1"),
        ("arg0:u8 == 255", "1"),
        ("arg0:i8 < 0", "20"),
    ] {
        let tracer = Tracer::start(&[
            "uprobe",
            path(&fixture),
            "fixture_int",
            "--count",
            "--filter",
            filter,
        ]);
        run_fixture(&fixture, "ints", 40);
        let lines = tracer.interrupt().ok();
        assert!(
            lines
                .iter()
                .any(|l| l.split_whitespace().eq(["fixture_int", expected])),
            "{filter}: {lines:?}"
        );
    }
}

#[test]
fn an_unreadable_string_is_marked_never_shown_empty() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&["uprobe", path(&fixture), "fixture_pointer", "-a", "0:str"]);
    let (pid, _) = run_fixture(&fixture, "pointers", 4);
    let finished = tracer.interrupt();
    let stderr = finished.stderr.clone();
    let lines = finished.ok();
    let values: Vec<String> = parse_events(&lines)
        .into_iter()
        .filter(|e| e.pid == pid)
        .map(|e| e.field("arg0").unwrap().to_owned())
        .collect();
    assert_eq!(
        values,
        [
            "(unreadable)",
            "(unreadable)",
            "(unreadable)",
            "(unreadable)",
            "\"\"",
            "\"\"",
            "\"\"",
            "\"\""
        ]
    );
    assert!(stderr.contains("4 values unreadable"), "{stderr}");

    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_pointer",
        "-a",
        "0:str",
        "--json",
    ]);
    let (pid, _) = run_fixture(&fixture, "pointers", 1);
    let lines = tracer.interrupt().ok();
    let calls: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "call" && v["pid"] == pid)
        .collect();
    assert_eq!(calls.len(), 2, "{lines:?}");
    assert_eq!(calls[0]["args"]["arg0"], Value::Null);
    assert_eq!(calls[0]["unreadable"], serde_json::json!(["arg0"]));
    assert_eq!(calls[1]["args"]["arg0"], "");
    assert!(calls[1].get("unreadable").is_none());
}

#[test]
fn task_filters_select_by_comm_tid_and_uid() {
    require_root!();
    let fixture = target_fixture();
    let comm = common::comm_of(&fixture);
    let cases: [(&[&str], Option<&str>); 3] = [
        (&["--comm", &comm], Some("9")),
        (&["--comm", "no-such-comm"], None),
        (&["--uid", "65534"], None), // the fixture runs as root
    ];
    for (filter, expected) in cases {
        let mut args = vec!["uprobe", path(&fixture), "fixture_target", "--count"];
        args.extend_from_slice(filter);
        let tracer = Tracer::start(&args);
        run_fixture(&fixture, "calls", 9);
        let lines = tracer.interrupt().ok();
        let row = lines.iter().find(|l| l.starts_with("fixture_target "));
        assert_eq!(
            row.and_then(|l| l.split_whitespace().nth(1)),
            expected,
            "{filter:?}: {lines:?}"
        );
    }
    // --tid: the fixture is single-threaded, so its main thread's id is its pid.
    let child = paused_fixture(&fixture, "calls", 4);
    let tid = child.id().to_string();
    let tracer = Tracer::start(&["uprobe", path(&fixture), "fixture_target", "--tid", &tid]);
    release(child);
    let lines = tracer.interrupt().ok();
    assert_eq!(parse_events(&lines).len(), 4, "{lines:?}");
}

#[test]
fn hist_of_an_argument_is_exact() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_target",
        "--hist",
        "0",
        "--json",
    ]);
    run_fixture(&fixture, "calls", 57);
    let lines = tracer.interrupt().ok();
    let hist: Value = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).expect("every stdout line is JSON"))
        .find(|v| v["type"] == "hist")
        .expect("a hist line");
    let mut expected = vec![0u64; 65];
    for i in 0..57u64 {
        let x = i * 10 + 1;
        expected[(64 - x.leading_zeros()) as usize] += 1;
    }
    let buckets: Vec<u64> = hist["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(buckets, expected);
    assert_eq!(hist["count"], 57);
    assert_eq!(hist["min"], 1);
    assert_eq!(hist["max"], 561);
    assert_eq!(hist["sum"], (0..57u64).map(|i| i * 10 + 1).sum::<u64>());
}

#[test]
fn json_carries_the_same_values_as_text() {
    require_root!();
    let fixture = target_fixture();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "uprobe",
            path(&fixture),
            "fixture_target",
            "--ret",
            "-a",
            "0",
        ];
        args.extend_from_slice(extra);
        let tracer = Tracer::start(&args);
        let (pid, _) = run_fixture(&fixture, "calls", 20);
        (pid, tracer.interrupt().ok())
    };
    let (text_pid, text) = run(&[]);
    let text_values: Vec<(i64, i64)> = parse_events(&text)
        .iter()
        .filter(|e| e.pid == text_pid)
        .map(|e| (e.number("arg0"), e.number("ret")))
        .collect();

    let (json_pid, json) = run(&["--json"]);
    let objects: Vec<Value> = json
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let json_values: Vec<(i64, i64)> = objects
        .iter()
        .filter(|o| o["type"] == "call" && o["pid"] == json_pid)
        .map(|o| {
            (
                o["args"]["arg0"].as_i64().unwrap(),
                o["ret"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(json_values.len(), 20);
    assert_eq!(json_values, text_values);
    let call = objects.iter().find(|o| o["type"] == "call").unwrap();
    assert_eq!(call["func"], "fixture_target");
    assert_eq!(call["comm"], common::comm_of(&fixture));
    let summary = objects.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["lost"], 0);
    assert_eq!(summary["printed"], summary["seen"]);
}

#[test]
fn stacks_show_the_call_chain_and_make_a_flame_graph() {
    require_root!();
    let fixture = target_fixture();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stacks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let folded = dir.join("out.folded");
    let svg = dir.join("out.svg");
    let _ = std::fs::remove_file(&folded);
    let _ = std::fs::remove_file(&svg);
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_target",
        "--stacks",
        "--folded",
        path(&folded),
        "--flamegraph",
        path(&svg),
    ]);
    run_fixture(&fixture, "chain", 6); // exits at once: symbolized from the file
    let lines = tracer.interrupt().ok();
    let comm = common::comm_of(&fixture);
    let text = lines.join("\n");
    // Frames name their function, then (with debug info) its source line.
    let functions: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("    "))
        .map(|frame| frame.split(" (").next().unwrap())
        .collect();
    let chain = [
        "fixture_target",
        "fixture_chain_b",
        "fixture_chain_a",
        "main",
    ];
    assert!(functions.windows(4).any(|w| w == chain), "{text}");
    assert!(text.contains("    fixture_target (target.c:"), "{text}");
    assert!(text.contains(&format!("[{comm}] 6 calls")), "{text}");

    let folded = std::fs::read_to_string(&folded).unwrap();
    let line = folded
        .lines()
        .find(|l| l.starts_with(&format!("{comm};")))
        .expect("a folded stack");
    assert!(
        line.ends_with(";main;fixture_chain_a;fixture_chain_b;fixture_target 6"),
        "{line}"
    );

    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("fixture_target") && svg.contains("fixture_chain_a"));
}

#[test]
fn output_files_are_never_clobbered() {
    let fixture = target_fixture();
    let existing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("existing.svg");
    std::fs::write(&existing, "keep me").unwrap();
    let out = Command::new(common::tool())
        .args([
            "uprobe",
            path(&fixture),
            "fixture_target",
            "--stacks",
            "--flamegraph",
            path(&existing),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
}

#[test]
fn interval_prints_cumulative_tables_while_running() {
    require_root!();
    let fixture = target_fixture();
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_target",
        "--count",
        "--interval",
        "1",
    ]);
    run_fixture(&fixture, "calls", 8);
    let mut tracer = tracer;
    // Two interval tables, both showing the 8 calls made before them.
    tracer.wait_for_line("(cumulative) ---", std::time::Duration::from_secs(5));
    std::thread::sleep(std::time::Duration::from_millis(1300));
    let lines = tracer.interrupt().ok();
    let headers = lines
        .iter()
        .filter(|l| l.ends_with("(cumulative) ---"))
        .count();
    assert!(headers >= 2, "{lines:?}");
    let rows = lines
        .iter()
        .filter(|l| l.split_whitespace().eq(["fixture_target", "8"]))
        .count();
    assert_eq!(
        rows,
        headers + 1,
        "every interval table and the final one: {lines:?}"
    );
}

#[test]
fn bad_mode_combinations_are_refused() {
    let fixture = target_fixture();
    let cases: [(&[&str], &str); 4] = [
        (&["--interval", "1"], "--interval needs something to report"),
        (&["--ret-sites"], "they need --ret or --latency"),
        (&["--comm", "a-name-longer-than-15"], "at most 15 bytes"),
        (
            &["-a", "0:str,1:str,2:str"],
            "at most 2 arguments can be read as strings",
        ),
    ];
    for (flags, message) in cases {
        let out = Command::new(common::tool())
            .args(["uprobe", path(&fixture), "fixture_target"])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "a usage error: {flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(message),
            "{flags:?}: {stderr}"
        );
    }
    // A return probe inside a function would pair with the wrong call.
    let out = Command::new(common::tool())
        .args(["uprobe", path(&fixture), "fixture_chain_a+1", "--ret"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("need probes at function entries"));
}
