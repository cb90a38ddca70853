"""Issue 15: the verifier on random generator+classifier instances with known answers.

    .venv/bin/python experiments/bench_random_instances.py                       # 20 instances, 3 methods, 30 s
    .venv/bin/python experiments/bench_random_instances.py --methods bab-crown --timeout 10 --out /tmp/x
    .venv/bin/python experiments/bench_random_instances.py --merge a.csv b.csv --out experiments/results/issue15/random_instances

Instances: ``experiments/random_instances.py`` (10 verified with a proven minimum margin in
[0.05, 0.05 + gap], 10 falsified with a planted counterexample of margin -0.1; the answers come from
the committed cache ``experiments/results/issue15/random_instances.json``). Methods: names of
``cegarnn.verifier.methods.METHODS`` with the options of ``conf/verifier/<method>.yaml``, bounds
``auto``, HiGHS; ``cegar-segments`` / ``cegar-input`` are ``cegar`` with that ``policy``. Each run
gets ``--timeout`` seconds. Writes ``--out``.csv (one row per instance and method) and ``--out``.md
(per-method summary: decided, correct, wrong, median/max time; per-instance table). A verdict that
contradicts the known answer is a soundness bug and is printed as WRONG.
"""
from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import random_instances as ri  # noqa: E402

COLUMNS = ("instance", "seed", "known", "latent_dim", "method", "status", "verdict_vs_known", "time",
           "time_limit", "reason", "found_by", "cex_margin", "iterations", "breakpoints", "boxes",
           "solver_calls", "time_attack", "time_bounds", "time_encode", "time_solver",
           "known_min_margin_lo", "known_min_margin_hi", "sampled_violating_fraction")


def options_for(method: str, time_limit: float):
    from omegaconf import OmegaConf
    from cegarnn.verifier.options import Options

    base, _, policy = method.partition("-") if method.startswith("cegar-") else (method, "", "")
    v = dict(OmegaConf.to_container(OmegaConf.load(ROOT / "conf/verifier" / f"{base}.yaml")))
    v.pop("method")
    v.update(time_limit=float(time_limit), bounds="auto", backend="highs")
    if policy:
        v["policy"] = policy
    return base, Options.from_mapping(v)


def run(methods, timeout, seeds=None, progress=print):
    import torch
    from cegarnn.verifier.cegar import run as verify

    torch.set_num_threads(1)
    cache = ri.load_cache()
    insts = ri.default_instances(cache)
    if seeds:
        insts = [i for i in insts if i.base.seed in seeds]
    for inst in insts:                       # build (and check against torch) outside the timed run
        inst._problem = inst.problem()
    verify(insts[0]._problem, "crown", options_for("crown", 5.0)[1])   # warm up the imports
    rows = []
    for m in methods:
        base, opts = options_for(m, timeout)
        for inst in insts:
            k = inst.known
            row = dict(instance=inst.name, seed=inst.base.seed, known=inst.kind, latent_dim=inst.base.k, method=m,
                       time_limit=timeout,
                       known_min_margin_lo=k.get("min_margin_at_least", k.get("planted_margin")),
                       known_min_margin_hi=k.get("min_margin_at_most", k.get("planted_margin")),
                       sampled_violating_fraction=cache[str(inst.base.seed)]["independent_float32"]
                       ["sampled_violating_fraction"])
            t0 = time.perf_counter()
            res = verify(inst._problem, base, opts)
            s = res.stats
            status = str(getattr(res.status, "value", res.status))
            row.update(status=status, time=round(time.perf_counter() - t0, 3), reason=res.reason or "",
                       iterations=s.iterations, breakpoints=s.breakpoints_added, boxes=s.boxes_bounded,
                       solver_calls=s.solver_calls, time_attack=round(s.time_attack, 3),
                       time_bounds=round(s.time_bounds, 3), time_encode=round(s.time_encode, 3),
                       time_solver=round(s.time_solver, 3))
            if res.counterexample is not None and status == "falsified":
                row.update(found_by=res.counterexample.found_by, cex_margin=float(res.counterexample.margin_ir))
            row["verdict_vs_known"] = ("correct" if status == inst.kind else
                                       "WRONG" if status in ("verified", "falsified") else "undecided")
            rows.append(row)
            progress(f"{m:15s} {inst.name:28s} k={inst.base.k:2d} {status:9s} {row['time']:7.2f}s "
                     f"{row['verdict_vs_known']} {row['reason'][:60]}")
    return rows


def write_csv(rows, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)


