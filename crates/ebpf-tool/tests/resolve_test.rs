//! The resolver on ELF files the tests build, without root: C, C++ and Rust fixtures,
//! stripped copies, a MiniDebugInfo copy (objcopy + xz), debuglink and build-id debug
//! files, and every FUNCTION form.

mod common;

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::Command,
};

use common::{build_cpp_fixture, build_rust_fixture, private_copy, run_tool, target_fixture};
use ebpf_tool::symbols::{SymbolError, SymbolSource, Symbols};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("resolve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Resolves `spec` in `path` to (label, file offset) pairs.
fn resolve(path: &Path, spec: &str) -> Vec<(String, u64)> {
    let symbols = Symbols::read(path).unwrap();
    let resolution = symbols
        .resolve(spec)
        .unwrap_or_else(|e| panic!("{spec}: {e}"));
    resolution
        .functions
        .iter()
        .map(|f| (f.label(), f.file_offset))
        .collect()
}

fn offset_of(path: &Path, name: &str) -> u64 {
    let found = resolve(path, name);
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].1
}

#[test]
fn non_pie_offsets_are_address_minus_the_segment_base() {
    let exe = common::build_c_fixture("target", &["-O2", "-no-pie", "-fno-pie"]);
    let symbols = Symbols::read(&exe).unwrap();
    let f = &symbols.resolve("fixture_target").unwrap().functions[0];
    // ld places non-PIE x86-64 code at 0x400000 + file offset.
    assert_eq!(f.address - f.file_offset, 0x400000, "{f:?}");
    assert_eq!(f.source, SymbolSource::Symtab);
}

#[test]
fn globs_offsets_and_addresses() {
    let exe = target_fixture();
    let chain = resolve(&exe, "fixture_chain_*");
    let names: Vec<&str> = chain.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"fixture_chain_a") && names.contains(&"fixture_chain_b"));

    // fixture_chain_b: push %rbp (1 byte), mov %rsp,%rbp (3), call: +1 and +4 start
    // instructions.
    let base = offset_of(&exe, "fixture_chain_b");
    assert_eq!(
        resolve(&exe, "fixture_chain_b+4"),
        vec![("fixture_chain_b+0x4".to_owned(), base + 4)]
    );
    assert_eq!(
        resolve(&exe, "fixture_chain_b+0x4"),
        resolve(&exe, "fixture_chain_b+4")
    );
    let symbols = Symbols::read(&exe).unwrap();
    match symbols.resolve("fixture_target+100000") {
        Err(SymbolError::OffsetOutside { offset: 100000, .. }) => {}
        other => panic!("{other:?}"),
    }
    // An address (as nm prints it) inside a function names that function.
    let address = symbols.resolve("fixture_chain_b").unwrap().functions[0].address;
    let by_address = resolve(&exe, &format!("{:#x}", address + 1));
    assert_eq!(
        by_address,
        vec![("fixture_chain_b+0x1".to_owned(), base + 1)]
    );
    // A zero-size FUNC (an assembly label) is not a function to probe.
    match symbols.resolve("fixture_label") {
        Err(SymbolError::NotAFunction { what, .. }) => {
            assert!(what.contains("zero-size"), "{what}")
        }
        other => panic!("{other:?}"),
    }
    // Glob that matches nothing, and a near miss, say so.
    assert!(matches!(
        symbols.resolve("nothing_*"),
        Err(SymbolError::NoMatch { .. })
    ));
    match symbols.resolve("fixture_targte") {
        Err(SymbolError::NotFound { suggestions, .. }) => {
            assert_eq!(suggestions[0], "fixture_target")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn cpp_names_resolve_demangled_with_or_without_parameters() {
    let exe = build_cpp_fixture("geometry", &["-O2"]);
    let area = resolve(&exe, "geo::Circle::area");
    assert_eq!(area.len(), 1);
    assert_eq!(area[0].0, "geo::Circle::area() const");
    assert_eq!(resolve(&exe, "geo::Circle::area() const"), area);
    assert_eq!(resolve(&exe, "_ZNK3geo6Circle4areaEv"), area);

    let symbols = Symbols::read(&exe).unwrap();
    let both = symbols.resolve("geo::scale").unwrap();
    assert_eq!(both.functions.len(), 2, "{both:?}");
    assert!(
        both.notes[0].contains("matches 2 functions"),
        "{:?}",
        both.notes
    );
    let one = resolve(&exe, "geo::scale(int)");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].0, "geo::scale(int)");
    assert_eq!(resolve(&exe, "geo::*").len(), 3);
}

