//! Bad input gets one clear line on stderr and a non-zero exit, never a panic.

mod common;

use assert_cmd::Command;
use common::{libc_path, privileged, target_fixture};
use predicates::prelude::*;

fn ebpf_tool() -> Command {
    Command::new(common::tool())
}

/// Asserts stderr is exactly one line, starts with "error: " and contains every `needle`.
fn one_error_line(stderr: &[u8], needles: &[&str]) {
    let stderr = String::from_utf8_lossy(stderr);
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{needle:?} missing from {stderr:?}"
        );
    }
}

#[test]
fn missing_binary() {
    let out = ebpf_tool()
        .args(["uprobe", "/nonexistent/binary/path", "f"])
        .assert()
        .code(1);
    one_error_line(
        &out.get_output().stderr,
        &["/nonexistent/binary/path", "does not exist"],
    );
}

#[test]
fn not_an_elf_file() {
    let out = ebpf_tool()
        .args(["uprobe", "/etc/hostname", "f"])
        .assert()
        .code(1);
    one_error_line(
        &out.get_output().stderr,
        &["/etc/hostname", "not an ELF file"],
    );
}

#[test]
fn unknown_symbol_names_the_file_and_suggests() {
    let fixture = target_fixture();
    let out = ebpf_tool()
        .args(["uprobe", fixture.to_str().unwrap(), "fixture_targte"])
        .assert()
        .code(1);
    one_error_line(
        &out.get_output().stderr,
        &[
            "'fixture_targte' not found in",
            ".symtab",
            "did you mean 'fixture_target'",
        ],
    );
}

#[test]
fn data_symbol_is_not_a_function() {
    let out = ebpf_tool()
        .args(["uprobe", "libc", "environ"])
        .assert()
        .code(1);
    one_error_line(&out.get_output().stderr, &["'environ'", "not a function"]);
}

#[test]
fn unknown_library_name() {
    let out = ebpf_tool()
        .args(["uprobe", "libnosuchlib_xyz", "f"])
        .assert()
        .code(1);
    one_error_line(
        &out.get_output().stderr,
        &["libnosuchlib_xyz", "ld.so.cache"],
    );
}

#[test]
fn bad_flag_values_are_refused_by_the_parser() {
    for args in [
        ["uprobe", "libc", "malloc", "-d", "abc"],
        ["uprobe", "libc", "malloc", "-d", "-1"],
        ["uprobe", "libc", "malloc", "-p", "0"],
        ["uprobe", "libc", "malloc", "-p", "x"],
    ] {
        ebpf_tool()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::starts_with("error: "));
    }
}

#[test]
fn pid_that_does_not_exist() {
    let out = ebpf_tool()
        .args(["uprobe", "libc", "malloc", "-p", "2147483646"])
        .assert()
        .code(1);
    one_error_line(
        &out.get_output().stderr,
        &["no process with pid 2147483646"],
    );
}

#[test]
fn without_privilege_it_says_which_capabilities() {
    if !privileged("without_privilege_it_says_which_capabilities") {
        return;
    }
    // Drop to nobody with no capabilities, as an ordinary user would run it.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(common::tool())
        .args(["uprobe", libc_path(), "malloc", "-d", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    one_error_line(
        &out.stderr,
        &["permission denied", "root", "CAP_BPF", "CAP_PERFMON"],
    );
    assert!(out.stdout.is_empty(), "nothing attached, nothing announced");
}