def read_csv(paths):
    rows = []
    for p in paths:
        with open(p, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def report(rows, out: Path, command: str):
    f = lambda v: float(v) if v not in ("", None) else 0.0
    methods = list(dict.fromkeys(r["method"] for r in rows))
    names = list(dict.fromkeys(r["instance"] for r in rows))
    by = {(r["method"], r["instance"]): r for r in rows}
    lines = ["# Random generator+classifier instances with known answers (issue 15)", "",
             f"Command: `{command}`  ",
             f"Machine: 2 shared cores ({platform.machine()}, AMD EPYC), no GPU, other jobs running; "
             f"Python {platform.python_version()}, 1 torch thread.  ",
             "Instances: `experiments/random_instances.py` (known answers cached in "
             "`experiments/results/issue15/random_instances.json`), rows: "
             f"`{out.with_suffix('.csv').relative_to(ROOT) if out.is_absolute() and ROOT in out.parents else out.with_suffix('.csv')}`.",
             "", "| method | verified (of 10) | falsified (of 10) | wrong | undecided | median time verified (s) | "
             "median time falsified (s) | total (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        v = [r for r in rs if r["known"] == "verified" and r["status"] == "verified"]
        fa = [r for r in rs if r["known"] == "falsified" and r["status"] == "falsified"]
        wrong = sum(r["verdict_vs_known"] == "WRONG" for r in rs)
        und = sum(r["verdict_vs_known"] == "undecided" for r in rs)
        med = lambda xs: f"{statistics.median(f(r['time']) for r in xs):.2f}" if xs else "–"
        lines.append(f"| {m} | {len(v)} | {len(fa)} | **{wrong}** | {und} | {med(v)} | {med(fa)} | "
                     f"{sum(f(r['time']) for r in rs):.1f} |")
    lines += ["", "Where the time goes (share of each method's total):", "",
              "| method | attack | bounds | encode | solver | other | boxes | solver calls | breakpoints |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        tt = sum(f(r["time"]) for r in rs) or 1.0
        parts = [sum(f(r[k]) for r in rs) for k in ("time_attack", "time_bounds", "time_encode", "time_solver")]
        lines.append(f"| {m} | " + " | ".join(f"{100 * p / tt:.1f} %" for p in parts)
                     + f" | {100 * (tt - sum(parts)) / tt:.1f} % | {sum(int(f(r['boxes'])) for r in rs)} | "
                     f"{sum(int(f(r['solver_calls'])) for r in rs)} | {sum(int(f(r['breakpoints'])) for r in rs)} |")
    lines += ["", "Per instance (status and seconds; `known min margin`: the proven range of the minimum margin "
              "of a verified instance, or the margin at the planted counterexample; `viol. frac.`: share of "
              "22,000 random latent points (uniform and corners) that violate):", "",
              "| instance | k | known | known min margin | viol. frac. | " + " | ".join(methods) + " |",
              "|---|---:|---|---|---:|" + "---|" * len(methods)]
    for n in names:
        r0 = next(r for r in rows if r["instance"] == n)
        lo, hi = f(r0["known_min_margin_lo"]), f(r0["known_min_margin_hi"])
        km = f"{lo:.3f}" if r0["known"] == "falsified" else f"[{lo:.3f}, {hi:.3f}]"
        cells = []
        for m in methods:
            r = by.get((m, n))
            if r is None:
                cells.append("")
                continue
            tag = {"correct": "", "WRONG": " **WRONG**", "undecided": ""}[r["verdict_vs_known"]]
            cells.append(f"{r['status']} {f(r['time']):.2f}{tag}")
        lines.append(f"| {n} | {r0['latent_dim']} | {r0['known']} | {km} | {f(r0['sampled_violating_fraction']):.4f} | "
                     + " | ".join(cells) + " |")
    reasons = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if r["verdict_vs_known"] == "undecided":
            reasons[r["method"]][r["reason"][:80]] += 1
    if reasons:
        lines += ["", "Undecided reasons:", ""] + [f"- {m}: {dict(c)}" for m, c in reasons.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["cegar", "cegar-segments", "bab-crown"])
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per instance and method")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="default: all 20 instances")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments/results/issue15/random_instances",
                    help="path without suffix: writes <out>.csv and <out>.md")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, help="only merge these CSVs into --out")
    ap.add_argument("--command", default=None, help="the command line to record in the report")
    args = ap.parse_args(argv)
    command = args.command or "python experiments/bench_random_instances.py " + " ".join(sys.argv[1:])
    if args.merge:
        rows = read_csv(args.merge)
    else:
        rows = run(args.methods, args.timeout, args.seeds, progress=lambda s: print(s, flush=True))
        rows = [{c: r.get(c, "") for c in COLUMNS} for r in rows]
    write_csv(rows, args.out.with_suffix(".csv"))
    report(read_csv([args.out.with_suffix(".csv")]), args.out, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
