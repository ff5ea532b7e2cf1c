//! Privileged: stacks of code built without frame pointers (`-O2 -fomit-frame-pointer`,
//! as distributions build), unwound with the binaries' own `.eh_frame`: a call chain
//! main -> a -> b -> leaf exact in folded output, a shared library in the chain, a
//! process that exits before the stacks are printed, and Debian's CPython, whose malloc
//! stacks reach the interpreter loop and its main.

#[macro_use]
mod common;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::{Tracer, build_c_fixture, private_copy};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The standard fixture built as distributions build: no frame pointers.
fn no_frame_pointers_fixture() -> PathBuf {
    private_copy(&build_c_fixture(
        "target",
        &["-O2", "-g", "-fomit-frame-pointer", "-pthread"],
    ))
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the fixture in `mode` with `n`, alive until `linger` after its calls.
fn run_lingering(fixture: &Path, mode: &str, n: u32, linger: Duration) {
    let mut child = Command::new(fixture)
        .args([mode, &n.to_string(), "wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(linger);
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// Traces `function` of `binary` with `--stacks` (plus `extra`) while `work` runs; the
/// folded lines.
fn folded_stacks(
    binary: &Path,
    function: &str,
    extra: &[&str],
    work: impl FnOnce(),
) -> Vec<String> {
    let folded = scratch("stacks").join(format!("{function}-{}.folded", extra.join("")));
    let _ = std::fs::remove_file(&folded);
    let mut args = vec![
        "uprobe",
        path(binary),
        function,
        "--stacks",
        "--folded",
        path(&folded),
    ];
    args.extend_from_slice(extra);
    let tracer = Tracer::start(&args);
    work();
    let finished = tracer.interrupt();
    assert!(finished.status.success(), "{}", finished.stderr);
    std::fs::read_to_string(&folded)
        .unwrap_or_else(|e| panic!("{e}: {:?} {}", finished.stdout, finished.stderr))
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_chain_without_frame_pointers_is_whole() {
    require_root!();
    let fixture = no_frame_pointers_fixture();
    let comm = common::comm_of(&fixture);
    let work = || run_lingering(&fixture, "chain", 7, Duration::from_millis(300));
    let lines = folded_stacks(&fixture, "fixture_target", &[], work);
    let ours: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with(&format!("{comm};")))
        .collect();
    assert_eq!(ours.len(), 1, "{lines:?}");
    assert!(
        ours[0].ends_with(";main;fixture_chain_a;fixture_chain_b;fixture_target 7"),
        "{ours:?}"
    );
    // Beyond main, into libc: the walk reaches the process's start.
    assert!(ours[0].contains("__libc_start"), "{ours:?}");

    // Measured before: the frame-pointer walk of the same calls loses frames.
    let work = || run_lingering(&fixture, "chain", 7, Duration::from_millis(300));
    let lines = folded_stacks(&fixture, "fixture_target", &["--unwind", "fp"], work);
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("fixture_chain_a;fixture_chain_b")),
        "frame pointers are not kept here, so the fp walk cannot be whole: {lines:?}"
    );
}

#[test]
fn a_shared_library_in_the_chain_and_a_process_that_exits_before_the_end() {
    require_root!();
    let (lib, program) =
        common::build_fixlib(&scratch("stacklib"), &["-O2", "-fomit-frame-pointer"]);
    // The process exits long before the run ends and its stacks are printed. (It lives
    // 100 ms past its calls: one that exits within about a millisecond of its last call
    // can be gone before its mappings are read, and only its frames in the traced file
    // are then named.)
    let work = || {
        let out = Command::new(&program).args(["5", "100"]).output().unwrap();
        assert!(out.status.success());
        std::thread::sleep(Duration::from_millis(500));
    };
    let lines = folded_stacks(&lib, "fixlib_leaf", &["--unwind", "dwarf"], work);
    let ours: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("uses_fixlib;"))
        .collect();
    assert_eq!(ours.len(), 1, "{lines:?}");
    assert!(
        ours[0].ends_with(";main;fixlib_work;fixlib_leaf 5"),
        "{ours:?}"
    );
}

#[test]
fn cpython_malloc_stacks_reach_the_interpreter_and_main() {
    require_root!();
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        assert!(
            !common::privileged("cpython"),
            "/usr/bin/python3 is missing (scripts/setup.sh installs it)"
        );
        return;
    }
    let libc = common::libc_path();
    let script = "import time\nx = [str(i) * 300 for i in range(20000)]\ntime.sleep(0.3)\n";
    let work = || {
        let status = Command::new(python).args(["-c", script]).status().unwrap();
        assert!(status.success());
    };
    let lines = folded_stacks(Path::new(libc), "malloc", &["--comm", "python3"], work);
    let deep = lines
        .iter()
        .filter(|l| l.contains("_PyEval_EvalFrameDefault") && l.contains("Py_BytesMain"))
        .count();
    assert!(
        deep > 0,
        "no malloc stack from the interpreter loop to main: {lines:#?}"
    );
    // Frames are functions or file+offset, never bare addresses or data objects.
    assert!(
        !lines.iter().any(|l| l.contains("PyList_Type")),
        "{lines:#?}"
    );
}
