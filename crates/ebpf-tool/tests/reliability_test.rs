//! Privileged: tracing never changes what the traced program does, leaves nothing behind
//! when the tool is killed, and two tracers of one function both see every call.

mod common;

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Tracer, comm_of, parse_events, privileged, run_fixture, target_fixture};

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn traced_program_output_and_status_are_unchanged_in_every_mode() {
    if !privileged("traced_program_output_and_status_are_unchanged_in_every_mode") {
        return;
    }
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
    if !privileged("sigkill_leaves_no_program_or_link_behind") {
        return;
    }
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
    if !privileged("two_tracers_of_one_function_both_see_every_call") {
        return;
    }
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
    if !privileged("hostile_names_and_strings_never_reach_the_terminal_raw") {
        return;
    }
    // A process can name itself anything: give the fixture a file name with an escape.
    let fixture = target_fixture();
    let hostile = fixture.with_file_name("\x1b[31mred\x07");
    std::fs::copy(&fixture, &hostile).unwrap();
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
fn go_programs_are_traced_without_harm_and_return_probes_are_refused() {
    if !privileged("go_programs_are_traced_without_harm_and_return_probes_are_refused") {
        return;
    }
    let go = common::private_copy(&common::build_go_fixture());
    let untraced = Command::new(&go).arg("2000").output().unwrap();
    assert!(untraced.status.success());

    // Entry probes (counts, arguments, stacks) are safe: exact counts, same output.
    let tracer = Tracer::start(&["uprobe", path(&go), "main.compute", "--count"]);
    let traced = Command::new(&go).arg("2000").output().unwrap();
    let lines = tracer.interrupt().ok();
    assert_eq!(traced.stdout, untraced.stdout);
    assert!(traced.status.success());
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["main.compute", "2000"])),
        "{lines:?}"
    );

    // Return probes would corrupt moved goroutine stacks: refused, with the reason.
    for flag in ["--ret", "--latency"] {
        let out = Command::new(common::tool())
            .args(["uprobe", path(&go), "main.compute", flag])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("is a Go program") && stderr.contains("goroutine stacks"),
            "{stderr}"
        );
    }
}

/// Uretprobes replace return addresses with the kernel's trampoline, which the C++
/// unwinder cannot step through: an exception leaving a function traced with --ret aborts
/// the program. Entry probes are harmless; return probes on C++ code come with a warning.
#[test]
fn cpp_exceptions_are_safe_under_entry_probes_and_warned_about_for_return_probes() {
    if !privileged("cpp_exceptions_are_safe_under_entry_probes_and_warned_about_for_return_probes")
    {
        return;
    }
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

    let warning = "a C++ exception that propagates out of a function traced with --ret";
    let run = |binary: &str, function: &str, flag: &str| {
        let out = Command::new(common::tool())
            .args(["uprobe", binary, function, flag, "-d", "1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(exe.to_str().unwrap(), "fixture_thrower", "--ret").contains(warning));
    assert!(!run(exe.to_str().unwrap(), "fixture_thrower", "--count").contains(warning));
    let c = target_fixture();
    assert!(!run(c.to_str().unwrap(), "fixture_target", "--ret").contains("uses unwinding"));
}
