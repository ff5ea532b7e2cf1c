"""The peers ebpf-tool is compared with, as benchmark rows: bpftrace, BCC (funccount,
funclatency, trace) and perf (`perf probe` + `perf stat`, `perf record`).

scripts/bench-setup.sh installs them and unpacks kernel headers for BCC; a peer that is
missing or cannot run here is left out with a note saying why, never silently.
"""

import atexit
import os
import re
import shutil
import subprocess
import tempfile

from common import ROOT, TARGET, Spec


def count_bpftrace_printf(stdout, _stderr):
    return stdout.count("hit ")


def count_bpftrace_map(stdout, _stderr):
    match = re.search(r"@\w*: (\d+)", stdout)
    return int(match.group(1)) if match else 0


def count_funccount(stdout, _stderr):
    match = re.search(r"bench_fn\s+(\d+)", stdout)
    return int(match.group(1)) if match else 0


def count_hist_total(stdout, _stderr):
    """Calls in a bpftrace or BCC log2 histogram (`[lo, hi) n |@@@|`, `[lo] n |@|` or
    `lo -> hi : n |**|`)."""
    return sum(int(n) for n in re.findall(r"[\]):]\s+(\d+)\s+\|", stdout))


def count_trace_lines(stdout, _stderr):
    return sum(1 for line in stdout.splitlines() if "bench_fn" in line)


def count_perf_stat(_stdout, stderr):
    match = re.search(r"^\s*([\d,]+)\s+probe_\w+:bench_fn", stderr, re.M)
    return int(match.group(1).replace(",", "")) if match else 0


def count_perf_record(_stdout, stderr):
    match = re.search(r"\((\d+) samples\)", stderr)
    return int(match.group(1)) if match else 0


def bpftrace_specs(target):
    bt = lambda prog: ["bpftrace", "-e", prog]
    return [
        Spec("bpftrace count()", "entry", bt(f"uprobe:{target}:bench_fn {{ @ = count(); }}"),
             count_bpftrace_map, tool="bpftrace"),
        Spec("bpftrace hist(latency)", "pair",
             bt(f"uprobe:{target}:bench_fn {{ @s[tid] = nsecs; }} "
                f"uretprobe:{target}:bench_fn /@s[tid]/ {{ @h = hist(nsecs - @s[tid]); delete(@s[tid]); }}"),
             count_hist_total, tool="bpftrace"),
        Spec("bpftrace printf (to a pipe)", "entry",
             bt(f"uprobe:{target}:bench_fn {{ printf(\"hit %d\\n\", pid); }}"),
             count_bpftrace_printf, pipe=True, tool="bpftrace"),
    ]


def bcc_headers():
    """The kernel tree BCC compiles against: $BCC_KERNEL_SOURCE, or the one
    scripts/bench-setup.sh unpacked; None when neither exists."""
    given = os.environ.get("BCC_KERNEL_SOURCE")
    if given:
        return given
    merged = ROOT / "target" / "bench" / "kernel-headers" / "merged"
    return str(merged) if (merged / "include" / "linux" / "kconfig.h").exists() else None


def bcc_specs(target):
    """BCC's rows, after checking that it compiles here (it needs kernel headers)."""
    funccount = shutil.which("funccount-bpfcc")
    if not funccount:
        return [], "BCC not installed (scripts/bench-setup.sh installs it): its rows are skipped"
    headers = bcc_headers()
    env = dict(os.environ)
    if headers:
        env["BCC_KERNEL_SOURCE"] = headers
    try:
        probe = subprocess.run([funccount, "-d", "1", f"{target}:bench_fn"], capture_output=True, text=True,
                               timeout=120, env=env)
        failed = probe.returncode != 0 or "Failed to compile" in probe.stderr
        error = (probe.stderr.strip().splitlines() or ["failed"])[-1] if failed else None
    except subprocess.TimeoutExpired:
        error = "did not finish in 120 s"
    if error:
        return [], (f"BCC is installed but cannot run here ({error}; headers: {headers or 'none'}): "
                    "its rows are skipped")
    specs = [
        Spec("BCC funccount", "entry", [funccount, f"{target}:bench_fn"], count_funccount, env=env, tool="BCC"),
        Spec("BCC funclatency", "pair", [shutil.which("funclatency-bpfcc"), f"{target}:bench_fn"],
             count_hist_total, env=env, tool="BCC"),
        Spec("BCC trace (to a pipe)", "entry", [shutil.which("trace-bpfcc"), f"{target}:bench_fn"],
             count_trace_lines, pipe=True, env=env, tool="BCC"),
    ]
    return specs, f"BCC compiles against the headers in {headers} (Debian's nearest to this kernel)"


def perf_specs(target):
    """perf's rows: one `perf probe` event on bench_fn, counted system-wide by `perf stat`
    and recorded (every hit a sample) by `perf record`. The event is deleted at exit."""
    perf = shutil.which("perf")
    if not perf:
        return [], "perf not installed (scripts/bench-setup.sh installs linux-perf): its rows are skipped"
    added = subprocess.run([perf, "probe", "-q", "-x", str(target), "bench_fn"], capture_output=True, text=True)
    if added.returncode != 0:
        # bench_fn is assembly, which the -g build's DWARF does not describe, and perf probe
        # looks names up in DWARF when there is any: give it the symbol's address instead.
        nm = subprocess.run(["nm", str(target)], capture_output=True, text=True).stdout
        address = next((line.split()[0] for line in nm.splitlines() if line.endswith(" bench_fn")), None)
        if address:
            added = subprocess.run([perf, "probe", "-q", "-x", str(target), f"bench_fn=0x{address}"],
                                   capture_output=True, text=True)
    listed = subprocess.run([perf, "probe", "-l"], capture_output=True, text=True).stdout
    match = re.search(r"(probe_\w+:bench_fn)\s", listed)
    if not match:
        why = (added.stderr.strip().splitlines() or ["no event"])[-1]
        return [], f"perf probe could not add an event on bench_fn ({why}): its rows are skipped"
    event = match.group(1)
    atexit.register(lambda: subprocess.run([perf, "probe", "-q", "-d", event], capture_output=True))
    data = tempfile.NamedTemporaryFile(prefix="bench-perf-", suffix=".data", delete=False).name
    atexit.register(lambda: os.path.exists(data) and os.unlink(data))
    specs = [
        Spec("perf stat (perf probe event)", "entry", [perf, "stat", "-e", event, "-a"], count_perf_stat,
             tool="perf"),
        Spec("perf record (perf probe event, to a file)", "entry",
             [perf, "record", "-e", event, "-a", "-o", data], count_perf_record, tool="perf"),
    ]
    return specs, f"perf rows use the uprobe event `{event}` made by `perf probe -x TARGET bench_fn`"


def peer_specs():
    target = str(TARGET)
    specs, notes = [], []
    if shutil.which("bpftrace"):
        specs += bpftrace_specs(target)
    else:
        notes.append("bpftrace not installed (scripts/bench-setup.sh installs it): its rows are skipped")
    for make in (bcc_specs, perf_specs):
        more, note = make(target)
        specs += more
        notes.append(note)
    return specs, notes
