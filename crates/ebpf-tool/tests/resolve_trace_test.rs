//! Privileged: every way of naming a target traces exactly the calls it should — demangled
//! C++ and Rust names, globs, FUNC+OFFSET, a stripped binary with MiniDebugInfo, a program
//! on $PATH, a symlink, a library name resolved in a process's maps (an IFUNC, too), and a
//! binary that exists only inside another mount namespace.

#[macro_use]
mod common;

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    Tracer, build_cpp_fixture, build_rust_fixture, parse_events, paused_fixture, private_copy,
    release, run_tool, target_fixture,
};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("trace-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The `COUNT` of the table row whose first columns are `label` (labels may hold spaces).
fn count_of(lines: &[String], label: &str) -> Option<u64> {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(label)?.trim().parse().ok())
}

/// Runs `program args` to completion.
fn run(program: &Path, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{} failed", program.display());
}

/// Counts calls of FUNCTION in BINARY while `workload` runs.
fn count(binary: &str, function: &str, extra: &[&str], workload: impl FnOnce()) -> Vec<String> {
    let mut args = vec!["uprobe", binary, function, "--count"];
    args.extend_from_slice(extra);
    let tracer = Tracer::start(&args);
    workload();
    tracer.interrupt().ok()
}

#[test]
fn cpp_demangled_names_and_overloads() {
    require_root!();
    let exe = private_copy(&build_cpp_fixture("geometry", &["-O2"]));
    let lines = count(path(&exe), "geo::Circle::area", &[], || run(&exe, &["25"]));
    assert_eq!(
        count_of(&lines, "geo::Circle::area() const"),
        Some(25),
        "{lines:?}"
    );

    let lines = count(path(&exe), "geo::scale", &[], || run(&exe, &["25"]));
    assert_eq!(
        count_of(&lines, "geo::scale(double)"),
        Some(25),
        "{lines:?}"
    );
    assert_eq!(count_of(&lines, "geo::scale(int)"), Some(50), "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains("matches 2 functions")),
        "{lines:?}"
    );
}

#[test]
fn rust_paths_in_both_manglings() {
    require_root!();
    for mangling in ["legacy", "v0"] {
        let exe = private_copy(&build_rust_fixture(mangling));
        let lines = count(path(&exe), "fixture::shapes::compute", &[], || {
            run(&exe, &["33"])
        });
        assert_eq!(
            count_of(&lines, "fixture::shapes::compute"),
            Some(33),
            "{mangling}: {lines:?}"
        );
    }
}

#[test]
fn globs_count_every_match() {
    require_root!();
    let exe = target_fixture();
    let lines = count(path(&exe), "fixture_chain_*", &[], || {
        run(&exe, &["chain", "12"])
    });
    assert_eq!(count_of(&lines, "fixture_chain_a"), Some(12), "{lines:?}");
    assert_eq!(count_of(&lines, "fixture_chain_b"), Some(12), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("'fixture_chain_*' matches 2 functions"))
    );
}

#[test]
fn function_plus_offset() {
    require_root!();
    let exe = target_fixture();
    // A non-leaf function built with frame pointers starts with `push %rbp` (0x55), one
    // byte long, so +1 is the next instruction.
    let symbols = ebpf_tool::symbols::Symbols::read(&exe).unwrap();
    let entry = symbols.resolve("fixture_chain_a").unwrap().functions[0].file_offset;
    let code = std::fs::read(&exe).unwrap();
    assert_eq!(
        code[entry as usize], 0x55,
        "fixture_chain_a does not start with push %rbp"
    );
    let lines = count(path(&exe), "fixture_chain_a+1", &[], || {
        run(&exe, &["chain", "17"])
    });
    assert_eq!(
        count_of(&lines, "fixture_chain_a+0x1"),
        Some(17),
        "{lines:?}"
    );
}