#[test]
fn rust_paths_resolve_for_legacy_and_v0_mangling() {
    for mangling in ["legacy", "v0"] {
        let exe = build_rust_fixture(mangling);
        let found = resolve(&exe, "fixture::shapes::compute");
        assert_eq!(found.len(), 1, "{mangling}: {found:?}");
        assert_eq!(found[0].0, "fixture::shapes::compute");
        assert_eq!(resolve(&exe, "fixture::shapes::*"), found, "{mangling}");
    }
}

#[test]
fn stripped_binaries_use_minidebuginfo() {
    let dir = scratch("mini");
    let exe = private_copy(&target_fixture());
    let expected = offset_of(&exe, "fixture_target");
    let bin = dir.join("app");
    std::fs::copy(&exe, &bin).unwrap();
    // Fedora's recipe: keep function symbols in an xz-compressed ELF in .gnu_debugdata.
    let mini = dir.join("mini.debug");
    run_tool(
        "objcopy",
        &[os("--only-keep-debug"), bin.as_os_str(), mini.as_os_str()],
    );
    run_tool(
        "objcopy",
        &[
            os("--strip-debug"),
            os("--remove-section"),
            os(".comment"),
            mini.as_os_str(),
        ],
    );
    run_tool("strip", &[os("--strip-all"), bin.as_os_str()]);
    run_tool("xz", &[os("-f"), mini.as_os_str()]);
    let xz = dir.join("mini.debug.xz");
    let add = format!(".gnu_debugdata={}", xz.display());
    run_tool("objcopy", &[os("--add-section"), os(&add), bin.as_os_str()]);

    let symbols = Symbols::read(&bin).unwrap();
    let f = &symbols.resolve("fixture_target").unwrap().functions[0];
    assert_eq!(
        (f.file_offset, f.source),
        (expected, SymbolSource::MiniDebugInfo)
    );
}

#[test]
fn stripped_binaries_use_debuglink_and_build_id_files() {
    let dir = scratch("debuglink");
    let exe = target_fixture();
    let expected = offset_of(&exe, "fixture_target");

    // .gnu_debuglink next to the binary.
    let bin = dir.join("app");
    std::fs::copy(&exe, &bin).unwrap();
    let debug = dir.join("app.debug");
    run_tool(
        "objcopy",
        &[os("--only-keep-debug"), bin.as_os_str(), debug.as_os_str()],
    );
    run_tool("strip", &[os("--strip-all"), bin.as_os_str()]);
    let link = format!("--add-gnu-debuglink={}", debug.display());
    run_tool("objcopy", &[os(&link), bin.as_os_str()]);
    let f = &Symbols::read(&bin)
        .unwrap()
        .resolve("fixture_target")
        .unwrap()
        .functions[0];
    assert_eq!(
        (f.file_offset, f.source),
        (expected, SymbolSource::DebugFile)
    );

    // A build-id file under a debug root, and nothing else.
    let stripped = dir.join("app2");
    std::fs::copy(&exe, &stripped).unwrap();
    run_tool("strip", &[os("--strip-all"), stripped.as_os_str()]);
    let out = Command::new("readelf")
        .args(["-n"])
        .arg(&exe)
        .output()
        .unwrap();
    let notes = String::from_utf8_lossy(&out.stdout);
    let id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("gcc links a build id")
        .to_owned();
    let root = dir.join("debugroot");
    let slot = root.join(".build-id").join(&id[..2]);
    std::fs::create_dir_all(&slot).unwrap();
    run_tool(
        "objcopy",
        &[
            os("--only-keep-debug"),
            exe.as_os_str(),
            slot.join(format!("{}.debug", &id[2..])).as_os_str(),
        ],
    );
    let symbols = Symbols::read_with_debug_root(&stripped, &root).unwrap();
    let f = &symbols.resolve("fixture_target").unwrap().functions[0];
    assert_eq!(
        (f.file_offset, f.source),
        (expected, SymbolSource::DebugFile)
    );

    // Without it: the error says the file is stripped and where debug symbols would go.
    let symbols = Symbols::read_with_debug_root(&stripped, &dir.join("nowhere")).unwrap();
    let err = symbols.resolve("fixture_target").unwrap_err().to_string();
    assert!(
        err.contains("not found") || err.contains("no symbols"),
        "{err}"
    );
}

