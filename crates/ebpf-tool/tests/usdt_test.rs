//! Privileged: `ebpf-tool usdt` on a `sys/sdt.h` fixture (a probe at two sites with known
//! numeric, string and signed arguments; a probe behind a semaphore whose use the fixture
//! counts) and on real providers: CPython's `function__entry`, started first and attached
//! with `-p`, and libstdc++'s `throw`.

#[macro_use]
mod common;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::{Tracer, build_c_fixture_files, build_cpp_fixture, parse_events, private_copy, tool};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn usdt_fixture() -> PathBuf {
    private_copy(&build_c_fixture_files(
        &["usdt_fixture.c", "usdt_guarded.c"],
        &["-O2", "-g"],
    ))
}

/// Runs the fixture with `n`; what it printed (`enabled=K`).
fn run_usdt_fixture(fixture: &Path, n: u32) -> String {
    let out = Command::new(fixture).arg(n.to_string()).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Parses `usdt triggered!` lines as the uprobe lines are parsed.
fn usdt_events(lines: &[String], pid: u32) -> Vec<common::EventLine> {
    let as_uprobe: Vec<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("usdt triggered! "))
        .map(|rest| format!("uprobe triggered! {}", rest.replace(" probe=", " func=")))
        .collect();
    parse_events(&as_uprobe)
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect()
}

#[test]
fn a_probe_at_two_sites_gives_exact_arguments() {
    require_root!();
    let fixture = usdt_fixture();
    let tracer = Tracer::start(&["usdt", path(&fixture), "fixture:tick", "-a", "0,1:str,2"]);
    let child = Command::new(&fixture)
        .arg("9")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let lines = tracer.interrupt().ok();
    let events = usdt_events(&lines, pid);
    assert_eq!(events.len(), 9, "{lines:?}");
    for (i, event) in events.iter().enumerate() {
        let i = i as i64;
        assert_eq!(event.func, "fixture:tick");
        assert_eq!(event.number("arg0"), i);
        let word = if i % 2 == 0 { "\"even\"" } else { "\"odd\"" };
        assert_eq!(event.field("arg1"), Some(word), "{event:?}");
        assert_eq!(
            event.number("arg2"),
            -i,
            "signed, as the note says: {event:?}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| !l.contains("usdt triggered!") || l.ends_with("probe=fixture:tick"))
    );

    // Without -a: every argument, with the note's width and sign.
    let tracer = Tracer::start(&["usdt", path(&fixture), "tick"]);
    let child = Command::new(&fixture)
        .arg("3")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait_with_output().unwrap().status.success());
    let events = usdt_events(&tracer.interrupt().ok(), pid);
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].number("arg2"), -2);
    assert!(events[2].field("arg1").is_some());
}

#[test]
fn a_semaphore_is_raised_while_traced_in_new_and_running_processes() {
    require_root!();
    let fixture = usdt_fixture();
    assert_eq!(run_usdt_fixture(&fixture, 5), "enabled=0", "untraced");

    // A process started while traced.
    let tracer = Tracer::start(&["usdt", path(&fixture), "fixture:guarded", "--count"]);
    assert_eq!(run_usdt_fixture(&fixture, 6), "enabled=6");
    let lines = tracer.interrupt().ok();
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["fixture:guarded", "6"])),
        "{lines:?}"
    );

    // A process already running when the tracer attaches.
    let mut running = Command::new(&fixture)
        .args(["4", "wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = running.id().to_string();
    let tracer = Tracer::start(&["usdt", path(&fixture), "guarded", "--count", "-p", &pid]);
    let mut stdin = running.stdin.take().unwrap();
    stdin.write_all(b"go\ngo\n").unwrap();
    drop(stdin);
    let out = running.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "enabled=4");
    let lines = tracer.interrupt().ok();
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().eq(["fixture:guarded", "4"])),
        "{lines:?}"
    );

    // And it drops when the tracer is gone.
    assert_eq!(
        run_usdt_fixture(&fixture, 5),
        "enabled=0",
        "after the tracer exited"
    );
}

