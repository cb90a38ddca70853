"""Bounding throughput and tightness: our batched CROWN on the IR (cegarnn.bounds.crown) vs
auto_LiRPA 0.3's CROWN (cegarnn.bounds.lirpa), side by side in one run.

    .venv/bin/python experiments/bench_bounds.py            # full run (a few minutes on 2 cores)
    .venv/bin/python experiments/bench_bounds.py --quick    # smoke test, writes nothing

Networks: the shift problem networks ``C(G(x, z))`` over the latent z, built by
``cegarnn.specs.problem.generative_problem`` exactly as the shift sweep builds them (rotation
generator + prior, delta = 1.0, first test image), for the MLP classifier (conf/classifier/mlp.yaml)
and the CNN (conf/classifier/conv.yaml), with the spec's margins ``y_label - y_j`` merged into the
last layer (``Network.with_output_layer``), so every provider bounds the same 9 margins.

Boxes: batches of B sub-boxes of the latent box, each a random cell of a bisection of the box at
depth d (2^d cells; dimensions halved in turn), as input bisection produces them.

Providers (all float64, one thread; each batch is bounded in one call):
* ``lirpa-crown``: ``CrownBounder(net).bounds(lo, hi)`` — what ``compute_bounds(..., 'crown')`` runs;
* ``ours-crown``: ``BatchBounder(net).bounds(lo, hi)`` (CROWN on every pre-activation, numpy);
* ``ours-crown-unstable``: ``BatchBounder(net, intermediate='unstable')`` (CROWN only on ReLU inputs
  that interval bounds leave unstable: same relaxations, same margins up to the widening);
* ``ours-alpha``: alpha-CROWN (torch, 20 iterations) on a smaller batch.
Metrics: boxes/s (median of the repeats), mean margin lower bound, mean output width.
Writes experiments/results/issue15/bench_bounds.csv and .md.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cegarnn.bounds.crown import BatchBounder  # noqa: E402
from cegarnn.network import load_network  # noqa: E402
from cegarnn.specs.problem import generative_problem  # noqa: E402

OUT = REPO / "experiments" / "results" / "issue15"
COMMAND = ".venv/bin/python experiments/bench_bounds.py"
SHIFT = "experiments/models/shifts/rotation"
CLASSIFIERS = {"mlp": "experiments/models/classifier.onnx", "cnn": "experiments/models/shifts/classifier_conv.onnx"}


def problem_network(classifier: str, image: int = 0, delta: float = 1.0):
    """The margin network of a shift problem (latent z -> y_label - y_j) and its latent box."""
    g = load_network(str(REPO / SHIFT / "generator.onnx"))
    p = load_network(str(REPO / SHIFT / "prior.onnx"))
    c = load_network(str(REPO / CLASSIFIERS[classifier]))
    with np.load(REPO / "experiments/models/shifts/test_images.npz") as z:
        x, y = z["images"][image].reshape(-1), int(z["labels"][image])
    pr = generative_problem(g, c, x, y, prior=p, delta=delta)
    C = np.stack([-A[0] for A, _ in pr.unsafe.disjuncts])     # unsafe: y_j >= y_label; margins y_label - y_j
    return pr.network.with_output_layer(C), pr.lower, pr.upper


def sub_boxes(rng, lo, hi, depth: int, B: int):
    n = lo.shape[0]
    cuts = np.array([2 ** ((depth - j + n - 1) // n) for j in range(n)])
    idx = rng.integers(0, cuts, size=(B, n))
    w = (hi - lo) / cuts
    blo = lo + idx * w
    return blo, np.minimum(blo + w, hi)


def timed(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from cegarnn.bounds.lirpa import CrownBounder

    depths = [3, 8] if args.quick else [3, 6, 9]
    B = 8 if args.quick else 64
    B_alpha = 4 if args.quick else 8
    repeats = 1 if args.quick else 3
    rows = []
    for model in CLASSIFIERS:
        net, zlo, zhi = problem_network(model)
        lirpa = CrownBounder(net)
        ours = {"ours-crown": BatchBounder(net), "ours-crown-unstable": BatchBounder(net, intermediate="unstable")}
        alpha = BatchBounder(net, backend="torch")
        for depth in depths:
            rng = np.random.default_rng(depth)
            lo, hi = sub_boxes(rng, zlo, zhi, depth, B)
            lirpa.bounds(lo[:2], hi[:2])                         # warm-up
            runs = {"lirpa-crown": lambda: lirpa.bounds(lo, hi)}
            for name, bb in ours.items():
                bb.bounds(lo[:2], hi[:2])
                runs[name] = (lambda bb=bb: bb.bounds(lo, hi)[0])
            for name, fn in runs.items():
                t, res = timed(fn, repeats)
                rows.append(dict(model=model, depth=depth, method=name, boxes=B, seconds=t, boxes_per_s=B / t,
                                 margin_lower=float(np.mean(res.lower[-1])),
                                 output_width=float(np.mean(res.upper[-1] - res.lower[-1]))))
                print(f"{model} depth {depth:2d} {name:20s} {B / t:9.1f} boxes/s  margin lb "
                      f"{rows[-1]['margin_lower']:9.4f}  width {rows[-1]['output_width']:9.4f}", flush=True)
            # alpha-CROWN (and the CROWN values of the same boxes, for the comparison)
            la, ha = lo[:B_alpha], hi[:B_alpha]
            t, (res, _) = timed(lambda: alpha.bounds(la, ha, alpha=True, iterations=20), 1)
            ref = ours["ours-crown"].bounds(la, ha)[0]
            lref = lirpa.bounds(la, ha)
            rows.append(dict(model=model, depth=depth, method="ours-alpha (20 it)", boxes=B_alpha, seconds=t,
                             boxes_per_s=B_alpha / t, margin_lower=float(np.mean(res.lower[-1])),
                             output_width=float(np.mean(res.upper[-1] - res.lower[-1])),
                             note=f"same boxes: ours-crown margin lb {np.mean(ref.lower[-1]):.4f}, "
                                  f"lirpa-crown {np.mean(lref.lower[-1]):.4f}"))
            print(f"{model} depth {depth:2d} ours-alpha           {B_alpha / t:9.1f} boxes/s  margin lb "
                  f"{rows[-1]['margin_lower']:9.4f}  ({rows[-1]['note']})", flush=True)
    if args.quick:
        return 0
    write(rows)
    return 0


def write(rows) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    cols = ["model", "depth", "method", "boxes", "seconds", "boxes_per_s", "speedup_vs_lirpa", "margin_lower",
            "output_width", "note"]
    base = {(r["model"], r["depth"]): r["boxes_per_s"] for r in rows if r["method"] == "lirpa-crown"}
    for r in rows:
        r["speedup_vs_lirpa"] = r["boxes_per_s"] / base[(r["model"], r["depth"])]
    with (OUT / "bench_bounds.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in cols})
    cpu = platform.processor() or "AMD EPYC"
    lines = ["# Bounding throughput: our batched CROWN on the IR vs auto_LiRPA 0.3 CROWN (issue 15)", "",
             f"Command: `{COMMAND}`  ", f"Machine: {cpu}, 2 shared cores, one thread per provider "
             f"(OPENBLAS/OMP = 1, torch.set_num_threads(1)); other jobs were running. Python "
             f"{platform.python_version()}, numpy {np.__version__}.  ",
             "Networks: shift problem networks (rotation generator, delta = 1, image 0) with the 9 margins "
             "merged into the last layer; B random sub-boxes of the latent box per batch, cells of a bisection "
             "of depth d. Timings: median of 3 calls of one batch. `margin lb`: mean lower bound of the margins "
             "(higher is tighter); `width`: mean width of the margin bounds.", "",
             "| model | depth | method | boxes | boxes/s | x lirpa | margin lb | width | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['depth']} | {r['method']} | {r['boxes']} | {r['boxes_per_s']:.1f} | "
                     f"{r['speedup_vs_lirpa']:.2f} | {r['margin_lower']:.4f} | {r['output_width']:.4f} | "
                     f"{r.get('note', '')} |")
    (OUT / "bench_bounds.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