#[test]
fn a_file_with_no_symbols_says_what_would_help() {
    let dir = scratch("nosyms");
    let bin = dir.join("app");
    std::fs::copy(target_fixture(), &bin).unwrap();
    // Remove every symbol table, the dynamic one included.
    run_tool(
        "objcopy",
        &[
            os("--strip-all"),
            os("--remove-section=.dynsym"),
            bin.as_os_str(),
        ],
    );
    let symbols = Symbols::read_with_debug_root(&bin, &dir).unwrap();
    let err = symbols.resolve("fixture_target").unwrap_err().to_string();
    assert!(
        err.contains("no symbols left") && err.contains("dbgsym") && err.contains(".build-id/"),
        "{err}"
    );
}

#[test]
fn list_prints_functions_with_offsets() {
    let exe = target_fixture();
    let out = Command::new(common::tool())
        .args(["uprobe", "--list"])
        .arg(&exe)
        .arg("fixture_*")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = stdout
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    // Every fixture function `nm -S` sees with a size (a zero-size label is not one),
    // sorted: exactly what --list shows.
    let nm = Command::new("nm").arg("-S").arg(&exe).output().unwrap();
    let mut expected: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 4 && f[2] == "T")
        .map(|f| f[3].to_owned())
        .filter(|name| name.starts_with("fixture_"))
        .collect();
    expected.sort();
    assert!(expected.len() >= 8, "{expected:?}");
    assert_eq!(names, expected);
    let target = stdout
        .lines()
        .find(|l| l.ends_with(" fixture_target"))
        .unwrap();
    let offset = u64::from_str_radix(
        target
            .split_whitespace()
            .next()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    assert_eq!(offset, offset_of(&exe, "fixture_target"));
}

#[test]
fn ifuncs_resolve_to_the_implementation() {
    let libc = ebpf_tool::target::resolve("libc").unwrap();
    let symbols = Symbols::read(&libc).unwrap();
    let resolver = symbols
        .functions()
        .iter()
        .find(|f| f.name == "strlen" && f.ifunc)
        .expect("glibc's strlen is an IFUNC");
    let resolution = symbols.resolve("strlen").unwrap();
    assert_eq!(resolution.functions.len(), 1);
    assert_ne!(resolution.functions[0].file_offset, resolver.file_offset);
    assert!(
        resolution.notes.iter().any(|n| n.contains("GNU IFUNC")),
        "{:?}",
        resolution.notes
    );
}

#[test]
fn binaries_by_path_name_and_library_name() {
    let libc = ebpf_tool::target::resolve("libc").unwrap();
    assert_eq!(ebpf_tool::target::resolve("c").unwrap(), libc);
    assert_eq!(ebpf_tool::target::resolve("libc.so.6").unwrap(), libc);
    let bash = ebpf_tool::target::resolve("bash").unwrap();
    assert!(bash.is_absolute() && bash.ends_with("bash"));
    // A symlink resolves to the file it names: uprobes attach to inodes.
    let dir = scratch("symlink");
    let exe = target_fixture();
    std::os::unix::fs::symlink(&exe, dir.join("link")).unwrap();
    let via_link = ebpf_tool::target::resolve(dir.join("link").to_str().unwrap()).unwrap();
    assert_eq!(via_link, std::fs::canonicalize(&exe).unwrap());
}

#[test]
fn in_root_resolution_follows_links_inside_the_root() {
    let root = scratch("root");
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::write(root.join("usr/bin/real"), b"x").unwrap();
    // An absolute link must restart at the root, not at ours.
    std::os::unix::fs::symlink("/usr/bin/real", root.join("usr/bin/abs")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    let resolve = |p: &str| ebpf_tool::target::resolve_in_root(&root, Path::new(p)).unwrap();
    assert_eq!(resolve("/usr/bin/abs"), Path::new("/usr/bin/real"));
    assert_eq!(resolve("/bin/abs"), Path::new("/usr/bin/real"));
    assert_eq!(resolve("/usr/bin/../bin/real"), Path::new("/usr/bin/real"));
}
