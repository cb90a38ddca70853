"""Issue 15 items 2-3: ``neuron-bab`` vs ``cegar`` vs ``bab-crown`` in one run.

    .venv/bin/python experiments/bench_neuron_bab.py                     # all three parts, defaults below
    .venv/bin/python experiments/bench_neuron_bab.py --parts random --random-timeout 10 --out /tmp/nb

Parts (one process, one thread, instances one after another):

* ``mnistfc``: a fixed subset of VNN-COMP 2021 mnistfc (``MNISTFC`` below: 256x2 and 256x4
  properties a-b-CROWN needed branching for, plus one SAT) with ``--vnn-timeout`` seconds each;
  known answer = a-b-CROWN's 2021 result (``holds``/``violated``; unknown where it timed out).
* ``eran``: a fixed subset of ERAN sigmoid 6x200 (``ERAN`` below), same timeout and known answers.
* ``random``: ``experiments/random_instances.py`` (``ri.default_instances()``, answers known),
  through ``bench_random_instances.run`` with ``--random-timeout`` seconds each.

Every method uses ``conf/verifier/<method>.yaml`` with bounds ``auto`` and HiGHS. Writes
``--out``.csv (one row per instance and method) and ``--out``.md (decided, correct, WRONG,
median times, proofs that needed neuron splits).
"""
from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

VNN = ROOT.parent / "shared/benchmarks/vnncomp2021"
METHODS = ("neuron-bab", "cegar", "bab-crown")
MNISTFC = [("mnist-net_256x2.onnx", f"prop_{i}_0.03.vnnlib") for i in (0, 1, 3, 5, 7)] + \
          [("mnist-net_256x2.onnx", f"prop_{i}_0.05.vnnlib") for i in (0, 2)] + \
          [("mnist-net_256x4.onnx", f"prop_{i}_0.03.vnnlib") for i in (0, 4, 5)]
ERAN = [f"mnist_spec_idx_{i}_eps_0.01200.vnnlib" for i in (7167, 7903, 9629, 9044)]
COLUMNS = ("part", "instance", "known", "method", "status", "verdict_vs_known", "time", "time_limit",
           "reason", "neuron_splits", "input_splits", "neuron_leaves", "boxes", "solver_calls")


def _known_2021(benchmark: str, net: str, prop: str) -> str:
    with open(VNN / "results" / "a-b-CROWN.csv", newline="") as f:
        for r in csv.reader(f):
            if r[0] == benchmark and r[1].endswith(net) and r[2].endswith(prop):
                return {"unsat": "verified", "holds": "verified", "sat": "falsified",
                        "violated": "falsified"}.get(r[4].strip().lower(), "unknown")
    return "unknown"


def _summary(res) -> dict:
    s = next((t for t in reversed(res.stats.trajectory) if t.get("move") in ("neuron_bab", "neuron-bab")), {})
    return dict(neuron_splits=s.get("neuron_splits", ""), input_splits=s.get("input_splits", ""),
                neuron_leaves=s.get("closed_leaves_with_neuron_splits", ""), boxes=res.stats.boxes_bounded,
                solver_calls=res.stats.solver_calls)


def run_vnnlib(part: str, items, timeout: float, methods, progress=print) -> list:
    from bench_random_instances import options_for
    from cegarnn.specs.vnnlib_problems import vnnlib_problems
    from cegarnn.verifier.cegar import run as verify

    rows = []
    for net, prop, bench in items:
        problems = vnnlib_problems(net, prop)
        known = _known_2021(bench, Path(net).name, Path(prop).name)
        for m in methods:
            t0 = time.perf_counter()
            status, reason, extra = "verified", "", {}
            for p in problems:                   # every input box of the property; sat on the first cex
                left = timeout - (time.perf_counter() - t0)
                if left <= 0:
                    status, reason = "unknown", "time limit"
                    break
                base, opts = options_for(m, left)
                res = verify(p, base, opts)
                extra = _summary(res)
                if res.status != "verified":
                    status, reason = str(res.status.value), res.reason
                    if res.status == "falsified":
                        break
            dt = time.perf_counter() - t0
            verdict = ("undecided" if status == "unknown" else "unchecked" if known == "unknown" else
                       "correct" if status == known else "WRONG")
            rows.append(dict(part=part, instance=f"{Path(net).stem}/{Path(prop).stem}", known=known, method=m,
                             status=status, verdict_vs_known=verdict, time=round(dt, 3), time_limit=timeout,
                             reason=reason[:80], **extra))
            progress(f"{part:8s} {rows[-1]['instance']:45s} {m:11s} {status:9s} {dt:6.2f}s {verdict} {reason[:50]}")
    return rows


def run_random(timeout: float, methods, progress=print) -> list:
    import bench_random_instances as bri
    rows = []
    for r in bri.run(list(methods), timeout, progress=progress):
        rows.append(dict(part="random", instance=r["instance"], known=r["known"], method=r["method"],
                         status=r["status"], verdict_vs_known=r["verdict_vs_known"], time=r["time"],
                         time_limit=timeout, reason=r["reason"][:80], boxes=r["boxes"],
                         solver_calls=r["solver_calls"]))
    return rows


