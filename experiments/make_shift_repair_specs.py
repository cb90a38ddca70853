"""Write the shift-repair problems (issue 13) as SPEC.npz files for `cegarnn repair --spec`.

    python experiments/make_shift_repair_specs.py [--delta 1.0] [--keep 2000]

Per shift, experiments/specs/shift_repair/<shift>.npz holds every test image the committed shift
sweep (experiments/results/shift_sweep/results.csv: MLP, cegar) left falsified or unknown at
``delta``, with its label and latent box mu ± delta·sigma from the shift's prior
(x, y, latent_lower, latent_upper, names = image indices). held_out_<shift>.npz: test images
50..59 (never in the sweep) in the same form. keep.npz: the first ``--keep`` MNIST training images
the classifier labels correctly (x, y): the clean images a repair must keep.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cegarnn.data.mnist import load_mnist                          # noqa: E402
from cegarnn.network import load_network                            # noqa: E402
from cegarnn.repair import predictions                              # noqa: E402

MODELS = ROOT / "experiments" / "models"
OUT = ROOT / "experiments" / "specs" / "shift_repair"
SHIFTS = ("brightness", "contrast", "rotation", "scaling", "shear")
HELD_OUT = range(50, 60)


def boxes(prior, X, delta):
    out = np.stack([prior.forward(x) for x in X.astype(np.float64)])
    k = out.shape[1] // 2
    mu, sigma = out[:, :k], np.exp(0.5 * out[:, k:])
    return mu - delta * sigma, mu + delta * sigma


def write(path, X, y, prior, delta, names):
    lo, hi = boxes(prior, X, delta)
    np.savez_compressed(path, x=X.astype(np.float32), y=y.astype(np.int64), latent_lower=lo, latent_upper=hi,
                        names=np.asarray(names, dtype=np.int64))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--delta", type=float, default=1.0)
    ap.add_argument("--keep", type=int, default=2000)
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with np.load(MODELS / "shifts" / "test_images.npz") as z:
        xs, ys = z["images"].reshape(len(z["images"]), -1), z["labels"]
    sweep = list(csv.DictReader(open(ROOT / "experiments" / "results" / "shift_sweep" / "results.csv")))
    for shift in SHIFTS:
        prior = load_network(MODELS / "shifts" / shift / "prior.onnx")
        bad = sorted({int(r["image"]) for r in sweep if r["shift"] == shift and r["classifier"] == "mlp"
                      and r["method"] == "cegar" and float(r["delta"]) == args.delta
                      and r["status"] in ("falsified", "unknown")})
        write(OUT / f"{shift}.npz", xs[bad], ys[bad], prior, args.delta, bad)
        held = list(HELD_OUT)
        write(OUT / f"held_out_{shift}.npz", xs[held], ys[held], prior, args.delta, held)
        print(shift, len(bad), "problems")
    C = load_network(MODELS / "classifier.onnx")
    X, y = load_mnist("train")
    X, y = X[: args.keep].reshape(args.keep, -1), y[: args.keep]
    ok = predictions(C, X.astype(np.float64)) == y
    np.savez_compressed(OUT / "keep.npz", x=X[ok].astype(np.float32), y=y[ok].astype(np.int64))
    print("keep", int(ok.sum()), "images")


if __name__ == "__main__":
    main()
