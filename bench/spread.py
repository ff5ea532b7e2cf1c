#!/usr/bin/env python3
"""The spread of the benchmark's ratios over several runs: reads the results-*.json that
`bench/run.py --out DIR` wrote and prints, for each row, its × floor ratio in each run and
the range, and each target's value per run.

    python3 bench/spread.py DIR
"""

import json
import sys
from pathlib import Path


def main():
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "bench")
    runs = [json.loads(p.read_text()) for p in sorted(directory.glob("results-*.json"))]
    if not runs:
        sys.exit(f"spread: no results-*.json in {directory}")
    print(f"### Spread over {len(runs)} runs ({', '.join(r['date'] for r in runs)})\n")
    print("| row | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | range |")
    print("|---|" + "---|" * len(runs) + "---|")
    names = [row["name"] for row in runs[0]["rows"]]
    for name in names:
        ratios = []
        for run in runs:
            row = next((r for r in run["rows"] if r["name"] == name), None)
            ratios.append(row["ratio"] if row and row["ratio"] == row["ratio"] else None)
        shown = [f"{r:.3f}×" if r is not None else "-" for r in ratios]
        known = [r for r in ratios if r is not None]
        span = f"{min(known):.3f}–{max(known):.3f}×" if known else "-"
        print(f"| {name} | " + " | ".join(shown) + f" | {span} |")
    print("\n| target | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |")
    print("|---|" + "---|" * len(runs))
    targets = []
    for run in runs:
        targets += [t["target"] for t in run["targets"] if t["target"] not in targets]
    for target in targets:
        cells = []
        for run in runs:
            t = next((t for t in run["targets"] if t["target"] == target), None)
            cells.append(f"{t['value']:.3f} ({'met' if t['met'] else 'missed'})" if t else "-")
        print(f"| {target} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
