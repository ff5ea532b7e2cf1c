"""What every benchmark row shares: building the target, running it, starting and stopping
a tracer, and measuring one row the same way as every other.

A row is measured like this: the tracer is started; bench/target.c waits until the probe
lands in its text (the watched function's first byte becomes 0xCC) to time start-up, or,
for probes it cannot watch (USDT sites, `-p` of another process), the tracer's own
"attached" line is awaited; then the target calls its function N times and reports
ns/call; the tracer is stopped and its output counted. Added cost = traced ns/call -
untraced ns/call of the same target mode.
"""

import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "target" / "bench"
TOOL = ROOT / "target" / "release" / "ebpf-tool"
TARGET = BUILD / "target"

# Untraced ns/call of each target mode, measured at the start of the run.
BASELINES = {}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def build():
    BUILD.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path.home() / '.cargo' / 'bin'}:{env.get('PATH', '')}"
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ebpf-tool"], cwd=ROOT, check=True, env=env)
    sh(["cc", "-O2", "-g", "-pthread", "-o", str(TARGET), str(ROOT / "bench" / "target.c"),
        str(ROOT / "bench" / "gated.c")])


def run_target(mode, calls, rate=0):
    out = sh([str(TARGET), mode, str(calls), str(rate)]).stdout
    fields = dict(kv.split("=") for kv in out.split())
    return float(fields["ns_per_call"])


def measure_baselines(modes, calls):
    for mode in modes:
        BASELINES[mode] = statistics.median(run_target(mode, calls) for _ in range(5))


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


def mapped_bpf_mb(pid):
    """MB of the process's resident memory that are BPF maps it mapped (ring buffers:
    kernel memory the kernel maps in full, twice over for a ring's data pages)."""
    total_kb, in_map = 0, False
    try:
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                in_map = "anon_inode:bpf-map" in line
            elif in_map and line.startswith("Rss:"):
                total_kb += int(line.split()[1])
    except OSError:
        return 0.0
    return total_kb / 1024


class Spec:
    """One tracer row to measure: how to run it and how to count what it reported.

    kind: which floor it is compared with ("entry", "pair", "sites"), or a price group.
    mode: the target's mode (which function it calls). watch: the function whose first
    byte tells the probe is in; None to wait for the tracer's "attached" line instead.
    tool: who made the row (ebpf-tool, bpftrace, BCC, perf), for the chart's colours.
    during: a callable run (as a thread) while the target runs, returning a note."""

    def __init__(self, name, kind, argv, count_events=None, pipe=False, env=None, tool="ebpf-tool",
                 mode="fn", watch="bench_fn", during=None):
        self.name, self.kind, self.argv = name, kind, argv
        self.count_events, self.pipe, self.env, self.tool = count_events, pipe, env, tool
        self.mode, self.watch, self.during = mode, watch, during


class Row:
    def __init__(self, spec):
        self.name, self.kind, self.tool, self.mode = spec.name, spec.kind, spec.tool, spec.mode
        self.added, self.startup, self.rss, self.cpu, self.events, self.calls, self.lost = (
            [], [], [], [], [], [], [])
        self.detach, self.during, self.rss_own = [], [], []
        self.note = ""

    def as_dict(self):
        return {k: v for k, v in vars(self).items()}


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


ATTACHED = re.compile(r"Uprobe attached successfully")


def wait_for_line(files, pattern, timeout_s):
    """Monotonic ns when `pattern` first appears in one of the files, or 0."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for f in files:
            f.seek(0)
            if pattern.search(f.read()):
                return time.monotonic_ns()
        time.sleep(0.005)
    return 0


def reported_lost(stdout, stderr):
    """Events ebpf-tool itself reported lost (its summary line, text or JSON)."""
    match = re.search(r"events seen, \d+ printed, (\d+) lost", stderr) or re.search(r'"lost":(\d+)', stdout)
    stacks = re.search(r"(\d+) stacks not captured", stdout + stderr)
    return (int(match.group(1)) if match else 0) + (int(stacks.group(1)) if stacks else 0)


def measure(specs, calls, repeat):
    """Runs each spec `repeat` times around the target; returns a Row per spec.

    Runs are interleaved (every row once, then every row again, ...) so that the VM's
    drifting noise lands on the floors and the tracers alike, and the ratios compare runs
    made minutes apart at most."""
    rows = [Row(spec) for spec in specs]
    for _ in range(repeat):
        for spec, row in zip(specs, rows):
            if not row.note:
                measure_once(spec, row, calls)
    return rows


def measure_once(spec, row, calls):
    out = tempfile.TemporaryFile(mode="w+")
    err = tempfile.TemporaryFile(mode="w+")
    waiter = None
    if spec.watch:
        waiter = subprocess.Popen([str(TARGET), "wait", "120000", spec.watch], stdout=subprocess.PIPE, text=True)
    started = time.monotonic_ns()
    tracer, cat = start_tracer(spec.argv, out, err, spec.pipe, spec.env)
    if waiter:
        probed = waiter.communicate()[0]
        at = int(probed.split("=")[1]) if "=" in probed else 0
    else:
        at = wait_for_line([out, err], ATTACHED, 120)
    if at == 0:
        stop(tracer)
        row.note = "never attached"
        return
    row.startup.append((at - started) / 1e6)
    time.sleep(0.2)
    cpu0, _ = proc_stat(tracer.pid)
    during = None
    if spec.during:
        import threading
        result = {}
        done = threading.Event()
        during = threading.Thread(target=lambda: result.update(note=spec.during(done)))
        during.start()
    traced = run_target(spec.mode, calls)
    if during:
        done.set()
        during.join()
        row.during.append(result.get("note"))
    time.sleep(0.5)  # let the tracer drain
    cpu1, rss = proc_stat(tracer.pid)
    ring_mb = mapped_bpf_mb(tracer.pid)
    t_stop = time.monotonic()
    stop(tracer)
    row.detach.append(time.monotonic() - t_stop)
    if cat:
        cat.wait(timeout=60)
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
    row.added.append(traced - BASELINES[spec.mode])
    row.rss.append(rss)
    row.rss_own.append(rss - ring_mb)
    workload_s = traced * calls / 1e9
    row.cpu.append(100.0 * (cpu1 - cpu0) / max(workload_s + 0.5, 1e-9))
    row.calls.append(calls)
    if spec.count_events:
        row.events.append(spec.count_events(stdout, stderr))
        row.lost.append(reported_lost(stdout, stderr) if spec.argv[0] == str(TOOL) else 0)


def fmt(values, digits=0):
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.{digits}f}" if len(values) == 1 else f"{med:.{digits}f} (min {min(values):.{digits}f})"


def paired(row, base):
    """Median over rounds of row / base, each pair measured seconds apart."""
    if not row or not base or not row.added or not base.added:
        return float("nan")
    return statistics.median(a / f for a, f in zip(row.added, base.added))
