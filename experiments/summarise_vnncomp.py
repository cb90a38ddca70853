"""Markdown table of our VNN-COMP 2021 runs beside the 2021 tools' answers.

    .venv/bin/python experiments/summarise_vnncomp.py OURS.csv [OURS2.csv ...] --out experiments/results/vnncomp2021/README.md

Counts are over the instances our CSVs contain (a partial run is said to be partial); times are our
run seconds (the 2021 tools ran on other machines: compare counts, times only as an order of magnitude).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cegarnn.vnncomp.compare import compare, load_tool  # noqa: E402

RESULTS_2021 = ROOT.parent / "shared" / "benchmarks" / "vnncomp2021" / "results"


def section(ours: Path, expected: int) -> list[str]:
    tools = [ours] + sorted(RESULTS_2021.glob("*.csv"))
    names = ["cegarnn (ours)"] + [p.stem for p in tools[1:]]
    order, keys, counts, dis = compare(tools, names=names)
    mine = load_tool(ours)
    times = [float(v[2]) for v in mine.values() if v[2] not in ("", None)]
    nets = sorted({k[0] for k in keys})
    lines = [f"### `{ours.name}` — {len(keys)} of {expected} instances"
             + (" (partial run)" if len(keys) < expected else ""), "",
             f"Networks: {', '.join(nets)}. Our median run time {statistics.median(times):.1f} s "
             f"(max {max(times):.1f} s)." if times else "", "",
             "| tool | verified | falsified | unsolved | missing |", "|---|---|---|---|---|"]
    for n in order:
        c = counts[n]
        lines.append(f"| {n} | {c['verified']} | {c['falsified']} | {c['unsolved']} | {c['missing']} |")
    ours_dis = [(k, a) for k, a in dis if names[0] in a]
    other_dis = [(k, a) for k, a in dis if names[0] not in a]
    lines += ["", f"Disagreements involving our answers: **{len(ours_dis)}**"]
    for k, a in ours_dis:
        lines.append(f"- DISAGREEMENT {k[0]} {k[1]}: " + ", ".join(f"{t}={v[1]}" for t, v in a.items()))
    if other_dis:
        lines += ["", f"Disagreements among the 2021 tools themselves on these instances: {len(other_dis)}"]
        for k, a in other_dis:
            lines.append(f"- {k[1]}: " + ", ".join(f"{t}={v[1]}" for t, v in a.items()))
    return lines + [""]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("ours", nargs="+", help="our results CSVs, each optionally NAME=EXPECTED_COUNT suffixed as path:count")
    p.add_argument("--out", required=True)
    p.add_argument("--header", default="")
    args = p.parse_args(argv)
    lines = ["# VNN-COMP 2021 benchmarks: cegarnn beside the 2021 tools", "", args.header, ""]
    for item in args.ours:
        path, _, n = item.partition(":")
        lines += section(Path(path), int(n) if n else 0)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
