"""Shift repair (issue 13): repair_spec on the committed shift models, beside ordinary training.

    python experiments/bench_shift_repair.py [--shifts brightness contrast rotation scaling shear]
        [--verify-time 5] [--rounds 6] [--keep 2000] [--samples 8] [--area] [--no-baseline]

Repair set per shift: experiments/specs/shift_repair/<shift>.npz, the test images the committed
shift sweep (MLP, cegar) left falsified or unknown at delta 1.0 (written by
experiments/make_shift_repair_specs.py, the files `cegarnn repair --spec` and
conf/repair_shifts.yaml use). Held-out: held_out_<shift>.npz, test images 50..59 (not in the
sweep, so never in a repair set). Keep: keep.npz, the first ``--keep`` clean MNIST training
images the classifier gets right (hard constraints, added lazily); a ``--keep`` larger than
keep.npz (1947 images) takes them the same way from the first 20,000 MNIST training images.
``--max-accuracy-drop F``: repair_spec's accuracy budget, measured on MNIST training images
50,000..59,999 (never keep images; the test set stays for the report). Per shift and method it reports the
repair set verified after, clean MNIST test accuracy before/after (float32 export), the held-out
verified fraction before/after at the same delta, and wall time.

Baseline ("what a user tries first"): the same classifier trained with Adam on cross-entropy, on
mini-batches of generated images G(x, z) (z uniform in the repair problems' latent boxes) mixed
half and half with the keep images, for the wall time repair_spec took on that shift (training
only; its verification afterwards is not counted), then verified by the same verifier.

Results: experiments/results/issue13/shift_repair.{csv,md} and shift_repair_<shift>.png
(before/after counterexamples).
"""
from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cegarnn.cli.repair_spec import load_spec_problems              # noqa: E402
from cegarnn.data.mnist import load_mnist                          # noqa: E402
from cegarnn.network import load_network                            # noqa: E402
from cegarnn.repair import predictions, repair_spec                 # noqa: E402
from cegarnn.repair.spec_figure import spec_repair_figure           # noqa: E402
from cegarnn.specs.problem import generative_problem                # noqa: E402
from cegarnn.verifier import verify                                 # noqa: E402

OUT = ROOT / "experiments" / "results" / "issue13"
MODELS = ROOT / "experiments" / "models"
SPECS = ROOT / "experiments" / "specs" / "shift_repair"      # experiments/make_shift_repair_specs.py
SHIFTS = ("brightness", "contrast", "rotation", "scaling", "shear")


def verdicts(G, C, probs, verify_time):
    return [str(verify(generative_problem(G, C, x, int(y), latent_lower=lo, latent_upper=hi),
                       time_limit=verify_time).status) for x, y, lo, hi in probs]


