#!/usr/bin/env python3
"""ebpf-tool benchmark: what a probe costs the traced program, measured against the
physical floor (a uprobe whose program does nothing) and against bpftrace, BCC and perf
when they are installed. Prints a markdown report.

    python3 bench/run.py [--calls N] [--repeat R] [--quick]

Every row is measured the same way: the tracer is started, bench/target.c (built here)
waits until the probe lands in its text (its first byte becomes 0xCC) to time start-up,
then calls bench_fn N times and reports ns/call; the tracer is stopped and its output
counted. Added cost = traced ns/call - untraced ns/call. A VM's noise only ever adds
time and drifts over minutes, so rows take turns (every row once, R times over) and the
× floor ratio is the median over those R rounds of the row's cost divided by its floor's
cost in the same round (seconds apart); the ratio of the minima is shown too, and the
targets are judged on the paired median.
Needs root. Rows for tools that are not installed are skipped with a note.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "target" / "bench"
TOOL = ROOT / "target" / "release" / "ebpf-tool"
TARGET = BUILD / "target"


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def build():
    BUILD.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path.home() / '.cargo' / 'bin'}:{env.get('PATH', '')}"
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ebpf-tool"], cwd=ROOT, check=True, env=env)
    sh(["cc", "-O2", "-o", str(TARGET), str(ROOT / "bench" / "target.c")])


def run_target(mode, calls, rate=0):
    out = sh([str(TARGET), mode, str(calls), str(rate)]).stdout
    fields = dict(kv.split("=") for kv in out.split())
    return float(fields["ns_per_call"])


def proc_stat(pid):
    """(cpu seconds, peak RSS in MB) of a live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(stat[11]) + int(stat[12])
        status = Path(f"/proc/{pid}/status").read_text()
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        return ticks / os.sysconf("SC_CLK_TCK"), hwm / 1024
    except (OSError, AttributeError, IndexError):
        return 0.0, 0.0


class Row:
    def __init__(self, name, kind):
        self.name, self.kind = name, kind
        self.added, self.startup, self.rss, self.cpu, self.events, self.calls, self.note = (
            [], [], [], [], [], [], "")
        self.lost = []


def start_tracer(argv, out, err, pipe, env=None):
    """Starts a tracer. With `pipe`, its stdout goes through a pipe to `cat` (as in
    `tracer | cat > file`), the way per-event output is usually consumed."""
    if not pipe:
        return subprocess.Popen(argv, stdout=out, stderr=err, env=env, start_new_session=True), None
    read_end, write_end = os.pipe()
    cat = subprocess.Popen(["cat"], stdin=read_end, stdout=out)
    tracer = subprocess.Popen(argv, stdout=write_end, stderr=err, env=env, start_new_session=True)
    os.close(read_end)
    os.close(write_end)
    return tracer, cat


