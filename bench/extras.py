"""Benchmark parts beyond the per-call table: what the new modes cost against their
alternatives (prices), attaching to many functions (scale), lossless event rates with
two producer threads, and what a `-p` probe costs every other process.
"""

import glob
import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request

from common import ATTACHED, TARGET, TOOL, Spec, run_target, start_tracer, stop, wait_for_line


def ebpf_tool(*args, func="bench_fn"):
    return [str(TOOL), "uprobe", str(TARGET), func, *args]


def count_lines(stdout, _stderr):
    return sum(1 for line in stdout.splitlines() if line.startswith("uprobe triggered!"))


def count_calls(stdout, _stderr):
    """Per-call lines of a run with values (`... arg0=...`)."""
    return sum(1 for line in stdout.splitlines() if "bench_req" in line and "=" in line)


def count_table(name):
    def count(stdout, _stderr):
        match = re.search(rf"^{re.escape(name)}\s+(\d+)$", stdout, re.M)
        return int(match.group(1)) if match else 0
    return count


def count_hist(stdout, _stderr):
    match = re.search(r"latency: count=(\d+)", stdout)
    return int(match.group(1)) if match else 0


def count_stacks(stdout, _stderr):
    m = re.search(r"distinct stacks, (\d+) calls", stdout)
    return int(m.group(1)) if m else 0


def scraper(port, every_s=0.1):
    """A Prometheus stand-in: scrapes /metrics every `every_s` while the target runs;
    returns the median scrape time in ms."""
    def scrape(done):
        times = []
        while not done.is_set():
            start = time.monotonic()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                times.append((time.monotonic() - start) * 1000)
            except OSError:
                pass
            done.wait(every_s)
        return statistics.median(times) if times else None
    return scrape


def price_specs():
    """Rows for the new modes and what each is an alternative to. Each price compares a
    mode with its alternative (`against`) measured in the same rounds."""
    usdt = lambda probe, *args: [str(TOOL), "usdt", str(TARGET), probe, *args]
    return [
        # Typed and debug-info arguments against raw registers (bench_req, built -g).
        Spec("req: -a 0,1 (raw registers)", "price:args", ebpf_tool("-a", "0,1", func="bench_req"),
             count_calls, pipe=True, mode="req", watch="bench_req"),
        Spec("req: -a 1:str (a typed string)", "price:args", ebpf_tool("-a", "1:str", func="bench_req"),
             count_calls, pipe=True, mode="req", watch="bench_req"),
        Spec("req: -a r->len,name (debug info)", "price:args",
             ebpf_tool("-a", "r->len,name", func="bench_req"), count_calls, pipe=True, mode="req",
             watch="bench_req"),
        # USDT: a site whose argument is always computed, and one behind its semaphore.
        Spec("usdt bench:plain --count (no semaphore)", "price:usdt", usdt("bench:plain", "--count"),
             count_table("bench:plain"), mode="usdt", watch=None),
        Spec("usdt bench:gated --count (semaphore)", "price:usdt", usdt("bench:gated", "--count"),
             count_table("bench:gated"), mode="gated", watch=None),
        # --metrics, scraped ten times a second while the target runs, against --count.
        Spec("ebpf-tool --count --metrics (10 scrapes/s)", "price:metrics",
             ebpf_tool("--metrics", "127.0.0.1:19464"), None, during=scraper(19464)),
        Spec("ebpf-tool --stacks --unwind dwarf --stack-bytes 2048", "price:stacks",
             ebpf_tool("--stacks", "--unwind", "dwarf", "--stack-bytes", "2048"), count_stacks),
    ]


def paced(rates, mode="fn"):
    """Events delivered vs calls at fixed call rates, one line per call to a pipe. `mode`
    fn2 calls from two threads, each at the rate; rate 0 is as fast as they can."""
    table = []
    for rate in rates:
        threads = 2 if mode == "fn2" else 1
        calls = (rate or 1_000_000) * threads * 2  # two seconds at the rate
        err = tempfile.TemporaryFile(mode="w+")
        out = tempfile.TemporaryFile(mode="w+")
        tracer, cat = start_tracer(ebpf_tool(), out, err, pipe=True)
        subprocess.run([str(TARGET), "wait", "60000"], capture_output=True)
        time.sleep(0.2)
        ns = run_target(mode, calls, rate)
        time.sleep(0.5)
        stop(tracer)
        cat.wait(timeout=60)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        got = count_lines(stdout, stderr)
        lost = re.search(r"(\d+) lost", stderr)
        achieved = calls / (ns * calls / 1e9)
        table.append({"rate": rate * threads, "achieved": achieved, "calls": calls, "printed": got,
                      "lost": int(lost.group(1)) if lost else -1})
    return table


def attach_detach(binary, pattern, mode="multi"):
    """(functions, exec -> attached s, SIGINT -> exit s) for a glob, scoped with -p to an
    idle process: probes on every function of every process would slow the whole machine."""
    env = dict(os.environ, EBPF_TOOL_ATTACH=mode)
    idle = subprocess.Popen(["sleep", "3600"])
    started = time.monotonic()
    tracer = subprocess.Popen([str(TOOL), "uprobe", binary, pattern, "--count", "-p", str(idle.pid)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    attached_at = None
    functions = 0
    for line in tracer.stdout:
        m = re.search(r"matches (\d+) functions", line)
        if m:
            functions = int(m.group(1))
        if line.startswith("Uprobe attached successfully"):
            attached_at = time.monotonic()
            break
    try:
        if attached_at is None:
            tracer.kill()
            return None
        t_stop = time.monotonic()
        tracer.send_signal(signal.SIGINT)
        tracer.communicate(timeout=1200)
        return functions, attached_at - started, time.monotonic() - t_stop
    finally:
        idle.kill()
        idle.wait()


def rustc_driver():
    """The largest librustc_driver on this machine (rustup's or Debian's), or None."""
    found = glob.glob(os.path.expanduser("~/.rustup/toolchains/*/lib/librustc_driver-*.so"))
    found += glob.glob("/usr/lib/*/librustc_driver-*.so") + glob.glob("/usr/lib/rust*/lib/librustc_driver-*.so")
    return max(found, key=os.path.getsize) if found else None


def cost_to_others(calls, rounds):
    """ns/call of a process that is not the one traced, calling the probed function:
    untraced, with `--count -p IDLE` attached, and with a system-wide probe (context)."""
    def with_tracer(argv):
        out = tempfile.TemporaryFile(mode="w+")
        err = tempfile.TemporaryFile(mode="w+")
        tracer, _ = start_tracer(argv, out, err, pipe=False)
        try:
            if not wait_for_line([out, err], ATTACHED, 60):
                return None
            time.sleep(0.2)
            return run_target("fn", calls)
        finally:
            stop(tracer)

    idle = subprocess.Popen(["sleep", "3600"])
    results = {"untraced": [], "-p another process": [], "system-wide": []}
    try:
        for _ in range(rounds):
            results["untraced"].append(run_target("fn", calls))
            scoped = with_tracer(ebpf_tool("--count", "-p", str(idle.pid)))
            if scoped is not None:
                results["-p another process"].append(scoped)
            wide = with_tracer(ebpf_tool("--count"))
            if wide is not None:
                results["system-wide"].append(wide)
    finally:
        idle.kill()
        idle.wait()
    return results