def train_baseline(G, C0, probs, keep, seconds, seed=0, batch=64, lr=1e-3):
    """Ordinary fine-tuning for ``seconds``: Adam on cross-entropy over generated images from the
    problems' latent boxes plus keep images (half each per mini-batch). Returns (network, steps)."""
    import torch

    from cegarnn.network.torch_io import from_torch, to_torch
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = to_torch(G, dtype=torch.float32)
    model = to_torch(C0, dtype=torch.float32).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    X = torch.as_tensor(np.stack([p[0] for p in probs]), dtype=torch.float32)
    Y = torch.as_tensor([p[1] for p in probs])
    LO = np.stack([p[2] for p in probs])
    HI = np.stack([p[3] for p in probs])
    KX = torch.as_tensor(keep[0], dtype=torch.float32)
    KY = torch.as_tensor(keep[1])
    t0, steps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        i = rng.integers(0, len(probs), batch)
        z = torch.as_tensor(LO[i] + (HI[i] - LO[i]) * rng.random(LO[i].shape), dtype=torch.float32)
        with torch.no_grad():
            g = gen(torch.cat([X[i], z], 1))
        k = torch.as_tensor(rng.integers(0, len(KY), batch))
        loss = torch.nn.functional.cross_entropy(model(torch.cat([g, KX[k]])), torch.cat([Y[i], KY[k]]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return from_torch(model.eval().double(), input_shape=(C0.n_inputs,)), steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shifts", nargs="+", default=list(SHIFTS))
    ap.add_argument("--verify-time", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--keep", type=int, default=2000)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--area", action="store_true")
    ap.add_argument("--area-leaves", type=int, default=256)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--max-accuracy-drop", type=float, default=None)
    ap.add_argument("--tag", default="shift_repair", help="output file stem")
    args = ap.parse_args(argv)
    C0 = load_network(MODELS / "classifier.onnx")
    Xt, yt = load_mnist("test")
    Xt = Xt.reshape(len(Xt), -1).astype(np.float64)
    with np.load(SPECS / "keep.npz") as z:
        keep = (z["x"][: args.keep].astype(np.float64), z["y"][: args.keep])
    Xr, yr = (None, None)
    if args.keep > len(keep[1]) or args.max_accuracy_drop is not None:
        Xr, yr = load_mnist("train")
        Xr = Xr.reshape(len(Xr), -1).astype(np.float64)
    if args.keep > len(keep[1]):
        ok = predictions(C0, Xr[:20000]) == yr[:20000]
        keep = (Xr[:20000][ok][: args.keep], yr[:20000][ok][: args.keep])
    budget = {} if args.max_accuracy_drop is None else dict(
        validation=(Xr[50000:], yr[50000:]), max_accuracy_drop=args.max_accuracy_drop)
    acc0 = float(np.mean(predictions(C0, Xt) == yt))
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    for shift in args.shifts:
        G = load_network(MODELS / "shifts" / shift / "generator.onnx")
        probs, bad = load_spec_problems(SPECS / f"{shift}.npz", G)
        held, _ = load_spec_problems(SPECS / f"held_out_{shift}.npz", G)
        held_before = verdicts(G, C0, held, args.verify_time).count("verified")
        t = time.perf_counter()
        out = repair_spec(G, C0, probs, keep=keep, rounds=args.rounds, verify_time=args.verify_time,
                          margin=args.margin, samples=args.samples, area=args.area, area_leaves=args.area_leaves,
                          verbose=True, **budget)
        wall = time.perf_counter() - t
        C1 = out.classifier
        spec_repair_figure(G, C0, C1, probs, out, OUT / f"{args.tag}_{shift}.png", images=bad)
        base = dict(shift=shift, delta=1.0, problems=len(probs), held_out=len(held), keep=len(keep[1]),
                    clean_acc_before=acc0, held_verified_before=held_before)
        rows.append(dict(base, method="repair_spec", verified_after=out.verdicts.count("verified"),
                         rounds=len(out.rounds), clean_acc_after=float(np.mean(predictions(C1, Xt) == yt)),
                         held_verified_after=verdicts(G, C1, held, args.verify_time).count("verified"),
                         wall_s=wall, stopped=out.stopped.name, detail=";".join(f"{r.get('verified')}v/{r.get('counterexamples_added')}c/"
                                                      f"{r.get('samples_added', 0)}s" for r in out.rounds)))
        print(rows[-1], flush=True)
        if not args.no_baseline:
            Cb, steps = train_baseline(G, C0, probs, keep, wall)
            rows.append(dict(base, method="training (same time)",
                             verified_after=verdicts(G, Cb, probs, args.verify_time).count("verified"), rounds=0,
                             clean_acc_after=float(np.mean(predictions(Cb, Xt) == yt)),
                             held_verified_after=verdicts(G, Cb, held, args.verify_time).count("verified"),
                             wall_s=wall, stopped="time", detail=f"{steps} Adam steps"))
            print(rows[-1], flush=True)
        write(rows, args)


def write(rows, args):
    with open(OUT / f"{args.tag}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cmd = (f"python experiments/bench_shift_repair.py --shifts {' '.join(args.shifts)} "
           f"--verify-time {args.verify_time} --rounds {args.rounds} --keep {args.keep} --samples {args.samples} "
           f"--margin {args.margin}" + (f" --max-accuracy-drop {args.max_accuracy_drop}"
                                        if args.max_accuracy_drop is not None else "") + (f" --area --area-leaves {args.area_leaves}" if args.area else "")
           + (" --no-baseline" if args.no_baseline else "") + f" --tag {args.tag}")
    lines = [f"# Shift repair with repair_spec (issue 13)", "",
             f"Machine: 2 shared cores ({platform.machine()}, AMD EPYC), other jobs running. Command: `{cmd}`.",
             f"MLP classifier 784-32-32-10, last layer changed (L∞), {rows[0]['keep']} keep images hard; verifier `cegar`, "
             f"{args.verify_time:g} s per problem. Held-out: test images 50..59 (never repaired).", "",
             "| shift | method | repair set | verified after | clean acc before | after | held-out verified before "
             "| after | wall | rounds (verified/counterexamples/samples) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['shift']} | {r['method']} | {r['problems']} | {r['verified_after']} | "
                     f"{100 * r['clean_acc_before']:.2f} % | {100 * r['clean_acc_after']:.2f} % | "
                     f"{r['held_verified_before']}/{r['held_out']} | {r['held_verified_after']}/{r['held_out']} | "
                     f"{r['wall_s']:.0f} s | {r['detail']} |")
    for m in dict.fromkeys(r["method"] for r in rows):
        sel = [r for r in rows if r["method"] == m]
        n, v = sum(r["problems"] for r in sel), sum(r["verified_after"] for r in sel)
        worst = max(100 * (r["clean_acc_before"] - r["clean_acc_after"]) for r in sel)
        hb, ha = sum(r["held_verified_before"] for r in sel), sum(r["held_verified_after"] for r in sel)
        lines.append(f"| **all** | {m} | {n} | {v} ({100 * v / max(1, n):.0f} %) | | worst drawdown "
                     f"{worst:.2f} pts | {hb}/{sum(r['held_out'] for r in sel)} | {ha} | "
                     f"{sum(r['wall_s'] for r in sel):.0f} s | |")
    (OUT / f"{args.tag}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