def stop(tracer):
    """Ctrl+C, as a user would; again if ignored (bpftrace sometimes misses the first),
    then SIGKILL."""
    for sig, patience in ((signal.SIGINT, 30), (signal.SIGINT, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(tracer.pid, sig)
            tracer.wait(timeout=patience)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


class Spec:
    """One tracer row to measure: how to run it and how to count what it reported."""

    def __init__(self, name, kind, argv, count_events=None, pipe=False, env=None):
        self.name, self.kind, self.argv = name, kind, argv
        self.count_events, self.pipe, self.env = count_events, pipe, env


def measure(specs, calls, repeat):
    """Runs each spec `repeat` times around the target; returns a Row per spec.

    Runs are interleaved (every row once, then every row again, ...) so that the VM's
    drifting noise lands on the floors and the tracers alike, and the ratios compare runs
    made minutes apart at most. count_events(stdout, stderr) -> events the tracer reported.
    """
    rows = [Row(spec.name, spec.kind) for spec in specs]
    for _ in range(repeat):
        for spec, row in zip(specs, rows):
            if not row.note:
                measure_once(spec, row, calls)
    return rows


def measure_once(spec, row, calls):
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    waiter = subprocess.Popen([str(TARGET), "wait", "30000"], stdout=subprocess.PIPE, text=True)
    started = time.monotonic_ns()
    tracer, cat = start_tracer(spec.argv, out, err, spec.pipe, spec.env)
    probed = waiter.communicate()[0]
    at = int(probed.split("=")[1]) if "=" in probed else 0
    if at == 0:
        tracer.kill()
        row.note = "never attached"
        return
    row.startup.append((at - started) / 1e6)
    time.sleep(0.2)
    cpu0, _ = proc_stat(tracer.pid)
    traced = run_target("fn", calls)
    time.sleep(0.5)  # let the tracer drain
    cpu1, rss = proc_stat(tracer.pid)
    t_stop = time.monotonic()
    stop(tracer)
    row.detach_s = time.monotonic() - t_stop
    if cat:
        cat.wait(timeout=60)
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
    row.added.append(traced - BASELINE)
    row.rss.append(rss)
    workload_s = traced * calls / 1e9
    row.cpu.append(100.0 * (cpu1 - cpu0) / max(workload_s + 0.5, 1e-9))
    row.calls.append(calls)
    if spec.count_events:
        row.events.append(spec.count_events(stdout, stderr))
        row.lost.append(reported_lost(stdout, stderr) if spec.argv[0] == str(TOOL) else 0)


def reported_lost(stdout, stderr):
    """Events ebpf-tool itself reported lost (its summary line, text or JSON)."""
    match = re.search(r"events seen, \d+ printed, (\d+) lost", stderr) or re.search(r'"lost":(\d+)', stdout)
    return int(match.group(1)) if match else 0


def ebpf_tool(*args):
    return [str(TOOL), "uprobe", str(TARGET), "bench_fn", *args]


def count_lines(stdout, _stderr):
    return sum(1 for line in stdout.splitlines() if line.startswith("uprobe triggered!"))


def count_ebpf_table(stdout, _stderr):
    match = re.search(r"^bench_fn\s+(\d+)$", stdout, re.M)
    return int(match.group(1)) if match else 0


def count_hist(stdout, _stderr):
    match = re.search(r"latency: count=(\d+)", stdout)
    return int(match.group(1)) if match else 0


def count_bpftrace_printf(stdout, _stderr):
    return stdout.count("hit ")


def count_bpftrace_map(stdout, _stderr):
    match = re.search(r"@\w*: (\d+)", stdout)
    return int(match.group(1)) if match else 0


def count_funccount(stdout, _stderr):
    match = re.search(r"bench_fn\s+(\d+)", stdout)
    return int(match.group(1)) if match else 0


def count_stacks(stdout, _stderr):
    m = re.search(r"distinct stacks, (\d+) calls", stdout)
    return int(m.group(1)) if m else 0


def count_hist_total(stdout, _stderr):
    return sum(int(n) for n in re.findall(r":\s+(\d+)\s+\|", stdout))


def tool_specs():
    return [
        Spec("floor: no-op uprobe", "entry", ebpf_tool("--noop")),
        Spec("floor: no-op uprobe + uretprobe", "pair", ebpf_tool("--noop", "--ret")),
        Spec("ebpf-tool --count", "entry", ebpf_tool("--count"), count_ebpf_table),
        Spec("ebpf-tool --latency -q (in-kernel hist)", "pair", ebpf_tool("--latency", "-q"), count_hist),
        # Returns seen at return instructions instead of uretprobes (Go, C++ exceptions).
        Spec("floor: no-op uprobe + return-site probe", "sites", ebpf_tool("--noop", "--ret", "--ret-sites")),
        Spec("ebpf-tool --latency -q --ret-sites", "sites", ebpf_tool("--latency", "-q", "--ret-sites"),
             count_hist),
        Spec("ebpf-tool (one line per call, to a pipe)", "entry", ebpf_tool(), count_lines, pipe=True),
        # Stacks: the kernel's frame-pointer walk, and 16 KiB of stack copied for userspace
        # unwinding with .eh_frame (--unwind dwarf).
        Spec("ebpf-tool --stacks --unwind fp", "entry", ebpf_tool("--stacks", "--unwind", "fp"), count_stacks),
        Spec("ebpf-tool --stacks --unwind dwarf", "entry", ebpf_tool("--stacks", "--unwind", "dwarf"),
             count_stacks),
        Spec("ebpf-tool --json (to a pipe)", "entry", ebpf_tool("--json"),
             lambda o, e: o.count('"type":"call"'), pipe=True),
    ]


def other_specs():
    specs, notes = [], []
    target = str(TARGET)
    if shutil.which("bpftrace"):
        bt = lambda prog: ["bpftrace", "-e", prog]
        specs.append(Spec("bpftrace count()", "entry", bt(f"uprobe:{target}:bench_fn {{ @ = count(); }}"),
                          count_bpftrace_map))
        specs.append(Spec("bpftrace hist(latency)", "pair",
                          bt(f"uprobe:{target}:bench_fn {{ @s[tid] = nsecs; }} "
                             f"uretprobe:{target}:bench_fn /@s[tid]/ {{ @h = hist(nsecs - @s[tid]); delete(@s[tid]); }}"),
                          count_hist_total))
        specs.append(Spec("bpftrace printf (to a pipe)", "entry",
                          bt(f"uprobe:{target}:bench_fn {{ printf(\"hit %d\\n\", pid); }}"),
                          count_bpftrace_printf, pipe=True))
    else:
        notes.append("bpftrace not installed (apt-get install bpftrace): its rows are skipped")
    funccount = shutil.which("funccount-bpfcc")
    bcc_error = None
    if funccount:
        # BCC compiles its programs at run time against kernel headers; without headers
        # for the running kernel it exits at once.
        try:
            probe = subprocess.run([funccount, "-d", "1", f"{target}:bench_fn"], capture_output=True, text=True,
                                   timeout=60)
            if probe.returncode != 0 or "Failed to compile" in probe.stderr:
                bcc_error = (probe.stderr.strip().splitlines() or ["failed"])[-1]
        except subprocess.TimeoutExpired:
            bcc_error = "did not finish in 60 s"
    if funccount and bcc_error:
        notes.append(f"BCC is installed but cannot run here ({bcc_error}): its rows are skipped")
    elif funccount:
        specs.append(Spec("BCC funccount", "entry", [funccount, f"{target}:bench_fn"], count_funccount))
        specs.append(Spec("BCC funclatency", "pair", [shutil.which("funclatency-bpfcc"), f"{target}:bench_fn"],
                          count_hist_total))
        specs.append(Spec("BCC trace (to a pipe)", "entry", [shutil.which("trace-bpfcc"), f"{target}:bench_fn"],
                          lambda o, e: max(0, len(o.splitlines()) - 1), pipe=True))
    else:
        notes.append("BCC not installed (apt-get install bpfcc-tools): its rows are skipped")
    return specs, notes


def paced(calls_per_rate, rates):
    """Events delivered vs calls at a fixed call rate, per-event mode to a pipe."""
    table = []
    for rate in rates:
        calls = min(calls_per_rate, rate * 2)
        err = tempfile.TemporaryFile(mode="w+")
        out = tempfile.TemporaryFile(mode="w+")
        tracer, cat = start_tracer(ebpf_tool(), out, err, pipe=True)
        subprocess.run([str(TARGET), "wait", "60000"], capture_output=True)
        time.sleep(0.2)
        cpu0, _ = proc_stat(tracer.pid)
        ns = run_target("fn", calls, rate)
        time.sleep(0.5)
        stop(tracer)
        cat.wait(timeout=60)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        got = count_lines(stdout, stderr)
        lost = re.search(r"(\d+) lost", stderr)
        table.append((rate, calls, got, int(lost.group(1)) if lost else -1, ns))
    return table


def attach_detach(pattern, mode):
    """Seconds from exec to attached, and from SIGINT to exit, for a glob over libc.

    Scoped with -p to an idle process: probes on every libc function of every process
    would slow (and, before probe sites were decoder-checked, break) the whole machine."""
    env = dict(os.environ, EBPF_TOOL_ATTACH=mode)
    idle = subprocess.Popen(["sleep", "3600"])
    started = time.monotonic()
    tracer = subprocess.Popen([str(TOOL), "uprobe", "libc", pattern, "--count", "-p", str(idle.pid)],
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
    if attached_at is None:
        tracer.kill()
        idle.kill()
        return None
    stop = time.monotonic()
    tracer.send_signal(signal.SIGINT)
    tracer.communicate(timeout=1200)
    detached = time.monotonic() - stop
    idle.kill()
    idle.wait()
    return functions, attached_at - started, detached


def fmt(values, digits=0):
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.{digits}f}" if len(values) == 1 else f"{med:.{digits}f} (min {min(values):.{digits}f})"


def main():
    global BASELINE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats, no perf-event detach row")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.repeat = 300_000, 2
    if os.geteuid() != 0:
        sys.exit("bench: needs root (it loads eBPF programs)")
    build()
    BASELINE = statistics.median(run_target("fn", args.calls) for _ in range(5))

    others, notes = other_specs()
    rows = measure(tool_specs() + others, args.calls, args.repeat)
    floors = {r.kind: r for r in rows if r.name.startswith("floor") and r.added}

    def paired_ratio(row):
        """Median over rounds of row / floor, each pair measured seconds apart."""
        floor = floors.get(row.kind)
        if not floor:
            return float("nan")
        return statistics.median(a / f for a, f in zip(row.added, floor.added))

    def min_ratio(row):
        floor = floors.get(row.kind)
        return min(row.added) / min(floor.added) if floor else float("nan")

    kernel = os.uname().release
    print(f"## Benchmark ({time.strftime('%Y-%m-%d')}, kernel {kernel}, {os.cpu_count()} CPUs)\n")
    print(f"Untraced bench_fn: {BASELINE:.1f} ns/call. {args.calls:,} calls per run, {args.repeat} runs per row: "
          "median (min).\n")
    print("| tracer | added ns/call | × floor (paired) | × floor (min/min) | events / calls | start-up ms | peak RSS MB | "
          "tracer CPU % | detach s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if not r.added:
            print(f"| {r.name} | {r.note or 'failed'} | | | | | | | |")
            continue
        events = "-"
        if r.events:
            worst = min(range(len(r.events)), key=lambda i: r.events[i])
            events = f"{r.events[worst]}/{r.calls[0]}"
            if r.lost[worst]:
                events += f" ({r.lost[worst]} reported lost)"
        print(f"| {r.name} | {fmt(r.added)} | {paired_ratio(r):.2f}× | {min_ratio(r):.2f}× | {events} | {fmt(r.startup)} | {fmt(r.rss, 1)} | "
              f"{fmt(r.cpu)} | {getattr(r, 'detach_s', 0):.2f} |")
    sites, uret = floors.get("sites"), floors.get("pair")
    if sites and uret:
        ratio_sites = statistics.median(a / f for a, f in zip(sites.added, uret.added))
        print(f"\nReturns seen at return instructions (`--ret-sites`: Go, C++ exceptions) cost "
              f"{ratio_sites:.1f}× a uretprobe per call here: the kernel single-steps a `ret`, "
              "where it emulates the `push` at a function's entry.")
    for note in notes:
        print(f"\n_{note}._")

    print("\n### Loss at paced call rates (one line per call, to a pipe)\n")
    print("| calls/s | calls | events printed | lost (reported) |")
    print("|---|---|---|---|")
    paced_rows = paced(args.calls, [10_000, 100_000, 1_000_000])
    for rate, calls, got, lost, _ in paced_rows:
        print(f"| {rate:,} | {calls:,} | {got:,} | {lost} |")

    print("\n### Attaching many functions: every function of libc (`libc '*' --count -p IDLE`)\n")
    print("| attach mode | functions | exec → attached s | detach s |")
    print("|---|---|---|---|")
    multi = attach_detach("*", "multi")
    if multi:
        print(f"| uprobe_multi (default) | {multi[0]} | {multi[1]:.2f} | {multi[2]:.2f} |")
    pattern = "str*" if args.quick else "*"
    result = attach_detach(pattern, "perf")
    if result:
        print(f"| one perf-event link each (`{pattern}`) | {result[0]} | {result[1]:.2f} | {result[2]:.2f} |")

    by_name = {r.name: r for r in rows if r.added}
    def ratio(name):
        row = by_name.get(name)
        return paired_ratio(row) if row else float("nan")
    ours = [r for r in rows if r.added and r.name.startswith(("ebpf-tool", "floor"))]
    full_rate = [p for p in paced_rows if p[0] == 1_000_000]
    checks = [
        ("--count ≤ 1.02 × floor", ratio("ebpf-tool --count"), 1.02, "×"),
        ("--latency ≤ 1.15 × pair floor", ratio("ebpf-tool --latency -q (in-kernel hist)"), 1.15, "×"),
        ("per-event stream ≤ 1.3 × floor", ratio("ebpf-tool (one line per call, to a pipe)"), 1.3, "×"),
        ("exec → attached ≤ 30 ms", max(statistics.median(r.startup) for r in ours), 30, " ms"),
        ("peak RSS ≤ 20 MB", max(max(r.rss) for r in ours), 20, " MB"),
        ("attach of every libc function ≤ 0.5 s", multi[1] if multi else float("nan"), 0.5, " s"),
        ("detach of every libc function ≤ 0.5 s", multi[2] if multi else float("nan"), 0.5, " s"),
        ("lost at 1M calls/s = 0", full_rate[0][3] if full_rate else float("nan"), 0, ""),
    ]
    print("\n### Targets\n")
    print("| target | measured | met? |")
    print("|---|---|---|")
    for name, value, limit, unit in checks:
        if value != value:  # NaN: not measured
            print(f"| {name} | not measured | - |")
            continue
        met = value <= limit
        by = "" if met else f" (over by {value - limit:.2f}{unit})"
        print(f"| {name} | {value:.2f}{unit} | {'yes' if met else 'no' + by} |")


if __name__ == "__main__":
    main()
