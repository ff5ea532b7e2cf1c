//! Privileged: values named from the source, read through each function's debug info
//! (fixtures built `-g -O2`, so locations are real): a struct field two pointers deep,
//! `char *` as text, a negative `int`, an enum by name, a kernel filter on a field, a
//! C++ method's `this->field`; an always-inlined function counted across its call
//! sites; a source line in a loop hit exactly N times; signatures; errors that say what
//! is missing.

#[macro_use]
mod common;

use std::{path::Path, process::Command};

use common::{build_c_fixture, build_cpp_fixture, parse_events, private_copy, tool};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn fixture() -> std::path::PathBuf {
    private_copy(&build_c_fixture("debug_fixture", &["-O2", "-g"]))
}

/// `ebpf-tool ARGS -- FIXTURE N`: its stdout lines.
fn run(args: &[&str], fixture: &Path, n: u32) -> Vec<String> {
    let out = Command::new(tool())
        .args(args)
        .arg("--")
        .arg(fixture)
        .arg(n.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn fields_strings_signed_values_and_enums_by_name() {
    require_root!();
    let fixture = fixture();
    let lines = run(
        &[
            "uprobe",
            path(&fixture),
            "fx_handle",
            "-a",
            "r->len,r->hdr->kind,r->name,flags,r->color,r->hdr->weight",
        ],
        &fixture,
        6,
    );
    let events = parse_events(&lines);
    assert_eq!(events.len(), 6, "{lines:?}");
    let colors = ["RED", "GREEN", "BLUE"];
    for (i, event) in events.iter().enumerate() {
        let i = i as i64;
        assert_eq!(event.number("r->len"), 100 + i);
        assert_eq!(event.number("r->hdr->kind"), -i);
        assert_eq!(
            event.field("r->name"),
            Some(format!("\"req-{i}\"").as_str())
        );
        assert_eq!(event.number("flags"), -3 * i);
        assert_eq!(event.field("r->color"), Some(colors[i as usize % 3]));
        let weight: f64 = event.field("r->hdr->weight").unwrap().parse().unwrap();
        assert_eq!(weight, i as f64 * 0.5, "a double read from memory");
    }

    // The same field as a kernel filter.
    let lines = run(
        &[
            "uprobe",
            path(&fixture),
            "fx_handle",
            "-a",
            "r->len",
            "--filter",
            "r->len >= 103",
        ],
        &fixture,
        6,
    );
    let lens: Vec<i64> = parse_events(&lines)
        .iter()
        .map(|e| e.number("r->len"))
        .collect();
    assert_eq!(lens, [103, 104, 105]);
}

#[test]
fn a_cpp_methods_this_fields() {
    require_root!();
    let fixture = private_copy(&build_cpp_fixture("debug_cpp", &["-O2", "-g"]));
    let lines = run(
        &[
            "uprobe",
            path(&fixture),
            "shop::Order::bill",
            "-a",
            "this->id,this->total,discount",
        ],
        &fixture,
        7,
    );
    let events = parse_events(&lines);
    assert_eq!(events.len(), 7, "{lines:?}");
    for (i, event) in events.iter().enumerate() {
        let i = i as i64;
        assert_eq!(event.number("this->id"), i);
        assert_eq!(event.number("this->total"), 1000 + i);
        assert_eq!(event.number("discount"), i % 5);
    }
}

fn count_of(lines: &[String], label: &str) -> Option<u64> {
    lines.iter().find_map(|l| {
        let tokens: Vec<&str> = l.split_whitespace().collect();
        (tokens.len() == 2 && tokens[0] == label).then(|| tokens[1].parse().unwrap())
    })
}

#[test]
fn an_inlined_function_and_a_source_line_are_counted_exactly() {
    require_root!();
    let fixture = fixture();
    // fx_inline: N in fx_site_a, N/2 in fx_site_b, N in main; no out-of-line copy.
    let lines = run(
        &["uprobe", path(&fixture), "fx_inline", "--count"],
        &fixture,
        10,
    );
    assert_eq!(count_of(&lines, "fx_inline"), Some(25), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("fx_inline: no out-of-line body and 3 inlined copies")),
        "{lines:?}"
    );

    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debug_fixture.c");
    let line = std::fs::read_to_string(source)
        .unwrap()
        .lines()
        .position(|l| l.contains("loop_counter += i; /* LOOP_LINE */"))
        .unwrap()
        + 1;
    let label = format!("debug_fixture.c:{line}");
    let lines = run(&["uprobe", path(&fixture), &label, "--count"], &fixture, 13);
    assert_eq!(count_of(&lines, &label), Some(13), "{lines:?}");
}

#[test]
fn signatures_and_errors_that_say_what_is_missing() {
    require_root!();
    let fixture = fixture();
    let out = Command::new(tool())
        .args(["uprobe", "--list", "-v", path(&fixture), "fx_handle"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("long int fx_handle(struct req *r, int flags)"),
        "{listed}"
    );
    let out = Command::new(tool())
        .args([
            "uprobe",
            "--list",
            "-v",
            "--fields",
            path(&fixture),
            "fx_handle",
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("r: struct req { unsigned int len @0, struct hdr *hdr @8, "),
        "{listed}"
    );
    // A double passed in an SSE register cannot be read: said, not guessed.
    let out = Command::new(tool())
        .args(["uprobe", path(&fixture), "fx_weigh", "-a", "w", "-d", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("SSE register"),
        "{stderr}"
    );
    for (args, message) in [
        (
            vec!["-a", "r->nope"],
            "struct req has no field 'nope' (it has: len, hdr, name, color)",
        ),
        (
            vec!["-a", "q"],
            "fx_handle has no parameter 'q' (it has: r, flags)",
        ),
        (vec!["-a", "r->hdr"], "-a 'r->hdr'"),
    ] {
        let out = Command::new(tool())
            .args(["uprobe", path(&fixture), "fx_handle", "-d", "1"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if message.starts_with("-a") {
            // A pointer is shown as hex: no error.
            assert!(out.status.success(), "{args:?}: {stderr}");
            continue;
        }
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let out = Command::new(tool())
        .args(["uprobe", "/bin/true", "main", "-a", "argc", "-d", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no debug info for") || stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
fn separate_debug_files_in_a_directory_of_ones_own() {
    require_root!();
    let built = fixture();
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("debuginfo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("flat")).unwrap();
    let stripped = dir.join("debug_fixture_stripped");
    let debug = dir.join("flat/debug_fixture_stripped.debug");
    let objcopy = |args: &[&std::ffi::OsStr]| {
        let status = Command::new("objcopy").args(args).status().unwrap();
        assert!(status.success(), "objcopy {args:?}");
    };
    objcopy(&[
        "--only-keep-debug".as_ref(),
        built.as_os_str(),
        debug.as_os_str(),
    ]);
    std::fs::copy(&built, &stripped).unwrap();
    objcopy(&["--strip-debug".as_ref(), stripped.as_os_str()]);
    // The debuglink names the file; its directory is what --debuginfo says.
    let link = format!("--add-gnu-debuglink={}", debug.display());
    objcopy(&[link.as_ref(), stripped.as_os_str()]);
    let args = ["uprobe", path(&stripped), "fx_handle", "-a", "r->len"];
    let out = Command::new(tool())
        .args(args)
        .args(["-d", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no debug info for"),
        "{out:?}"
    );
    let mut with_dir: Vec<&str> = args.to_vec();
    let flat = dir.join("flat");
    with_dir.extend(["--debuginfo", path(&flat)]);
    let events = parse_events(&run(&with_dir, &stripped, 3));
    let lens: Vec<i64> = events.iter().map(|e| e.number("r->len")).collect();
    assert_eq!(lens, [100, 101, 102]);
}

#[test]
fn a_rust_str_argument_is_shown_as_its_text() {
    require_root!();
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rust-str-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join("rust_str");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rust_str.rs");
    let status = Command::new("rustc")
        .args(["-C", "opt-level=2", "-g", "--edition", "2021", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success(), "rustc");
    let lines = run(
        &[
            "uprobe",
            path(&binary),
            "fx_greet",
            "-a",
            "name,times,name.length",
        ],
        &binary,
        12,
    );
    let events = parse_events(&lines);
    assert_eq!(events.len(), 12, "{lines:?}");
    for (i, event) in events.iter().enumerate() {
        let text = format!("user-{i}");
        assert_eq!(
            event.field("name"),
            Some(format!("\"{text}\"").as_str()),
            "{event:?}"
        );
        assert_eq!(event.number("times"), i as i64);
        assert_eq!(event.number("name.length"), text.len() as i64);
    }
}

#[test]
fn unoptimized_code_is_read_past_its_prologue_never_at_a_slot_not_yet_written() {
    require_root!();
    // -O0 keeps parameters in stack slots the prologue fills: at the entry they hold
    // garbage. Measured before: r->len=1410924544 flags=32765 for the first call.
    let fixture = private_copy(&build_c_fixture("debug_fixture", &["-O0", "-g"]));
    // Named at the function: the probe moves past the prologue, as perf and bpftrace do.
    let lines = run(
        &["uprobe", path(&fixture), "fx_handle", "-a", "r->len,flags"],
        &fixture,
        4,
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("fx_handle: probed past its prologue")),
        "{lines:?}"
    );
    let got: Vec<(i64, i64)> = parse_events(&lines)
        .iter()
        .map(|e| (e.number("r->len"), e.number("flags")))
        .collect();
    assert_eq!(
        got,
        [(100, 0), (101, -3), (102, -6), (103, -9)],
        "{lines:?}"
    );
    // With --ret the probe must stay at the entry: refused, with why.
    let out = Command::new(tool())
        .args([
            "uprobe",
            path(&fixture),
            "fx_handle",
            "-a",
            "r->len,flags",
            "--ret",
            "-d",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has not written yet"), "{stderr}");

    // A line inside the function reads them where they are there (the CFA from .eh_frame).
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debug_fixture.c");
    let line = std::fs::read_to_string(source)
        .unwrap()
        .lines()
        .position(|l| l.contains("return (long)r->len + r->hdr->kind"))
        .unwrap()
        + 1;
    let label = format!("debug_fixture.c:{line}");
    let lines = run(
        &[
            "uprobe",
            path(&fixture),
            &label,
            "-a",
            "r->len,flags,r->name",
        ],
        &fixture,
        5,
    );
    let events = parse_events(&lines);
    assert_eq!(events.len(), 5, "{lines:?}");
    for (i, event) in events.iter().enumerate() {
        let i = i as i64;
        assert_eq!(event.number("r->len"), 100 + i, "{event:?}");
        assert_eq!(event.number("flags"), -3 * i, "{event:?}");
        assert_eq!(
            event.field("r->name"),
            Some(format!("\"req-{i}\"").as_str())
        );
    }
}

#[test]
fn split_dwarf_in_dwo_files_and_a_dwp_package() {
    require_root!();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("split-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debug_fixture.c");
    let binary = dir.join("split");
    let status = Command::new("cc")
        .args(["-O2", "-g", "-gsplit-dwarf", "-o"])
        .arg(&binary)
        .arg(&source)
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "cc -gsplit-dwarf");
    let dwo: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dwo"))
        .collect();
    assert_eq!(dwo.len(), 1, "one .dwo beside the binary: {dwo:?}");
    let check = |what: &str| {
        let lines = run(
            &["uprobe", path(&binary), "fx_handle", "-a", "r->len,flags"],
            &binary,
            4,
        );
        let got: Vec<(i64, i64)> = parse_events(&lines)
            .iter()
            .map(|e| (e.number("r->len"), e.number("flags")))
            .collect();
        assert_eq!(
            got,
            [(100, 0), (101, -3), (102, -6), (103, -9)],
            "{what}: {lines:?}"
        );
    };
    check(".dwo");

    // Packaged: the .dwo gone, `<binary>.dwp` in its place (llvm-dwp; GNU dwp crashes on
    // DWARF 5 here).
    // Whichever LLVM set-up installed (llvm-dwp-N).
    let mut packers: Vec<String> = std::fs::read_dir("/usr/bin")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("llvm-dwp"))
                .collect()
        })
        .unwrap_or_default();
    packers.sort();
    let Some(packer) = packers.pop() else {
        assert!(
            !common::privileged("llvm-dwp"),
            "no llvm-dwp (scripts/setup.sh installs LLVM)"
        );
        return;
    };
    let package = dir.join("split.dwp");
    let status = Command::new(&packer)
        .arg("-e")
        .arg(&binary)
        .arg("-o")
        .arg(&package)
        .status()
        .unwrap();
    assert!(status.success(), "{packer}");
    std::fs::remove_file(&dwo[0]).unwrap();
    check(".dwp");
}

#[test]
fn dwarf_4_and_compressed_debug_sections() {
    require_root!();
    for flags in [
        &["-O2", "-g", "-gdwarf-4"][..],
        &["-O2", "-g", "-gz=zlib"][..],
    ] {
        let fixture = private_copy(&build_c_fixture("debug_fixture", flags));
        let lines = run(
            &[
                "uprobe",
                path(&fixture),
                "fx_handle",
                "-a",
                "r->len,r->hdr->kind",
            ],
            &fixture,
            3,
        );
        let got: Vec<(i64, i64)> = parse_events(&lines)
            .iter()
            .map(|e| (e.number("r->len"), e.number("r->hdr->kind")))
            .collect();
        assert_eq!(
            got,
            [(100, 0), (101, -1), (102, -2)],
            "{flags:?}: {lines:?}"
        );
    }
}