def report(rows, out: Path, command: str) -> str:
    f = lambda v: float(v) if v not in ("", None) else 0.0
    lines = ["# neuron-bab vs cegar vs bab-crown (issue 15 items 2-3)", "", f"Command: `{command}`  ",
             f"Machine: 2 shared cores (AMD EPYC, {platform.machine()}), no GPU, other jobs running; "
             f"Python {platform.python_version()}, 1 thread, one instance at a time.  ",
             f"mnistfc subset: {', '.join(f'{n[:-5]}/{p[:-7]}' for n, p in MNISTFC)}.  ",
             f"ERAN sigmoid 6x200 subset: {', '.join(e[:-7] for e in ERAN)}.  ",
             "Known answers: a-b-CROWN's VNN-COMP 2021 results (mnistfc, ERAN; `unknown` where it timed out), "
             "the generator's proofs/planted counterexamples (random).", "",
             "`late`: decided, but after more than 1.1 x the time limit (auto_LiRPA calls are not interrupted).", "",
             "| part | method | instances | verified | falsified | correct | **wrong** | undecided | late | "
             "median time decided (s) | proofs with neuron splits |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for part in dict.fromkeys(r["part"] for r in rows):
        for m in dict.fromkeys(r["method"] for r in rows if r["part"] == part):
            rs = [r for r in rows if r["part"] == part and r["method"] == m]
            dec = [r for r in rs if r["status"] in ("verified", "falsified")]
            med = f"{statistics.median(f(r['time']) for r in dec):.2f}" if dec else "–"
            nb = sum(1 for r in rs if r["status"] == "verified" and f(r.get("neuron_leaves")) > 0)
            nb = str(nb) if m == "neuron-bab" and part != "random" else "–"
            late = sum(1 for r in dec if f(r["time"]) > 1.1 * f(r["time_limit"]))
            lines.append(f"| {part} | {m} | {len(rs)} | {sum(r['status'] == 'verified' for r in rs)} | "
                         f"{sum(r['status'] == 'falsified' for r in rs)} | "
                         f"{sum(r['verdict_vs_known'] == 'correct' for r in rs)} | "
                         f"**{sum(r['verdict_vs_known'] == 'WRONG' for r in rs)}** | "
                         f"{sum(r['status'] == 'unknown' for r in rs)} | {late} | {med} | {nb} |")
    names = list(dict.fromkeys((r["part"], r["instance"]) for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines += ["", "Per instance (status, seconds; neuron-bab: neuron splits / input splits):", "",
              "| part | instance | known | " + " | ".join(methods) + " |", "|---|---|---|" + "---|" * len(methods)]
    for part, n in names:
        cells, known = [], ""
        for m in methods:
            r = next((r for r in rows if r["part"] == part and r["instance"] == n and r["method"] == m), None)
            if r is None:
                cells.append("")
                continue
            known = r["known"]
            tag = " **WRONG**" if r["verdict_vs_known"] == "WRONG" else ""
            sp = f" ({r['neuron_splits']}/{r['input_splits']})" if r.get("neuron_splits") not in ("", None) else ""
            cells.append(f"{r['status']} {f(r['time']):.2f}{sp}{tag}")
        lines.append(f"| {part} | {n} | {known} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    out.with_suffix(".md").write_text(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", nargs="+", default=["mnistfc", "eran", "random"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--vnn-timeout", type=float, default=30.0)
    ap.add_argument("--random-timeout", type=float, default=10.0)
    ap.add_argument("--limit", type=int, default=None, help="first N instances of each VNN-COMP part")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments/results/issue15/neuron_bab")
    ap.add_argument("--report-only", action="store_true", help="rewrite <out>.md from <out>.csv")
    ap.add_argument("--command", default=None, help="the command line to record in the report")
    args = ap.parse_args(argv)
    if args.report_only:
        with args.out.with_suffix(".csv").open(newline="") as fh:
            print(report(list(csv.DictReader(fh)), args.out, args.command or ""))
        return 0
    import torch
    torch.set_num_threads(1)
    command = args.command or "python experiments/bench_neuron_bab.py " + " ".join(sys.argv[1:] if argv is None else argv)
    echo = lambda s: print(s, flush=True)
    rows = []
    if "mnistfc" in args.parts:
        items = [(VNN / "mnistfc" / n, VNN / "mnistfc" / p, "mnistfc") for n, p in MNISTFC][:args.limit]
        rows += run_vnnlib("mnistfc", items, args.vnn_timeout, args.methods, echo)
    if "eran" in args.parts:
        net = VNN / "eran/nets/ffnnSIGMOID__Point_6x200.onnx"
        items = [(net, VNN / "eran/specs/mnist" / e, "eran") for e in ERAN][:args.limit]
        rows += run_vnnlib("eran", items, args.vnn_timeout, args.methods, echo)
    if "random" in args.parts:
        rows += run_random(args.random_timeout, args.methods, echo)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.with_suffix(".csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)
    print(report(rows, args.out, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
