//! Privileged: `--metrics` serves exact in-kernel counts and histograms while a run
//! lasts, in a format `promtool check metrics` accepts, and Debian's Prometheus scrapes it
//! and answers a query with the exact total.

#[macro_use]
mod common;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Tracer, run_fixture, target_fixture, tool};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A loopback port nobody listens on (just now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: the status line and the body.
fn get(port: u16, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

fn promtool_accepts(exposition: &str) {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        assert!(
            !common::privileged("promtool"),
            "promtool missing: scripts/setup.sh installs prometheus"
        );
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool: {out:?}\n{exposition}");
}

#[test]
fn a_scrape_shows_exact_counts_and_histograms() {
    require_root!();
    let fixture = target_fixture();
    let binary = path(&fixture);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // Not -p: that run would end with its process. The fixture is a private copy.
    let tracer = Tracer::start(&["uprobe", binary, "fixture_target", "--metrics", &addr]);
    run_fixture(&fixture, "calls", 37);
    let (status, body) = get(port, "/metrics");
    assert!(status.contains("200"), "{status}");
    let series = format!("ebpf_tool_calls_total{{binary=\"{binary}\",func=\"fixture_target\"}} 37");
    assert!(body.lines().any(|l| l == series), "{body}");
    assert!(
        body.contains("# TYPE ebpf_tool_calls_total counter"),
        "{body}"
    );
    assert!(
        body.contains("ebpf_tool_lost_events_total{cause=\"ringbuf_full\"} 0"),
        "{body}"
    );
    promtool_accepts(&body);
    assert!(get(port, "/other").0.contains("404"));
    drop(tracer.interrupt());

    // Latency: a histogram in seconds with an exact count.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let tracer = Tracer::start(&[
        "uprobe",
        binary,
        "fixture_sleep",
        "--latency",
        "--metrics",
        &addr,
    ]);
    run_fixture(&fixture, "sleep", 5);
    let (_, body) = get(port, "/metrics");
    let labels = format!("binary=\"{binary}\",func=\"fixture_sleep\"");
    assert!(
        body.lines()
            .any(|l| l == format!("ebpf_tool_latency_seconds_count{{{labels}}} 5")),
        "{body}"
    );
    // 20 ms sleeps: none at or below 2^24-1 ns (16.8 ms), all by 2^25-1 ns (33.6 ms).
    assert!(
        body.contains(&format!(
            "ebpf_tool_latency_seconds_bucket{{{labels},le=\"0.016777215\"}} 0"
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "ebpf_tool_latency_seconds_bucket{{{labels},le=\"0.033554431\"}} 5"
        )),
        "{body}"
    );
    promtool_accepts(&body);
    drop(tracer.interrupt());
}

#[test]
fn bad_addresses_and_ports_in_use_are_one_line() {
    require_root!();
    let fixture = target_fixture();
    let out = Command::new(tool())
        .args([
            "uprobe",
            path(&fixture),
            "fixture_target",
            "--metrics",
            "nonsense",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--metrics"),
        "{out:?}"
    );
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(tool())
        .args([
            "uprobe",
            path(&fixture),
            "fixture_target",
            "--metrics",
            &addr,
            "-d",
            "1",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("--metrics {addr}: cannot listen there")),
        "{stderr}"
    );
}

#[test]
fn prometheus_scrapes_the_exact_total() {
    require_root!();
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !common::privileged("prometheus"),
            "prometheus missing: scripts/setup.sh installs it"
        );
        return;
    }
    let fixture = target_fixture();
    let (tool_port, prometheus_port) = (free_port(), free_port());
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ebpf-tool\n    static_configs:\n      - targets: ['127.0.0.1:{tool_port}']\n"
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{tool_port}");
    let tracer = Tracer::start(&[
        "uprobe",
        path(&fixture),
        "fixture_target",
        "--metrics",
        &addr,
    ]);
    run_fixture(&fixture, "calls", 23);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let total = loop {
        if let Ok(stream) = TcpStream::connect(("127.0.0.1", prometheus_port)) {
            drop(stream);
            let (_, body) = get(
                prometheus_port,
                "/api/v1/query?query=ebpf_tool_calls_total%7Bfunc%3D%22fixture_target%22%7D",
            );
            last = body.clone();
            let value: Option<String> = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v["data"]["result"][0]["value"][1]
                        .as_str()
                        .map(str::to_owned)
                });
            if let Some(value) = value {
                break value;
            }
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had the series: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(tracer.interrupt());
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert_eq!(total, "23", "{last}");
}