#[test]
fn stripped_binary_with_minidebuginfo() {
    require_root!();
    let dir = scratch("mini");
    let bin = dir.join("stripped-app");
    std::fs::copy(target_fixture(), &bin).unwrap();
    let mini = dir.join("mini.debug");
    let os = OsStr::new;
    run_tool(
        "objcopy",
        &[os("--only-keep-debug"), bin.as_os_str(), mini.as_os_str()],
    );
    run_tool("objcopy", &[os("--strip-debug"), mini.as_os_str()]);
    run_tool("strip", &[os("--strip-all"), bin.as_os_str()]);
    run_tool("xz", &[os("-f"), mini.as_os_str()]);
    let section = format!(".gnu_debugdata={}.xz", mini.display());
    run_tool(
        "objcopy",
        &[os("--add-section"), os(&section), bin.as_os_str()],
    );
    let lines = count(path(&bin), "fixture_target", &[], || {
        run(&bin, &["calls", "21"])
    });
    assert_eq!(count_of(&lines, "fixture_target"), Some(21), "{lines:?}");
}

#[test]
fn program_on_path_and_symlink() {
    require_root!();
    let dir = scratch("path");
    let name = format!("fxpath{}", std::process::id());
    let exe = dir.join(&name);
    std::fs::copy(target_fixture(), &exe).unwrap();
    let link = dir.join("link-to-fixture");
    std::os::unix::fs::symlink(&exe, &link).unwrap();

    // By bare name, found on $PATH (the tool's PATH, as a shell user would have it).
    let path_var = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut tracer = Command::new(common::tool())
        .args(["uprobe", &name, "fixture_target", "--count", "-d", "2"])
        .env("PATH", &path_var)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    run(&exe, &["calls", "9"]);
    let status = common::wait_timeout(&mut tracer, Duration::from_secs(10));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut tracer.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success());
    let lines: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_eq!(count_of(&lines, "fixture_target"), Some(9), "{lines:?}");

    // Through a symlink: the probe is on the file, so running the real path is seen.
    let lines = count(path(&link), "fixture_target", &[], || {
        run(&exe, &["calls", "6"])
    });
    assert_eq!(count_of(&lines, "fixture_target"), Some(6), "{lines:?}");
}

#[test]
fn library_name_in_a_process_and_an_ifunc() {
    require_root!();
    let exe = target_fixture();
    let child = paused_fixture(&exe, "strings", 8);
    let pid = child.id().to_string();
    // "libc" found in the process's own maps; strlen is a GNU IFUNC in glibc.
    let tracer = Tracer::start(&["uprobe", "-p", &pid, "libc", "strlen", "-a", "0:str"]);
    assert!(
        tracer.seen.iter().any(|l| l.contains("GNU IFUNC")),
        "{:?}",
        tracer.seen
    );
    release(child);
    let lines = tracer.interrupt().ok();
    let names: Vec<String> = parse_events(&lines)
        .into_iter()
        .filter_map(|e| e.field("arg0").map(str::to_owned))
        .filter(|a| a.starts_with("\"fixture-"))
        .collect();
    let expected: Vec<String> = (0..8).map(|i| format!("\"fixture-{i}\"")).collect();
    assert_eq!(names, expected, "{lines:?}");
}

#[test]
fn binary_only_inside_another_mount_namespace() {
    require_root!();
    let mount_point = scratch("mntns");
    let exe = target_fixture();
    let script = format!(
        "mount -t tmpfs none {mnt} && cp {exe} {mnt}/app && exec {mnt}/app calls 14 wait",
        mnt = mount_point.display(),
        exe = exe.display()
    );
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let inside = mount_point.join("app");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .as_deref()
        != Some(inside.as_path())
    {
        assert!(
            Instant::now() < deadline,
            "the namespaced fixture never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!inside.exists(), "the binary must not be visible from here");
    let pid = pid.to_string();
    let tracer = Tracer::start(&[
        "uprobe",
        "-p",
        &pid,
        path(&inside),
        "fixture_target",
        "--count",
    ]);
    release(child);
    let lines = tracer.interrupt().ok();
    assert_eq!(count_of(&lines, "fixture_target"), Some(14), "{lines:?}");
}
