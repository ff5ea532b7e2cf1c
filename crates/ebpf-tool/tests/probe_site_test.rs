//! Privileged: a probe never changes what the traced program computes. The probe-site
//! fixture (tests/fixtures/probe_sites.S) starts each function with one instruction of an
//! x86-64 encoding class and prints a hash of every register after calling it; traced,
//! every site ebpf-tool accepts must hash exactly as untraced and count exactly, and the
//! sites the kernel would run wrongly must be refused, with the reason.

#[macro_use]
mod common;

use std::{collections::BTreeMap, process::Command};

use common::{Tracer, build_c_fixture_files, private_copy, target_fixture};

/// Sites whose first instruction the kernel's uprobes refuse, misread or cannot run in
/// their single-step page; everything else in the fixture must be probed.
const REFUSED: [&str; 18] = [
    "legacy_syscall",
    "legacy_lock",
    "legacy_ds",
    "vex_movdqu6f",
    "vex_bcast78",
    "vex_zeroupper77",
    "vex_cmpc2",
    "vex_por_eb",
    "vex_subsw_e9",
    "vex_subsb_e8",
    "vex_fma9d",
    "vex_kmov90",
    "evex_bcast7a",
    "evex_cmpc2",
    "evex_pcmpeqb74",
    "evex_movdqu6f",
    "evex_subsb_e8",
    "evex_por_eb",
];

const CALLS: u32 = 3;

fn sites_fixture() -> std::path::PathBuf {
    private_copy(&build_c_fixture_files(
        &["probe_sites.c", "probe_sites.S"],
        &["-O1"],
    ))
}

/// `NAME HASH` per site, from one run of the fixture.
fn run_sites(fixture: &std::path::Path) -> BTreeMap<String, String> {
    let out = Command::new(fixture)
        .args(["all", &CALLS.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "probe_sites failed: {:?}", out.status);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, hash)| (name.to_owned(), hash.to_owned()))
        .collect()
}

#[test]
fn every_probed_site_computes_as_untraced_and_unsafe_sites_are_refused() {
    require_root!();
    let fixture = sites_fixture();
    let untraced = run_sites(&fixture);
    assert!(untraced.len() > 40, "{untraced:?}");
    let tracer = Tracer::start(&["uprobe", fixture.to_str().unwrap(), "site_*", "--count"]);
    let traced = run_sites(&fixture);
    let finished = tracer.interrupt();
    let stdout = finished.stdout.clone();
    let status = finished.stdout.join("\n");
    assert!(finished.status.success(), "{}", finished.stderr);
    for (site, hash) in &untraced {
        assert_eq!(
            traced.get(site),
            Some(hash),
            "site {site} computed differently when traced"
        );
    }
    let counts: BTreeMap<&str, u32> = stdout
        .iter()
        .filter_map(|l| {
            let (name, count) = l.split_once(char::is_whitespace)?;
            Some((name.strip_prefix("site_")?, count.trim().parse().ok()?))
        })
        .collect();
    for (site, hash) in &untraced {
        let refused = REFUSED.contains(&site.as_str());
        let skipped_line = status
            .lines()
            .any(|l| l.starts_with("Skipped") && l.contains(&format!("site_{site}")));
        if refused {
            assert!(
                skipped_line,
                "site {site} should have been refused: {status}"
            );
            assert_eq!(
                counts.get(site.as_str()),
                None,
                "refused site {site} counted"
            );
        } else if hash != "unsupported" {
            assert!(!skipped_line, "site {site} was refused: {status}");
            assert_eq!(
                counts.get(site.as_str()),
                Some(&CALLS),
                "site {site}: {stdout:?}"
            );
        }
    }
}

#[test]
fn a_misread_site_named_alone_is_an_error_with_the_reason_and_the_next_instruction() {
    let fixture = sites_fixture();
    let out = Command::new(common::tool())
        .args([
            "uprobe",
            fixture.to_str().unwrap(),
            "site_evex_bcast7a",
            "-d",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("`vpbroadcastb %esi,%ymm17` is VEX/EVEX-encoded with opcode byte 0x7a")
            && stderr.contains("site_evex_bcast7a+0x6"),
        "{stderr}"
    );
}

#[test]
fn an_offset_inside_an_instruction_is_refused() {
    // fixture_chain_b (built -O2 with frame pointers) starts push %rbp (1 byte), then
    // mov %rsp,%rbp (3 bytes): +2 lies inside the second.
    let fixture = target_fixture();
    let code = |args: &[&str]| {
        let out = Command::new(common::tool()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stderr) = code(&[
        "uprobe",
        fixture.to_str().unwrap(),
        "fixture_chain_b+2",
        "-d",
        "1",
    ]);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(
        stderr.contains("offset 0x2 is inside an instruction of 'fixture_chain_b'")
            && stderr.contains("+0x0, +0x1, +0x4"),
        "{stderr}"
    );
    // The same point as an address.
    let symbols = Command::new("nm").arg(&fixture).output().unwrap();
    let address = String::from_utf8_lossy(&symbols.stdout)
        .lines()
        .find_map(|l| {
            l.strip_suffix(" T fixture_chain_b")
                .map(|a| u64::from_str_radix(a, 16).unwrap())
        })
        .unwrap();
    let (status, stderr) = code(&[
        "uprobe",
        fixture.to_str().unwrap(),
        &format!("{:#x}", address + 2),
        "-d",
        "1",
    ]);
    assert_eq!(status, Some(1), "{stderr}");
    assert!(stderr.contains("inside an instruction"), "{stderr}");
}

#[test]
fn a_probe_on_an_instruction_boundary_inside_a_function_counts_exactly() {
    require_root!();
    let fixture = target_fixture();
    // +4 is the call to fixture_target, after push %rbp and mov %rsp,%rbp.
    let tracer = Tracer::start(&[
        "uprobe",
        fixture.to_str().unwrap(),
        "fixture_chain_b+4",
        "--count",
    ]);
    let (_, traced) = common::run_fixture(&fixture, "chain", 25);
    let lines = tracer.interrupt().ok();
    let (_, untraced) = common::run_fixture(&fixture, "chain", 25);
    assert_eq!(traced, untraced, "output changed");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["fixture_chain_b+0x4", "25"]),
        "{lines:?}"
    );
}
