#!/usr/bin/env python3
"""ebpf-tool benchmark: what a probe costs the traced program, measured against the
physical floor (a uprobe whose program does nothing) and against bpftrace, BCC and perf.
Prints a markdown report; with --out DIR also writes DIR/RESULTS.md, DIR/RESULTS.svg (a
chart of the ratios) and DIR/results-TIMESTAMP.json (for bench/spread.py).

    python3 bench/run.py [--calls N] [--repeat R] [--quick] [--out DIR]

Run scripts/bench-setup.sh first (root): it installs bpftrace, BCC and perf, and unpacks
the kernel headers BCC compiles against. Rows for peers that cannot run are skipped with a
note. How one row is measured: bench/common.py. A VM's noise only ever adds time and
drifts over minutes, so rows take turns (every row once, R times over) and the × floor
ratio is the median over those R rounds of the row's cost divided by its floor's cost in
the same round (seconds apart); the ratio of the minima is shown too, and the targets are
judged on the paired median.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import chart
import extras
import peers
from common import BASELINES, Spec, build, fmt, measure, measure_baselines, paired
from extras import count_hist, count_lines, count_stacks, count_table, ebpf_tool


def tool_specs():
    return [
        Spec("floor: no-op uprobe", "entry", ebpf_tool("--noop")),
        Spec("floor: no-op uprobe + uretprobe", "pair", ebpf_tool("--noop", "--ret")),
        Spec("ebpf-tool --count", "entry", ebpf_tool("--count"), count_table("bench_fn")),
        # --latency -q runs in uprobe sessions (Linux 6.13+); the maps path, for comparison.
        Spec("ebpf-tool --latency -q (in-kernel hist)", "pair", ebpf_tool("--latency", "-q"), count_hist),
        Spec("ebpf-tool --latency -q, paired in maps (EBPF_TOOL_SESSIONS=off)", "pair",
             ebpf_tool("--latency", "-q"), count_hist, env=dict(os.environ, EBPF_TOOL_SESSIONS="off")),
        # Returns seen at return instructions instead of uretprobes (Go, C++ exceptions).
        Spec("floor: no-op uprobe + return-site probe", "sites", ebpf_tool("--noop", "--ret", "--ret-sites")),
        Spec("ebpf-tool --latency -q --ret-sites", "sites", ebpf_tool("--latency", "-q", "--ret-sites"),
             count_hist),
        Spec("ebpf-tool (one line per call, to a pipe)", "entry", ebpf_tool(), count_lines, pipe=True),
        Spec("ebpf-tool --json (to a pipe)", "entry", ebpf_tool("--json"),
             lambda o, e: o.count('"type":"call"'), pipe=True),
        # Stacks: the kernel's frame-pointer walk, and 16 KiB of stack copied for userspace
        # unwinding with .eh_frame (--unwind dwarf).
        Spec("ebpf-tool --stacks --unwind fp", "entry", ebpf_tool("--stacks", "--unwind", "fp"), count_stacks),
        Spec("ebpf-tool --stacks --unwind dwarf", "entry", ebpf_tool("--stacks", "--unwind", "dwarf"),
             count_stacks),
    ]


def main_table(rows, floors, out):
    out("| tracer | added ns/call | × floor (paired) | × floor (min/min) | events / calls | start-up ms | "
        "peak RSS MB | RSS MB without mapped rings | tracer CPU % | detach s |")
    out("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if not r.added:
            out(f"| {r.name} | {r.note or 'failed'} | | | | | | | | |")
            continue
        floor = floors.get(r.kind)
        min_ratio = min(r.added) / min(floor.added) if floor else float("nan")
        out(f"| {r.name} | {fmt(r.added)} | {paired(r, floor):.2f}× | {min_ratio:.2f}× | {events(r)} | "
            f"{fmt(r.startup)} | {fmt(r.rss, 1)} | {fmt(r.rss_own, 1)} | {fmt(r.cpu)} | {fmt(r.detach, 2)} |")


def events(r):
    if not r.events:
        return "-"
    worst = min(range(len(r.events)), key=lambda i: r.events[i])
    text = f"{r.events[worst]}/{r.calls[0]}"
    if r.lost[worst]:
        text += f" ({r.lost[worst]} reported lost)"
    return text


def prices(by_name, out):
    """Each new mode against its alternative, measured in the same rounds."""
    pairs = [
        ("return-site probes vs uretprobes (floors)", "floor: no-op uprobe + return-site probe",
         "floor: no-op uprobe + uretprobe"),
        ("`--latency --ret-sites` vs `--latency`", "ebpf-tool --latency -q --ret-sites",
         "ebpf-tool --latency -q (in-kernel hist)"),
        ("`--latency` in uprobe sessions vs paired in maps", "ebpf-tool --latency -q (in-kernel hist)",
         "ebpf-tool --latency -q, paired in maps (EBPF_TOOL_SESSIONS=off)"),
        ("`--unwind dwarf` (16 KiB copied) vs `--unwind fp`", "ebpf-tool --stacks --unwind dwarf",
         "ebpf-tool --stacks --unwind fp"),
        ("`--unwind dwarf --stack-bytes 2048` vs `--unwind fp`",
         "ebpf-tool --stacks --unwind dwarf --stack-bytes 2048", "ebpf-tool --stacks --unwind fp"),
        ("`-a 1:str` (typed string) vs `-a 0,1` (raw registers)", "req: -a 1:str (a typed string)",
         "req: -a 0,1 (raw registers)"),
        ("`-a r->len,name` (debug info) vs `-a 0,1`", "req: -a r->len,name (debug info)",
         "req: -a 0,1 (raw registers)"),
        ("USDT site behind a semaphore vs a plain site (traced)", "usdt bench:gated --count (semaphore)",
         "usdt bench:plain --count (no semaphore)"),
        ("`--metrics` scraped 10×/s vs `--count`", "ebpf-tool --count --metrics (10 scrapes/s)",
         "ebpf-tool --count"),
    ]
    out("| mode vs its alternative | mode ns/call | alternative ns/call | × alternative (paired) | "
        "events / calls |")
    out("|---|---|---|---|---|")
    for label, mode, alternative in pairs:
        a, b = by_name.get(mode), by_name.get(alternative)
        if not a or not b or not a.added or not b.added:
            out(f"| {label} | not measured | | | |")
            continue
        out(f"| {label} | {fmt(a.added)} | {fmt(b.added)} | {paired(a, b):.2f}× | {events(a)} |")
    out(f"\nUntraced ns/call of each target mode: " +
        ", ".join(f"`{mode}` {ns:.1f}" for mode, ns in BASELINES.items()) +
        " (`usdt` computes its probe's argument on every call; `gated` only while its semaphore is "
        "raised, so untraced it skips the work).")
    scrape = by_name.get("ebpf-tool --count --metrics (10 scrapes/s)")
    notes = [n for n in (scrape.during if scrape else []) if n is not None]
    if notes:
        out(f"A `/metrics` scrape took {statistics.median(notes):.2f} ms (median) while the target ran.")
    out("Sleepable string reads (`uprobe.s`) are not built yet, so they have no row: a string in a page "
        "not yet faulted in shows as `(unreadable)` and is counted.")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer calls and repeats, no perf-event detach row")
    parser.add_argument("--out", type=Path, help="write RESULTS.md, RESULTS.svg and a JSON record here")
    parser.add_argument("--no-perf-links", action="store_true",
                        help="leave out the every-libc-function row with one perf-event link each "
                        "(its detach alone takes minutes)")
    parser.add_argument("--only", help="measure only the rows whose name contains this, and nothing else "
                        "(for trying a row out)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.repeat = 300_000, 2
    if os.geteuid() != 0:
        sys.exit("bench: needs root (it loads eBPF programs)")
    build()
    measure_baselines(["fn", "req", "usdt", "gated"], args.calls)

    lines = []
    out = lambda text="": (print(text, flush=True), lines.append(text))
    others, notes = peers.peer_specs()
    specs = tool_specs() + others + extras.price_specs()
    if args.only:
        specs = [s for s in specs if args.only in s.name or s.name.startswith("floor")]
    rows = measure(specs, args.calls, args.repeat)
    by_name = {r.name: r for r in rows}
    floors = {r.kind: r for r in rows if r.name.startswith("floor") and r.added}
    main_rows = [r for r in rows if not r.kind.startswith("price")]

    out(f"## Benchmark ({time.strftime('%Y-%m-%d')}, kernel {os.uname().release}, {os.cpu_count()} CPUs)\n")
    out(f"Untraced bench_fn: {BASELINES['fn']:.1f} ns/call. {args.calls:,} calls per run, {args.repeat} runs "
        "per row: median (min).\n")
    main_table(main_rows, floors, out)
    for note in notes:
        out(f"\n_{note}._")

    out("\n### The new modes, each against its alternative\n")
    prices(by_name, out)
    if args.only:
        return

    out("\n### Loss at paced call rates (one line per call, to a pipe)\n")
    out("| producers | calls/s asked | calls/s achieved | calls | events printed | lost (reported) |")
    out("|---|---|---|---|---|---|")
    one = extras.paced([10_000, 100_000, 1_000_000])
    two = extras.paced([100_000, 200_000, 400_000, 800_000, 0], mode="fn2")
    for threads, table in ((1, one), (2, two)):
        for p in table:
            asked = f"{p['rate']:,}" if p["rate"] else "as fast as they can"
            out(f"| {threads} | {asked} | {p['achieved']:,.0f} | {p['calls']:,} | {p['printed']:,} | "
                f"{p['lost']} |")
    lossless = [p for p in two if p["lost"] == 0 and p["printed"] == p["calls"]]
    best_two = max((p["achieved"] for p in lossless), default=0)
    out(f"\nTwo producer threads: {best_two:,.0f} events/s is the highest rate measured here with every call "
        "printed and nothing lost; where a run printed fewer, the rest is the lost count beside it, never "
        "silent.")

    out("\n### Attaching many functions (`--count -p IDLE`)\n")
    out("| file | attach mode | functions | exec → attached s | detach s |")
    out("|---|---|---|---|---|")
    scale = {}
    big = extras.rustc_driver()
    rows_of_scale = [("libc", "libc", "*", "multi"), ("libc", "libc", "str*" if args.quick else "*", "perf"),
                     ("librustc_driver", big, "*", "multi")]
    if args.no_perf_links:
        rows_of_scale.pop(1)
    for label, binary, pattern, mode in rows_of_scale:
        if not binary:
            out(f"| {label} | | no librustc_driver on this machine | | |")
            continue
        result = extras.attach_detach(binary, pattern, mode)
        if result:
            scale[(label, mode)] = result
            how = "uprobe_multi (default)" if mode == "multi" else f"one perf-event link each (`{pattern}`)"
            out(f"| {label} `{pattern}` | {how} | {result[0]:,} | {result[1]:.2f} | {result[2]:.2f} |")

    out("\n### What a `-p` probe costs other processes\n")
    cost = extras.cost_to_others(args.calls, max(3, args.repeat))
    out("| another process calling bench_fn | ns/call (median) | min |")
    out("|---|---|---|")
    for label, values in cost.items():
        if values:
            out(f"| {label} | {statistics.median(values):.1f} | {min(values):.1f} |")

    def over_floor(name):
        row = by_name.get(name)
        return paired(row, floors.get(row.kind)) if row else float("nan")

    ours = [r for r in main_rows if r.added and r.tool == "ebpf-tool"]
    full_rate = [p for p in one if p["rate"] == 1_000_000]
    untraced, scoped, wide = cost.get("untraced"), cost.get("-p another process"), cost.get("system-wide")
    rustc = scale.get(("librustc_driver", "multi"))
    checks = [
        ("--count ≤ 1.02 × floor", over_floor("ebpf-tool --count"), 1.02, "×"),
        ("--latency ≤ 1.10 × pair floor", over_floor("ebpf-tool --latency -q (in-kernel hist)"), 1.10, "×"),
        ("one line per call ≤ 1.10 × floor", over_floor("ebpf-tool (one line per call, to a pipe)"), 1.10, "×"),
        ("exec → attached ≤ 20 ms", max(statistics.median(r.startup) for r in ours), 20, " ms"),
        ("peak RSS ≤ 10 MB (every mode)", max(max(r.rss) for r in ours), 10, " MB"),
        ("RSS without mapped rings ≤ 10 MB (every mode)", max(max(r.rss_own) for r in ours), 10, " MB"),
        ("librustc_driver '*' attach ≤ 1 s", rustc[1] if rustc else float("nan"), 1.0, " s"),
        ("librustc_driver '*' detach ≤ 1 s", rustc[2] if rustc else float("nan"), 1.0, " s"),
        ("lost at 1M calls/s = 0", full_rate[0]["lost"] if full_rate else float("nan"), 0, ""),
        # "Pays nothing": what -p adds to another process is under 1 % of what a system-wide
        # probe adds (a difference of a nanosecond or two is this VM's run-to-run noise).
        ("-p: another process pays < 1 % of a system-wide probe's cost",
         100 * (statistics.median(scoped) - statistics.median(untraced))
         / (statistics.median(wide) - statistics.median(untraced)) if scoped and untraced and wide
         else float("nan"), 1.0, " %"),
    ]
    out("\n### Targets\n")
    out("| target | measured | met? |")
    out("|---|---|---|")
    verdicts = []
    for name, value, limit, unit in checks:
        if value != value:  # NaN: not measured
            out(f"| {name} | not measured | - |")
            continue
        met = value <= limit
        verdicts.append((name, value, met))
        digits = 3 if unit == "×" else 2
        by = "" if met else f" (over by {value - limit:.{digits}f}{unit})"
        out(f"| {name} | {value:.{digits}f}{unit} | {'yes' if met else 'no' + by} |")

    if args.out:
        write_outputs(args.out, lines, main_rows, floors, verdicts, by_name)


def write_outputs(directory, lines, main_rows, floors, verdicts, by_name):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "RESULTS.md").write_text("\n".join(lines) + "\n")
    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "kernel": os.uname().release,
        "baselines": BASELINES,
        "rows": [dict(r.as_dict(), ratio=paired(r, floors.get(r.kind))) for r in main_rows],
        "prices": {name: r.as_dict() for name, r in by_name.items() if r.kind.startswith("price")},
        "targets": [{"target": n, "value": v, "met": m} for n, v, m in verdicts],
    }
    (directory / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(record, indent=1) + "\n")
    (directory / "RESULTS.svg").write_text(chart.from_record(record))


if __name__ == "__main__":
    main()
