//! Privileged: `-c CMD` traces a command from its first instruction (constructors seen),
//! only it and what it starts (another process calling the same function is not
//! counted), ends with it and exits with its status; `-p PID` ends when that process
//! exits; a library the command loads is resolved as its loader resolves it.

#[macro_use]
mod common;

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use common::{parse_events, paused_fixture, release, target_fixture, tool};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ebpf_tool(args: &[&str]) -> Output {
    Command::new(tool()).args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_constructor_before_main_is_seen() {
    require_root!();
    let fixture = target_fixture();
    let command = format!("{} exit 0", path(&fixture));
    let out = ebpf_tool(&[
        "uprobe",
        path(&fixture),
        "fixture_early",
        "-a",
        "0",
        "-c",
        &command,
    ]);
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    let events = parse_events(&lines);
    assert_eq!(events.len(), 1, "{lines:?}");
    assert_eq!(events[0].number("arg0"), 7);
}

#[test]
fn only_the_command_and_its_children_are_counted() {
    require_root!();
    let fixture = target_fixture();
    let f = path(&fixture);
    // Another process calls the same function meanwhile: not the command's.
    let other = paused_fixture(&fixture, "calls", 11);
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        release(other);
    });
    let command = format!("sh -c 'sleep 0.6; {f} calls 5; {f} calls 7'");
    let out = ebpf_tool(&["uprobe", f, "fixture_target", "--count", "-c", &command]);
    releaser.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["fixture_target", "12"])),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("12 calls counted"), "{out:?}");
}

#[test]
fn the_commands_exit_status_is_the_tools() {
    require_root!();
    let fixture = target_fixture();
    let out = ebpf_tool(&[
        "uprobe",
        path(&fixture),
        "fixture_target",
        "--count",
        "--",
        path(&fixture),
        "exit",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(said.contains("exit 3 exited with status 3."), "{said}");
    assert!(said.contains("fixture_target"), "{said}");
}

#[test]
fn a_missing_command_is_one_line() {
    require_root!();
    let fixture = target_fixture();
    for (command, message) in [
        (
            "/nonexistent/cmd",
            "error: cannot run '/nonexistent/cmd': No such file or directory",
        ),
        (
            "no-such-command-here",
            "error: cannot run 'no-such-command-here': not found on $PATH",
        ),
        ("'unbalanced", "does not split into words"),
    ] {
        let out = ebpf_tool(&["uprobe", path(&fixture), "fixture_target", "-c", command]);
        let stderr = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{command}: {out:?}");
        assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(message),
            "{stderr}"
        );
    }
}

#[test]
fn a_pid_run_ends_when_its_process_exits() {
    require_root!();
    let fixture = target_fixture();
    let traced = paused_fixture(&fixture, "calls", 9);
    let pid = traced.id().to_string();
    let mut tracer =
        common::Tracer::start(&["uprobe", path(&fixture), "fixture_target", "-p", &pid]);
    release(traced);
    let exited = Instant::now();
    let status = common::wait_timeout(&mut tracer.child, Duration::from_secs(10));
    let took = exited.elapsed();
    let finished = tracer.finish(Duration::from_secs(1));
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "still running {took:?} after its process"
    );
    eprintln!("ended {took:?} after its process exited");
    assert_eq!(
        parse_events(&finished.stdout).len(),
        9,
        "{:?}",
        finished.stdout
    );
    let said = finished.stdout.join("\n") + &finished.stderr;
    assert!(said.contains(&format!("Process {pid} exited.")), "{said}");
}

#[test]
fn a_library_the_command_loads_is_found_through_its_runpath() {
    require_root!();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fixlib-{}", std::process::id()));
    let (_, program) = common::build_fixlib(&dir, &["-O2"]);
    // By name alone, no cache knows it...
    let out = ebpf_tool(&["uprobe", "libfixlib", "fixlib_work", "--count", "-d", "1"]);
    assert!(!out.status.success(), "{out:?}");
    // ... but the command's loader will load it.
    let out = ebpf_tool(&[
        "uprobe",
        "libfixlib",
        "fixlib_work",
        "--count",
        "--",
        path(&program),
        "6",
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["fixlib_work", "6"])),
        "{stdout}"
    );
}