#[test]
fn list_and_errors() {
    require_root!();
    let fixture = usdt_fixture();
    let out = Command::new(tool())
        .args(["usdt", "--list", path(&fixture)])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(listed.contains("fixture:tick  2 sites  args: "), "{listed}");
    assert!(
        listed.contains("fixture:guarded  1 site  [semaphore]"),
        "{listed}"
    );

    for (args, message) in [
        (
            vec!["usdt", path(&fixture), "fixture:tik"],
            "did you mean 'fixture:tick'",
        ),
        (vec!["usdt", "/bin/true", "x:y"], "has no USDT probes"),
        (
            vec!["usdt", path(&fixture), "tick", "-a", "5"],
            "this USDT probe has 3 argument(s)",
        ),
        (
            vec!["usdt", path(&fixture), "tick", "--ret"],
            "do not apply",
        ),
    ] {
        let out = Command::new(tool()).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

const PYTHON: &str = "/usr/bin/python3";

/// A script calling `hello` exactly `n` times. CPython 3.11 fires `function__entry` only
/// while a profile or trace function is set (its probes moved under the tracing check),
/// so the script sets a no-op one around the calls.
fn python_script(n: u32, wait: bool) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("hello_{n}_{wait}.py"));
    let wait_line = if wait { "sys.stdin.readline()\n" } else { "" };
    std::fs::write(
        &file,
        format!(
            "import sys\n{wait_line}def hello(n):\n    return n + 1\n\
             sys.setprofile(lambda *a: None)\nfor i in range({n}):\n    hello(i)\nsys.setprofile(None)\n{wait_line}"
        ),
    )
    .unwrap();
    file
}

fn hello_count(lines: &[String]) -> Option<u64> {
    lines.iter().find_map(|l| {
        let tokens: Vec<&str> = l.split_whitespace().collect();
        (tokens.len() == 3 && tokens[1] == "\"hello\"").then(|| tokens[2].parse().unwrap())
    })
}

#[test]
fn cpython_function_entry_counts_one_function_exactly() {
    require_root!();
    if !Path::new(PYTHON).exists() {
        assert!(
            !common::privileged("cpython"),
            "{PYTHON} missing: scripts/setup.sh installs it"
        );
        return;
    }
    let probe = ["python:function__entry", "--count", "--by", "arg1:str"];
    // Tracer first.
    let script = python_script(13, false);
    let mut args = vec!["usdt", PYTHON];
    args.extend_from_slice(&probe);
    let tracer = Tracer::start(&args);
    let status = Command::new(PYTHON).arg(&script).status().unwrap();
    assert!(status.success());
    let lines = tracer.interrupt().ok();
    assert_eq!(hello_count(&lines), Some(13), "{lines:?}");

    // Interpreter first, tracer attached with -p.
    let script = python_script(21, true);
    let mut python = Command::new(PYTHON)
        .arg(&script)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = python.id().to_string();
    let mut args = vec!["usdt", PYTHON];
    args.extend_from_slice(&probe);
    args.extend_from_slice(&["-p", &pid]);
    let tracer = Tracer::start(&args);
    let mut stdin = python.stdin.take().unwrap();
    stdin.write_all(b"go\ngo\n").unwrap();
    drop(stdin);
    assert!(python.wait().unwrap().success());
    let lines = tracer.finish(Duration::from_secs(10)).ok();
    assert_eq!(hello_count(&lines), Some(21), "{lines:?}");
}

#[test]
fn libstdcxx_throw_is_counted_exactly() {
    require_root!();
    let throws = private_copy(&build_cpp_fixture("throws", &["-O2"]));
    // 10 calls, the even ones throw: 5 exceptions.
    let out = Command::new(tool())
        .args([
            "usdt",
            "libstdc++",
            "libstdcxx:throw",
            "--count",
            "--",
            path(&throws),
            "10",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l == "50 5"),
        "the program's own output: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().eq(["libstdcxx:throw", "5"])),
        "{stdout}"
    );
}
