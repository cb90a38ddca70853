"""Benchmark of the verifier on the committed demo models (issue: CEGAR verifier).

Every method runs on the same instances, side by side (methods interleaved per instance), with the
same time limit, in one process. Writes a tidy CSV (one row per instance x method), a Markdown
summary with the machine and the command, and checks that definitive answers never disagree.

    .venv/bin/python experiments/bench_verify.py                       # full run (see --help)
    .venv/bin/python experiments/bench_verify.py --images 3 --deltas 1 --time-limit 10   # smoke
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cegarnn.specs.problem import generative_problem  # noqa: E402
from cegarnn.verifier import verify  # noqa: E402

MODELS = ROOT / "experiments" / "models"
FIELDS = ["delta", "image", "label", "method", "status", "reason", "time", "iterations", "boxes",
          "solver_calls", "breakpoints", "max_binaries", "time_bounds", "time_solver", "found_by"]


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(args) -> list[dict]:
    data = np.load(MODELS / "test_images.npz")
    xs, ys = data["images"], data["labels"]
    n = min(args.images, len(xs))
    rows: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for delta in args.deltas:
            for i in range(n):
                x, y = xs[i].reshape(-1).astype(np.float64), int(ys[i])
                prob = generative_problem(str(MODELS / "generator.onnx"), str(MODELS / "classifier.onnx"), x, y,
                                          prior=str(MODELS / "prior.onnx"), delta=delta, name=f"img{i}-d{delta}")
                line = []
                for m in args.methods:
                    t = time.perf_counter()
                    r = verify(prob, method=m, time_limit=args.time_limit, seed=args.seed)
                    dt = time.perf_counter() - t
                    s = r.stats
                    row = dict(delta=delta, image=i, label=y, method=m, status=r.status, reason=r.reason,
                               time=round(dt, 3), iterations=s.iterations, boxes=s.boxes_bounded,
                               solver_calls=s.solver_calls, breakpoints=s.breakpoints_added,
                               max_binaries=s.max_binaries, time_bounds=round(s.time_bounds, 3),
                               time_solver=round(s.time_solver, 3),
                               found_by=r.counterexample.found_by if r.counterexample else "")
                    w.writerow(row)
                    f.flush()
                    rows.append(row)
                    line.append(f"{m}={r.status[:4]}/{dt:.1f}s")
                print(f"delta {delta:g} image {i:2d}: " + "  ".join(line), flush=True)
    return rows


def disagreements(rows) -> list[str]:
    by = {}
    for r in rows:
        if r["status"] in ("verified", "falsified"):
            by.setdefault((r["delta"], r["image"]), set()).add((r["status"], r["method"]))
    out = []
    for key, v in sorted(by.items()):
        if len({s for s, _ in v}) > 1:
            out.append(f"delta {key[0]} image {key[1]}: " + ", ".join(f"{m}={s}" for s, m in sorted(v)))
    return out


def cli_startup() -> dict:
    """Wall time of `cegarnn-verify --help` and of `import cegarnn` in a fresh interpreter."""
    exe = Path(sys.executable).parent / "cegarnn-verify"
    res = {}
    for name, cmd in [("import cegarnn", [sys.executable, "-c", "import cegarnn"]),
                      ("cegarnn-verify --help", [str(exe), "--help"])]:
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=False)
            ts.append(time.perf_counter() - t)
        res[name] = min(ts)
    return res


def summarise(rows, args, startup, wall) -> str:
    lines = ["# Verifier benchmark (demo models)", "",
             f"Command: `.venv/bin/python experiments/bench_verify.py {' '.join(sys.argv[1:])}`".rstrip(),
             "",
             f"Machine: {os.cpu_count()} cores, {cpu_model()}, load average at the end "
             f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; torch {torch.__version__} with "
             f"{torch.get_num_threads()} thread(s); Python {platform.python_version()}. Total wall time {wall / 60:.1f} min.",
             "",
             f"Instances: the first {args.images} committed test images (all correctly classified) x latent radii "
             f"delta in {args.deltas} (box mu ± delta·sigma of the prior); time limit {args.time_limit:g} s per "
             "instance and method; times are in-process (interpreter start-up excluded). Every method starts with "
             "the same cheap attack (samples + PGD).", ""]
    lines += ["| delta | method | verified | falsified | unknown | median time (s) | max time (s) | total time (s) |",
              "|---|---|---|---|---|---|---|---|"]
    for delta in args.deltas:
        for m in args.methods:
            rs = [r for r in rows if r["delta"] == delta and r["method"] == m]
            if not rs:
                continue
            c = {k: sum(r["status"] == k for r in rs) for k in ("verified", "falsified", "unknown")}
            ts = [r["time"] for r in rs]
            lines.append(f"| {delta:g} | {m} | {c['verified']} | {c['falsified']} | {c['unknown']} | "
                         f"{statistics.median(ts):.2f} | {max(ts):.2f} | {sum(ts):.1f} |")
    lines += ["", "All radii together:", "",
              "| method | decided | verified | falsified | unknown | median time (s) | total time (s) |",
              "|---|---|---|---|---|---|---|"]
    for m in args.methods:
        rs = [r for r in rows if r["method"] == m]
        c = {k: sum(r["status"] == k for r in rs) for k in ("verified", "falsified", "unknown")}
        ts = [r["time"] for r in rs]
        lines.append(f"| {m} | {c['verified'] + c['falsified']} | {c['verified']} | {c['falsified']} | "
                     f"{c['unknown']} | {statistics.median(ts):.2f} | {sum(ts):.1f} |")
    dis = disagreements(rows)
    lines += ["", f"Disagreements among definitive answers: {len(dis)}" + (" (none)" if not dis else "")]
    lines += [f"- {d}" for d in dis]
    reasons = {}
    for r in rows:
        if r["status"] == "unknown":
            reasons.setdefault(r["method"], {}).setdefault(r["reason"], 0)
            reasons[r["method"]][r["reason"]] += 1
    if reasons:
        lines += ["", "Reasons for `unknown`:", ""]
        for m, d in reasons.items():
            lines.append(f"- {m}: " + "; ".join(f"{k} ({v})" for k, v in d.items()))
    lines += ["", "CLI start-up (fresh interpreter, best of 3): " +
              ", ".join(f"`{k}` {v:.2f} s" for k, v in startup.items())]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=30)
    p.add_argument("--deltas", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    p.add_argument("--methods", nargs="+", default=["cegar", "lp", "milp-fixed", "crown", "bab-crown"])
    p.add_argument("--time-limit", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: stable timings on a shared machine)")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bench_verify.csv"))
    p.add_argument("--md", default=str(ROOT / "experiments" / "results" / "bench_verify.md"))
    p.add_argument("--merge", nargs="+", metavar="CSV",
                   help="do not run: merge these CSVs (e.g. methods run in parallel processes) into --out/--md")
    p.add_argument("--wall-minutes", type=float, default=None, help="with --merge: wall time to report")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    if args.merge:
        rows = []
        for path in args.merge:
            with open(path) as f:
                for r in csv.DictReader(f):
                    r["delta"], r["image"], r["time"] = float(r["delta"]), int(r["image"]), float(r["time"])
                    rows.append(r)
        rows.sort(key=lambda r: (r["delta"], r["image"], args.methods.index(r["method"])))
        with open(args.out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
        wall = 60 * (args.wall_minutes or 0.0)
    else:
        rows = run(args)
        wall = time.perf_counter() - t
    md = summarise(rows, args, cli_startup(), wall)
    Path(args.md).write_text(md)
    print(md)
    return 1 if disagreements(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
