"""Issue 15, item 5: cegar vs bab-crown on the 32-dim latent shift (affine32), MLP classifier.

    .venv/bin/python experiments/bench_shift32.py                               # both methods, then the report
    .venv/bin/python experiments/bench_shift32.py --methods cegar --no-report   # one method (run two in parallel)
    .venv/bin/python experiments/bench_shift32.py --report-only                 # tables from the finished cells

Each method is one sweep cell of the shift experiment (``cegarnn.shift.sweep.run_cell``, the same
function the Hydra sweep ``cegarnn-verify -m experiment=shift_sweep shift=affine32`` runs), with the
method's options from ``conf/verifier/<method>.yaml``, bounds ``auto`` and the HiGHS backend
(the sweep's defaults), ``delta`` 1.0, 5 s per image, the sweep's first 50 test images. Cells go to
``--work`` (``<work>/<method>/rows.csv``); the report writes ``--out``.csv (every row) and ``--out``.md
(decided counts, disagreements, where the time goes).
"""
from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHIFT = "affine32"
GEN = ROOT / "experiments/models/shifts/affine32/generator.onnx"
PRIOR = ROOT / "experiments/models/shifts/affine32/prior.onnx"
MLP = ROOT / "experiments/models/classifier.onnx"
IMAGES = ROOT / "experiments/models/shifts/test_images.npz"
TIMES = ("time_attack", "time_bounds", "time_encode", "time_solver")


def options_for(method: str, time_limit: float):
    from omegaconf import OmegaConf
    from cegarnn.verifier.options import Options

    v = dict(OmegaConf.to_container(OmegaConf.load(ROOT / "conf/verifier" / f"{method}.yaml")))
    v.pop("method")
    v.update(time_limit=float(time_limit), bounds="auto", backend="highs")
    return Options.from_mapping(v)


def cell_dir(work: Path, delta: float, method: str) -> Path:
    return work / f"delta{delta:g}" / method


def run(methods, deltas, time_limit, n_images, work: Path):
    from cegarnn.shift.sweep import run_cell

    for delta in deltas:
        for m in methods:
            t0 = time.perf_counter()
            rows = run_cell(shift=SHIFT, classifier_name="mlp", generator=GEN, classifier=MLP, prior=PRIOR,
                            images=IMAGES, delta=delta, method=m, options=options_for(m, time_limit),
                            n_images=n_images, out_dir=cell_dir(work, delta, m),
                            progress=lambda s: print(s, flush=True))
            print(f"delta {delta:g} {m}: {dict(Counter(str(r['status']) for r in rows))} "
                  f"in {time.perf_counter() - t0:.1f}s", flush=True)


def _f(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


def report(methods, deltas, work: Path, out: Path, command: str):
    from cegarnn.shift.rows import COLUMNS

    allrows = []
    for delta in deltas:
        for m in methods:
            with (cell_dir(work, delta, m) / "rows.csv").open(newline="") as f:
                allrows += list(csv.DictReader(f))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.with_suffix(".csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(allrows)
    lines = [f"# Issue 15, item 5: the 32-dim latent shift (affine32), MLP classifier, "
             f"{_f(allrows[0]['time_limit']):g} s per image", "",
             f"Command: `{command}`  ",
             f"Machine: 2 shared cores ({platform.processor() or platform.machine()}, AMD EPYC), no GPU; "
             f"Python {platform.python_version()}; 1 torch thread per run, the methods' cells run side by side.  ",
             f"Rows: `{out.with_suffix('.csv').relative_to(ROOT)}` (the sweep's rows.csv columns).", ""]
    for delta in deltas:
        lines += _delta_section(methods, [r for r in allrows if _f(r["delta"]) == delta], delta)
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _delta_section(methods, rows, delta):
    by = {m: {int(r["image"]): r for r in rows if r["method"] == m} for m in methods}
    images = sorted(set().union(*[set(v) for v in by.values()]))
    lines = [f"## delta = {delta:g}", "",
             "| method | verified | falsified | unknown | error | decided | decided within the limit | total time (s) | max over limit (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        c = Counter(r["status"] for r in by[m].values())
        tt = sum(_f(r["time"]) for r in by[m].values())
        over = max(_f(r["time"]) - _f(r["time_limit"]) for r in by[m].values())
        within = sum(r["status"] in ("verified", "falsified") and _f(r["time"]) <= _f(r["time_limit"])
                     for r in by[m].values())
        lines.append(f"| {m} | {c['verified']} | {c['falsified']} | {c['unknown']} | {c['error']} | "
                     f"**{c['verified'] + c['falsified']}** / {len(by[m])} | {within} | {tt:.1f} | {over:+.2f} |")
    dis = [i for i in images if {by[m][i]["status"] for m in methods if i in by[m]} >= {"verified", "falsified"}]
    lines += ["", f"Disagreements (one method verified, another falsified): **{len(dis)}**"
              + (f" (images {dis})" if dis else ""), ""]
    only = {m: [i for i in images if i in by[m] and by[m][i]["status"] in ("verified", "falsified")
                and any(i in by[o] and by[o][i]["status"] not in ("verified", "falsified") for o in methods if o != m)]
            for m in methods}
    for m in methods:
        lines.append(f"- decided by {m} only: {only[m] or 'none'}")
    lines += ["", "Where the time goes (share of each method's total time):", "",
              "| method | total (s) | attack | bounds | encode | solver | other | boxes | solver calls | breakpoints |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        rs = list(by[m].values())
        tt = sum(_f(r["time"]) for r in rs)
        parts = [sum(_f(r[k]) for r in rs) for k in TIMES]
        sh = [f"{100 * p / tt:.1f} %" for p in parts] + [f"{100 * (tt - sum(parts)) / tt:.1f} %"]
        lines.append(f"| {m} | {tt:.1f} | {' | '.join(sh)} | {sum(int(_f(r['boxes'])) for r in rs)} | "
                     f"{sum(int(_f(r['solver_calls'])) for r in rs)} | {sum(int(_f(r['breakpoints'])) for r in rs)} |")
    lines += ["", "Counterexamples found by:", ""]
    for m in methods:
        c = Counter(r["found_by"] for r in by[m].values() if r["status"] == "falsified")
        lines.append(f"- {m}: {dict(c)}")
    lines += ["", "Unknown reasons:", ""]
    for m in methods:
        c = Counter(r["reason"] for r in by[m].values() if r["status"] not in ("verified", "falsified"))
        lines.append(f"- {m}: {dict(c)}")
    lines += ["", "<details><summary>per image</summary>", "", "| image | " + " | ".join(methods) + " |", "|---:|" + "---|" * len(methods)]
    for i in images:
        cells = [f"{by[m][i]['status']} {_f(by[m][i]['time']):.2f}s" if i in by[m] else "" for m in methods]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return lines + ["", "</details>", ""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["cegar", "bab-crown"])
    ap.add_argument("--deltas", type=float, nargs="+", default=[1.0])
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per image")
    ap.add_argument("--n-images", type=int, default=50)
    ap.add_argument("--work", type=Path, default=ROOT / "multirun" / "issue15_shift32")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments/results/issue15/shift32")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--command", default=None, help="the command line to record in the report")
    args = ap.parse_args(argv)
    if not args.report_only:
        run(args.methods, args.deltas, args.timeout, args.n_images, args.work)
    if not args.no_report:
        report(args.methods, args.deltas, args.work, args.out,
               args.command or "python experiments/bench_shift32.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
