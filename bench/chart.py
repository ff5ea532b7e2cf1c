"""An SVG bar chart of the benchmark's ratios, written beside its markdown: each row's
added cost per call as a multiple of its floor (median of paired rounds), one bar per
row, coloured by tool, with the targets drawn as lines. Plain SVG text, no plotting
library: the benchmark must run on a bare Debian with python3 alone."""

import html
import math

COLOURS = {"floor": "#9e9e9e", "ebpf-tool": "#1f77b4", "bpftrace": "#ff7f0e", "BCC": "#2ca02c", "perf": "#d62728"}


def svg(rows, targets, title):
    """rows: [(label, tool, ratio)]; targets: [(label, ratio)]. Ratios on a log scale
    (bpftrace's printf costs 10x more than a floor, the floors 1x)."""
    rows = [r for r in rows if r[2] == r[2] and r[2] > 0]
    bar_h, gap, left, width = 18, 6, 410, 460
    top = 64
    height = top + len(rows) * (bar_h + gap) + 50
    hi = max([r[2] for r in rows] + [2.0])
    scale_max = math.log10(hi * 1.15)

    def x(ratio):
        return left + width * max(0.0, math.log10(max(ratio, 1.0))) / scale_max

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{html.escape(title)}</text>',
           '<text x="10" y="38" fill="#555">added cost per call, × its floor (no-op probe of the same kind); '
           'log scale, lower is better</text>']
    for tick in (1, 1.5, 2, 3, 5, 10, 20, 50):
        if tick > hi * 1.15:
            break
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 4}" x2="{tx:.1f}" y2="{height - 40}" stroke="#eee"/>')
        out.append(f'<text x="{tx:.1f}" y="{height - 26}" text-anchor="middle" fill="#555">{tick:g}×</text>')
    for i, (label, tool, ratio) in enumerate(rows):
        y = top + i * (bar_h + gap)
        colour = COLOURS.get("floor" if label.startswith("floor") else tool, "#8c564b")
        shown = label if len(label) <= 60 else label[:57] + "..."
        out.append(f'<text x="{left - 8}" y="{y + 13}" text-anchor="end">{html.escape(shown)}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{max(x(ratio) - left, 2):.1f}" height="{bar_h}" '
                   f'fill="{colour}"/>')
        out.append(f'<text x="{x(ratio) + 4:.1f}" y="{y + 13}">{ratio:.2f}×</text>')
    for _, ratio in targets:
        tx = x(ratio)
        out.append(f'<line x1="{tx:.1f}" y1="{top - 6}" x2="{tx:.1f}" y2="{height - 40}" stroke="#000" '
                   'stroke-dasharray="4,3"/>')
    wanted = ", ".join(html.escape(label) for label, _ in targets)
    out.append(f'<text x="{left}" y="{top - 10}" fill="#000">dashed: the targets ({wanted})</text>')
    legend_x = 10
    for tool, colour in COLOURS.items():
        out.append(f'<rect x="{legend_x}" y="{height - 20}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{legend_x + 14}" y="{height - 11}">{tool}</text>')
        legend_x += 80
    out.append("</svg>")
    return "\n".join(out) + "\n"


TARGETS = [("--count 1.02×", 1.02), ("--latency, one line per call 1.10×", 1.10)]


def from_record(record):
    """The chart of one run's JSON record (bench/run.py --out)."""
    bars = [(r["name"], r["tool"], r["ratio"]) for r in record["rows"] if r["added"]]
    title = f"ebpf-tool vs bpftrace, BCC, perf ({record['date'][:10]}, kernel {record['kernel']})"
    return svg(bars, TARGETS, title)


if __name__ == "__main__":
    # python3 bench/chart.py RESULTS.json OUT.svg: redraws a run's chart.
    import json
    import sys

    with open(sys.argv[1]) as f:
        chart = from_record(json.load(f))
    with open(sys.argv[2], "w") as f:
        f.write(chart)
