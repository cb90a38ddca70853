"""Shift repair (issue 13, first measurement): repair_spec on the committed shift models.

    python experiments/bench_shift_repair.py --shifts scaling [--delta 1.0] [--verify-time 5] [--rounds 4]

Repair set: the images of the committed shift sweep (experiments/results/shift_sweep/results.csv,
MLP, cegar) that were falsified or unknown at ``delta``. Held-out: test images 50..59 of
experiments/models/shifts/test_images.npz (not in the sweep). Keep: 500 clean MNIST training
images the classifier gets right (hard). Reports the fraction of the repair set verified after
repair, clean MNIST test accuracy before/after (float32 export), the held-out verified fraction
before/after at the same delta, and wall time. Results: experiments/results/issue13/.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cegarnn.data.mnist import load_mnist                          # noqa: E402
from cegarnn.network import load_network                            # noqa: E402
from cegarnn.repair import predictions, repair_spec                 # noqa: E402
from cegarnn.specs.problem import generative_problem                # noqa: E402
from cegarnn.verifier import verify                                 # noqa: E402

OUT = ROOT / "experiments" / "results" / "issue13"
MODELS = ROOT / "experiments" / "models"


def latent_box(prior, x, delta):
    out = prior.forward(x)
    k = out.shape[0] // 2
    mu, sigma = out[:k], np.exp(0.5 * out[k:])
    return mu - delta * sigma, mu + delta * sigma


def verified_fraction(G, C, items, delta, prior, verify_time):
    ok = 0
    for x, y in items:
        lo, hi = latent_box(prior, x, delta)
        r = verify(generative_problem(G, C, x, int(y), latent_lower=lo, latent_upper=hi), time_limit=verify_time)
        ok += r.status == "verified"
    return ok / max(1, len(items))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shifts", nargs="+", default=["scaling"])
    ap.add_argument("--delta", type=float, default=1.0)
    ap.add_argument("--verify-time", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--keep", type=int, default=500)
    args = ap.parse_args(argv)
    with np.load(MODELS / "shifts" / "test_images.npz") as z:
        xs, ys = z["images"].reshape(len(z["images"]), -1).astype(np.float64), z["labels"]
    sweep = list(csv.DictReader(open(ROOT / "experiments" / "results" / "shift_sweep" / "results.csv")))
    C0 = load_network(MODELS / "classifier.onnx")
    Xt, yt = load_mnist("test")
    Xt = Xt.reshape(len(Xt), -1).astype(np.float64)
    Xtr, ytr = load_mnist("train")
    Xtr = Xtr[: args.keep].reshape(args.keep, -1).astype(np.float64)
    ok = predictions(C0, Xtr) == ytr[: args.keep]
    keep = (Xtr[ok], ytr[: args.keep][ok])
    acc0 = float(np.mean(predictions(C0, Xt) == yt))
    rows = []
    for shift in args.shifts:
        G = load_network(MODELS / "shifts" / shift / "generator.onnx")
        prior = load_network(MODELS / "shifts" / shift / "prior.onnx")
        bad = sorted({int(r["image"]) for r in sweep if r["shift"] == shift and r["classifier"] == "mlp"
                      and r["method"] == "cegar" and float(r["delta"]) == args.delta
                      and r["status"] in ("falsified", "unknown")})
        probs = [(xs[i], int(ys[i]), *latent_box(prior, xs[i], args.delta)) for i in bad]
        held = [(xs[i], ys[i]) for i in range(50, min(60, len(xs)))]
        held_before = verified_fraction(G, C0, held, args.delta, prior, args.verify_time)
        t = time.perf_counter()
        out = repair_spec(G, C0, probs, keep=keep, rounds=args.rounds, verify_time=args.verify_time)
        wall = time.perf_counter() - t
        acc1 = float(np.mean(predictions(out.classifier, Xt) == yt))
        held_after = verified_fraction(G, out.classifier, held, args.delta, prior, args.verify_time)
        row = dict(shift=shift, delta=args.delta, problems=len(probs),
                   verified_after=sum(v == "verified" for v in out.verdicts), rounds=len(out.rounds),
                   clean_acc_before=acc0, clean_acc_after=acc1, held_out=len(held),
                   held_verified_before=held_before, held_verified_after=held_after, wall_s=wall)
        rows.append(row)
        print(row, out.rounds, flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "shift_repair.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = ["# Shift repair with repair_spec (first measurement, issue 13)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores. Command: `python experiments/bench_shift_repair.py "
             f"--shifts {' '.join(args.shifts)} --delta {args.delta} --verify-time {args.verify_time} --rounds {args.rounds} "
             f"--keep {args.keep}`. MLP classifier; last layer L∞ finetune per round; keep images hard.", "",
             "| shift | repair set | verified after | clean acc before | after | held-out verified before | after | "
             "wall |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['shift']} | {r['problems']} | {r['verified_after']} | {100 * r['clean_acc_before']:.2f} % | "
                     f"{100 * r['clean_acc_after']:.2f} % | {100 * r['held_verified_before']:.0f} % | "
                     f"{100 * r['held_verified_after']:.0f} % | {r['wall_s']:.0f} s |")
    (OUT / "shift_repair.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
