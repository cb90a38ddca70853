"""Issue 15: a `cegarnn bench` run beside earlier runs and a-b-CROWN 2021, instance by instance.

    .venv/bin/python experiments/report_vnncomp_runs.py RUN.csv --stats RUN.csv.d --title "..." \
        --command "cegarnn bench ..." --compare "committed 30 s"=experiments/results/issue15/mnistfc_30s.csv \
        --out experiments/results/issue15/mnistfc_official

Writes ``--out``.csv (RUN's rows, paths made relative to the repository: ``../shared/...``) and
``--out``.md: counts per run (over RUN's instances), disagreements with a-b-CROWN 2021, and one
row per instance with the split counts from the ``--stats`` JSONs (``cegarnn bench`` writes them
next to its CSV) when given.
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cegarnn.vnncomp.compare import load_tool  # noqa: E402

AB_CROWN = ROOT.parent / "shared" / "benchmarks" / "vnncomp2021" / "results" / "a-b-CROWN.csv"


def _relative(path: str, base: Path | None = None) -> str:
    """A benchmark path as the repository names it (``../shared/...``); a relative one is taken
    relative to ``base`` (the instances CSV's folder) first."""
    p = str(path)
    if base is not None and not Path(p).is_absolute():
        p = str(base / p)
    i = p.find("/shared/")
    return "../shared/" + p[i + len("/shared/"):] if i >= 0 else p


def _splits(stats_dir, net: str, prop: str) -> str:
    if stats_dir is None:
        return ""
    f = Path(stats_dir) / f"{net}__{prop}.json"
    if not f.is_file():
        return ""
    cases = json.loads(f.read_text()).get("cases") or []
    c = cases[0][3] if cases and len(cases[0]) > 3 and isinstance(cases[0][3], dict) else None
    if not c:
        return ""
    return (f"{c.get('input_splits', 0)} / {c.get('neuron_splits', 0)} ({c.get('segment_splits', 0)}, "
            f"{c.get('relu_splits', 0)}), {c.get('lp_calls', 0)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--stats", type=Path, default=None)
    ap.add_argument("--instances-dir", type=Path, default=None,
                    help="the folder RUN's relative paths are relative to (the instances CSV's)")
    ap.add_argument("--compare", action="append", default=[], metavar="LABEL=CSV")
    ap.add_argument("--title", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--note", action="append", default=[], help="a line for the header (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    rows = [r for r in csv.reader(open(args.run)) if r]
    out_csv = args.out.with_suffix(".csv")
    with open(out_csv, "w", newline="") as f:
        w = csv.writer(f)
        for r in rows:
            w.writerow([r[0], _relative(r[1], args.instances_dir), _relative(r[2], args.instances_dir), *r[3:]])
    ours = load_tool(args.run)
    others = [(lab, load_tool(p)) for lab, p in (c.split("=", 1) for c in args.compare)]
    ab = load_tool(AB_CROWN)
    keys = list(ours)

    def count(tool):
        cats = [tool.get(k, ("missing",))[0] for k in keys]
        v, fa = cats.count("verified"), cats.count("falsified")
        return v, fa, len(keys) - v - fa

    table = ["| | verified (unsat) | falsified (sat) | unsolved | decided |", "|---|---:|---:|---:|---:|"]
    for lab, tool in [("this run", ours), *others, ("a-b-CROWN 2021 (official timeouts)", ab)]:
        v, fa, u = count(tool)
        table.append(f"| {lab} | {v} | {fa} | {u} | **{v + fa}** / {len(keys)} |")
    dis = [k for k in keys if {ours[k][0], ab.get(k, ("missing",))[0]} == {"verified", "falsified"}]
    head = ["| network | property | result | time (s) | " + " | ".join(lab for lab, _ in others)
            + (" | " if others else "") + "a-b-CROWN | input / neuron splits (segment, ReLU), LP calls |",
            "|---|---|---|---:|" + "---|" * len(others) + "---|---|"]
    for k in keys:
        cat, raw, t = ours[k]
        cells = [o.get(k, ("", "–", ""))[1] for _, o in others]
        head.append(f"| {k[0]} | {k[1]} | {raw} | {float(t):.1f} | " + " | ".join(cells) + (" | " if cells else "")
                    + f"{ab.get(k, ('', '–', ''))[1]} | {_splits(args.stats, *k)} |")
    lines = [f"# {args.title}", "", f"Command: `{args.command}`  ",
             f"Machine: 2 shared cores ({platform.machine()}, AMD EPYC), other jobs running.  ",
             *[n + "  " for n in args.note],
             f"Rows: `{out_csv.relative_to(ROOT) if out_csv.is_relative_to(ROOT) else out_csv}`", "",
             *table, "", f"Disagreements with a-b-CROWN: **{len(dis)}**" + (f" ({dis})" if dis else ""), "", *head]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:14]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
