"""Distribution-shift verification demo on the committed models (``make demo``).

For a few test images and latent radii ``delta`` it asks: does the classifier keep the label of
``x`` for every rotation the generator can produce from ``z`` in ``mu ± delta·sigma``? It prints a
verdict and time per instance and writes a PNG with the image, samples of the shift from the latent
box, and any counterexample.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..verifier.methods import DEFAULT_METHOD, METHODS
from ..verifier.result import Verdict

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS = REPO_ROOT / "experiments" / "models"


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m cegarnn.shift.demo", description=__doc__.splitlines()[0])
    p.add_argument("--models", default=str(MODELS), help="folder with generator/prior/classifier .onnx and test_images.npz")
    p.add_argument("--images", type=int, default=6, help="number of test images (default 6)")
    p.add_argument("--deltas", type=float, nargs="+", default=[1.0, 3.0], help="latent radii in units of sigma")
    p.add_argument("--method", default=DEFAULT_METHOD, help=" | ".join(METHODS))
    p.add_argument("--time-limit", type=float, default=30.0, help="seconds per instance")
    p.add_argument("--out", default="demo.png", help="PNG to write")
    p.add_argument("--samples", type=int, default=6, help="generator samples per row of the picture")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    from ..specs.problem import generative_problem
    from ..verifier import verify

    d = Path(args.models)
    paths = {k: d / f"{k}.onnx" for k in ("generator", "prior", "classifier")}
    missing = [str(p) for p in list(paths.values()) + [d / "test_images.npz"] if not p.exists()]
    if missing:
        print("error: demo models not found: " + ", ".join(missing) +
              "\n(re-create them with: .venv/bin/python experiments/train_demo_models.py)", file=sys.stderr)
        return 2
    data = np.load(d / "test_images.npz")
    xs, ys = data["images"], data["labels"]
    n = min(args.images, len(xs))
    print("cegarnn demo: classifier(generator(x, z)) keeps the label for all z in mu ± delta·sigma?")
    print(f"models: {d}  method: {args.method}  time limit: {args.time_limit:.0f}s per instance\n")
    rows = []
    counts: dict = {}
    total = time.perf_counter()
    for delta in args.deltas:
        for i in range(n):
            x, y = xs[i].reshape(-1).astype(np.float64), int(ys[i])
            problem = generative_problem(str(paths["generator"]), str(paths["classifier"]), x, y,
                                         prior=str(paths["prior"]), delta=delta, name=f"image{i} delta={delta}")
            t = time.perf_counter()
            res = verify(problem, method=args.method, time_limit=args.time_limit)
            dt = time.perf_counter() - t
            counts[res.status] = counts.get(res.status, 0) + 1
            extra = f" ({res.reason})" if res.status == Verdict.UNKNOWN else ""
            if res.counterexample is not None:
                c = res.counterexample
                extra = (f" — counterexample: class {int(np.argmax(c.output_reference or c.output_ir))} "
                         f"instead of {y} (found by {c.found_by})")
            print(f"  image {i} (label {y}), delta {delta:g}: {res.status.upper():9s} {dt:6.2f}s"
                  f"  [boxes {res.stats.boxes_bounded}, solver calls {res.stats.solver_calls}]{extra}", flush=True)
            rows.append((i, y, delta, problem, res))
    print(f"\n{len(rows)} instances in {time.perf_counter() - total:.1f}s: " +
          ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    _plot(rows, xs, paths, args.samples, args.out)
    print(f"picture written to {Path(args.out).resolve()}")
    return 0


def _plot(rows, xs, paths, n_samples, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..network import load_network
    gen = load_network(str(paths["generator"]))
    ncol = n_samples + 2
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.3 * ncol, 1.4 * len(rows)), squeeze=False)
    rng = np.random.default_rng(0)
    for r, (i, y, delta, problem, res) in enumerate(rows):
        x = xs[i].reshape(-1)
        ax = axes[r]
        ax[0].imshow(x.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        ax[0].set_title(f"x (label {y})", fontsize=7)
        lo, hi = problem.lower, problem.upper
        zs = lo + (hi - lo) * rng.random((n_samples, lo.shape[0]))
        imgs = gen.forward(problem.full_input(zs))
        for k in range(n_samples):
            ax[k + 1].imshow(imgs[k].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            if k == 0:
                ax[k + 1].set_title(f"G(x,z), δ={delta:g}", fontsize=7)
        last = ax[-1]
        if res.counterexample is not None:
            img = gen.forward(np.asarray(res.counterexample.full_input))
            pred = int(np.argmax(res.counterexample.output_ir))
            last.imshow(img.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            last.set_title(f"counterexample → {pred}", fontsize=7, color="red")
            for sp in last.spines.values():
                sp.set_color("red")
                sp.set_linewidth(2)
        else:
            last.text(0.5, 0.5, res.status, ha="center", va="center", fontsize=8,
                      color="green" if res.status == Verdict.VERIFIED else "gray")
        for a in ax:
            a.set_xticks([])
            a.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
