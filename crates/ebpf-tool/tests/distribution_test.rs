//! Privileged: `ebpf-tool features` agrees with what the tool does here; completion
//! scripts parse; the man page renders; the Debian package installs and its binary
//! traces a fixture.

#[macro_use]
mod common;

use std::{path::Path, process::Command};

use common::{target_fixture, tool};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn features(env: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let out = Command::new(tool())
        .args(["features", "--json"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn available(features: &[serde_json::Value], name: &str) -> bool {
    features
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no feature {name}: {features:?}"))["available"]
        .as_bool()
        .unwrap()
}

/// A glob run's stderr at debug level, which says how probes were attached.
fn glob_run_log(env: &[(&str, &str)]) -> String {
    let fixture = target_fixture();
    let out = Command::new(tool())
        .args(["uprobe", path(&fixture), "fixture_*", "--count", "-d", "1"])
        .env("RUST_LOG", "ebpf_tool=debug")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn features_agree_with_what_the_tool_does() {
    require_root!();
    let found = features(&[]);
    for name in ["kernel", "privileges", "ring buffer", "kernel BTF"] {
        assert!(available(&found, name), "{name}: {found:?}");
    }
    let multi = available(&found, "uprobe_multi links");
    let log = glob_run_log(&[]);
    assert_eq!(
        log.contains("in one link"),
        multi,
        "features says {multi}: {log}"
    );

    // Forcing the fallback: features says so, and the run takes it.
    let forced = [("EBPF_TOOL_ATTACH", "perf")];
    let found = features(&forced);
    assert!(!available(&found, "uprobe_multi links"));
    assert!(!glob_run_log(&forced).contains("in one link"));

    // Text: every line says yes or no; a no says what is done instead.
    let out = Command::new(tool())
        .args(["features"])
        .envs(forced)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("uprobe_multi links: no ("), "{text}");
    assert!(
        text.contains("    without it: one perf-event link per function"),
        "{text}"
    );
}

#[test]
fn completions_parse_and_the_man_page_renders() {
    let script = Command::new(tool())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(script.status.success());
    let checked = Command::new("bash")
        .arg("-n")
        .arg("/dev/stdin")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(&script.stdout)?;
            child.wait()
        })
        .unwrap();
    assert!(checked.success(), "bash -n rejects the completion script");
    for shell in ["zsh", "fish"] {
        let out = Command::new(tool())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("man-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("ebpf-tool.1");
    let roff = Command::new(tool()).arg("man").output().unwrap();
    std::fs::write(&page, &roff.stdout).unwrap();
    let Ok(rendered) = Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "100")
        .output()
    else {
        assert!(!common::privileged("man"), "man is missing");
        return;
    };
    let text = String::from_utf8_lossy(&rendered.stdout);
    assert!(rendered.status.success(), "{rendered:?}");
    for part in [
        "UPROBE",
        "USDT",
        "--metrics",
        "Examples:",
        "ebpf-tool uprobe -c",
    ] {
        assert!(
            text.contains(part),
            "{part} missing from the man page:\n{text}"
        );
    }
}

#[test]
fn the_debian_package_installs_and_traces() {
    require_root!();
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "ebpf-tool"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
    assert!(
        !installed,
        "an ebpf-tool package is already installed here; this test would replace it"
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("deb-{}", std::process::id()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/package.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["--binary", path(&tool()), "--out", path(&dir)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let deb = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let status = Command::new("dpkg").args(["-i", &deb]).status().unwrap();
    assert!(status.success(), "dpkg -i {deb}");
    let fixture = target_fixture();
    // Checked after the package is removed again, so a failure leaves nothing installed.
    let missing: Vec<&str> = [
        "/usr/share/man/man1/ebpf-tool.1.gz",
        "/usr/share/bash-completion/completions/ebpf-tool",
    ]
    .into_iter()
    .filter(|file| !Path::new(file).exists())
    .collect();
    let traced = Command::new("/usr/bin/ebpf-tool")
        .args(["uprobe", path(&fixture), "fixture_target", "--count", "--"])
        .arg(&fixture)
        .args(["calls", "17"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let removed = Command::new("dpkg")
        .args(["-r", "ebpf-tool"])
        .status()
        .unwrap();
    assert!(removed.success());
    assert!(missing.is_empty(), "not installed: {missing:?}");
    assert!(
        traced
            .lines()
            .any(|l| l.split_whitespace().eq(["fixture_target", "17"])),
        "{traced}"
    );
}
