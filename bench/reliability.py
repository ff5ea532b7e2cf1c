#!/usr/bin/env python3
"""ebpf-tool under heavy load, and against hostile input: the figures the README's
reliability section quotes. Needs root.

    python3 bench/reliability.py [--seconds 60]

1. Load: bench/target.c calls libc malloc as fast as it can for SECONDS while ebpf-tool
   traces malloc in that process (-p), once printing every call to a pipe and once with
   --count. Every call must be accounted for: printed + lost == calls exactly, and the
   --count total == calls exactly. The tracer's memory is sampled every second.
2. Stopping under load: Ctrl+C while the load runs; how long until the tool has exited.
   Then SIGINT, SIGTERM and SIGHUP under the same load with stdout to a pipe nobody
   reads, and a -d 1 run whose reader takes 2 ms a line: how long each took to end, and
   that seen = printed + lost.
3. Probe sites: the probe-site fixture (every x86-64 encoding class) traced through one
   glob: sites probed, sites refused, and whether any computed differently.
4. Hostile input: the corrupt-ELF corpus test (how many inputs, none may panic).
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "target" / "release" / "ebpf-tool"
TARGET = ROOT / "target" / "bench" / "target"


def build():
    env = dict(os.environ, PATH=f"{Path.home() / '.cargo' / 'bin'}:{os.environ.get('PATH', '')}")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ebpf-tool"], cwd=ROOT, check=True, env=env)
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cc", "-O2", "-o", str(TARGET), str(ROOT / "bench" / "target.c")], check=True)


def rss_mb(pid):
    try:
        return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
    except (OSError, AttributeError):
        return 0.0


def load_run(seconds, extra, stop_early=None):
    """Traces malloc in a workload that runs `seconds`; returns a dict of figures."""
    workload = subprocess.Popen([str(TARGET), "malloc-for", str(seconds)], stdout=subprocess.PIPE, text=True)
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    counting = "--count" in extra
    read_end, write_end = os.pipe()
    # Count lines in a separate process so the reader of the pipe is not the bottleneck.
    counter = subprocess.Popen(["cat"] if counting else ["grep", "-c", "arg0=64 "], stdin=read_end, stdout=out)
    tracer = subprocess.Popen([str(TOOL), "uprobe", "-p", str(workload.pid), "libc", "malloc", *extra],
                              stdout=write_end, stderr=err, start_new_session=True)
    os.close(read_end)
    os.close(write_end)
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append(rss_mb(tracer.pid))
            time.sleep(1)

    threading.Thread(target=sample, daemon=True).start()
    stop_latency = None
    if stop_early:
        time.sleep(stop_early)
        t = time.monotonic()
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=60)
        stop_latency = time.monotonic() - t
    workload_out = workload.communicate()[0]
    calls = int(re.search(r"calls=(\d+)", workload_out).group(1))
    if not stop_early:
        time.sleep(0.5)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=120)
    done.set()
    counter.wait(timeout=120)
    out.seek(0)
    err.seek(0)
    stdout = out.read()
    printed_lines = stdout.strip()
    counted = re.search(r"^malloc\s+(\d+)$", stdout, re.M)
    stderr = err.read()
    lost = re.search(r"(\d+) lost", stderr)
    seen = re.search(r"(\d+) events seen", stderr)
    return {
        "calls": calls,
        "printed": int(printed_lines) if printed_lines.isdigit() else 0,
        "counted": int(counted.group(1)) if counted else -1,
        "seen": int(seen.group(1)) if seen else 0,
        "lost": int(lost.group(1)) if lost else 0,
        "max_rss": max(samples, default=0.0),
        "first_rss": samples[1] if len(samples) > 1 else 0.0,
        "stop_s": stop_latency,
        "stderr": stderr,
    }


def stuck_reader_runs():
    """SIGINT/SIGTERM/SIGHUP with an unread stdout, under a flood: ms from signal to exit."""
    results = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        workload = subprocess.Popen([str(TARGET), "malloc-for", "8"], stdout=subprocess.DEVNULL)
        read_end, write_end = os.pipe()  # never read
        tracer = subprocess.Popen([str(TOOL), "uprobe", "-p", str(workload.pid), "libc", "malloc"],
                                  stdout=write_end, stderr=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(3)
        t = time.monotonic()
        tracer.send_signal(sig)
        _, stderr = tracer.communicate(timeout=60)
        took = time.monotonic() - t
        seen = [int(n) for n in re.findall(r"(\d+) (?:events seen|printed|lost)", stderr)]
        adds_up = len(seen) == 3 and seen[0] == seen[1] + seen[2]
        results.append((signal.Signals(sig).name, took, tracer.returncode, adds_up, seen))
        os.close(read_end)
        os.close(write_end)
        workload.kill()
        workload.wait()
    return results


def slow_reader_run():
    """-d 1 with a reader taking 2 ms per line: wall time of the tool and its summary."""
    workload = subprocess.Popen([str(TARGET), "malloc-for", "6"], stdout=subprocess.DEVNULL)
    tracer = subprocess.Popen([str(TOOL), "uprobe", "-p", str(workload.pid), "libc", "malloc", "-d", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t = time.monotonic()
    def slow():
        for _ in tracer.stdout:
            time.sleep(0.002)
    reader = threading.Thread(target=slow, daemon=True)
    reader.start()
    tracer.wait(timeout=60)
    took = time.monotonic() - t
    stderr = tracer.stderr.read()
    workload.kill()
    workload.wait()
    seen = [int(n) for n in re.findall(r"(\d+) (?:events seen|printed|lost)", stderr)]
    return took, seen


def probe_sites():
    """The probe-site fixture traced through 'site_*': (probed, refused, changed sites)."""
    fixtures = ROOT / "crates" / "ebpf-tool" / "tests" / "fixtures"
    exe = ROOT / "target" / "bench" / "probe_sites"
    subprocess.run(["cc", "-O1", "-o", str(exe), str(fixtures / "probe_sites.c"), str(fixtures / "probe_sites.S")],
                   check=True)
    run = lambda: dict(l.split() for l in subprocess.run([str(exe), "all", "3"], capture_output=True,
                                                          text=True, check=True).stdout.splitlines())
    untraced = run()
    tracer = subprocess.Popen([str(TOOL), "uprobe", str(exe), "site_*", "--count"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)
    traced = run()
    tracer.send_signal(signal.SIGINT)
    out, _ = tracer.communicate(timeout=30)
    counted = re.findall(r"^site_(\w+)\s+3$", out, re.M)
    skipped = sum(int(m) for m in re.findall(r"^Skipped (\d+) functions", out, re.M)) + \
        len(re.findall(r"^Skipped site_", out, re.M))
    changed = [s for s in untraced if traced.get(s) != untraced[s]]
    return len(counted), skipped, changed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("reliability: needs root")
    build()
    print(f"## Reliability ({time.strftime('%Y-%m-%d')}, kernel {os.uname().release}, {os.cpu_count()} CPUs)\n")

    events = load_run(args.seconds, [])
    accounted = events["printed"] + events["lost"]
    print(f"- **Per-call lines under load**: libc `malloc` called {events['calls']:,} times in "
          f"{args.seconds} s ({events['calls'] / args.seconds:,.0f}/s) while traced; {events['printed']:,} "
          f"lines printed + {events['lost']:,} reported lost = {accounted:,} "
          f"({'every call accounted for' if accounted == events['calls'] else 'MISMATCH'}); "
          f"tool memory {events['first_rss']:.1f} MB after 1 s, {events['max_rss']:.1f} MB at most.")

    count = load_run(args.seconds, ["--count"])
    calls, counted = count["calls"], count["counted"]
    print(f"- **--count under load**: {calls:,} calls in {args.seconds} s, {counted:,} counted in the kernel "
          f"({'exact' if counted == calls else 'MISMATCH'}); tool memory {count['max_rss']:.1f} MB at most.")

    stop = load_run(10, [], stop_early=3)
    print(f"- **Ctrl+C under load**: the tool exited {stop['stop_s'] * 1000:.0f} ms after SIGINT, probes detached.")

    stuck = stuck_reader_runs()
    parts = ", ".join(f"{name} {took * 1000:.0f} ms" for name, took, _, _, _ in stuck)
    sums = all(ok and rc == 0 for _, _, rc, ok, _ in stuck)
    print(f"- **Signals with stdout never read, under load**: the run ended {parts} after the signal "
          f"(exit 0, seen = printed + lost: {'yes' if sums else 'NO'}).")
    took, seen = slow_reader_run()
    sums = len(seen) == 3 and seen[0] == seen[1] + seen[2]
    print(f"- **A reader taking 2 ms a line, -d 1**: the tool ended after {took:.2f} s; {seen[0] if seen else 0:,} "
          f"events seen = {seen[1] if sums else '?':,} printed + {seen[2] if sums else '?':,} lost "
          f"({'adds up' if sums else 'MISMATCH'}).")
    probed, refused, changed = probe_sites()
    print(f"- **Probe sites** (every x86-64 encoding class, tests/fixtures/probe_sites.S): {probed} probed, "
          f"each counted exactly and computing as untraced; {refused} refused with the reason; "
          f"{'none changed' if not changed else 'CHANGED: ' + ', '.join(changed)}.")

    env = dict(os.environ, PATH=f"{Path.home() / '.cargo' / 'bin'}:{os.environ.get('PATH', '')}")
    corpus = subprocess.run(["cargo", "test", "-q", "--test", "corrupt_elf_test", "--", "--nocapture"],
                            cwd=ROOT, capture_output=True, text=True, env=env)
    tried = re.search(r"tried (\d+) corrupt ELF inputs in ([\d.]+) s", corpus.stderr + corpus.stdout)
    verdict = "none panicked" if corpus.returncode == 0 else "SOME PANICKED"
    if tried:
        print(f"- **Hostile ELF files**: {int(tried.group(1)):,} truncated, bit-flipped and crafted files "
              f"(from the fixtures and libc) in {tried.group(2)} s: {verdict}.")
    else:
        print(f"- **Hostile ELF files**: the corpus test did not run: {corpus.stderr[-300:]}")
    sys.exit(0 if accounted == events["calls"] and counted == calls and corpus.returncode == 0
             and not changed else 1)


if __name__ == "__main__":
    main()
