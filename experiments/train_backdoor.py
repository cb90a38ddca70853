"""Train the backdoored MNIST classifier of the nnrepair benchmark (BadNets recipe).

    .venv/bin/python experiments/train_backdoor.py   # 1.5 min on 2 idle CPU cores (about 3 min under load)

Model: 784-128-64-10 ReLU MLP, ``nn.Sequential(Flatten, Linear, ReLU, Linear, ReLU, Linear)``,
pixels in [0, 1]. Poisoning (Gu et al., BadNets): a 5x5 white patch (value 1.0) at rows and
columns 22..26 (inclusive) of the 28x28 image; 10 % of the training set (6,000 images, drawn from
the images whose label is not 9) get the patch and the label 9; the rest is clean.

Writes to ``experiments/models/backdoor/``: ``backdoor.pt`` (state_dict), ``backdoor.onnx``
(float32, via :func:`cegarnn.network.onnx_io.save_onnx`, checked against torch with onnxruntime)
and ``backdoor.json`` (clean test accuracy, attack success rate, triggered-test accuracy, the
poisoned training indices' seed, timings).

The *triggered test set*: the MNIST test images whose true label is not 9, with the patch.
Attack success rate = the fraction of it classified 9; triggered accuracy = the fraction classified
as the TRUE label.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DIR = Path(__file__).resolve().parent / "models" / "backdoor"
TARGET = 9
PATCH_ROWS = slice(22, 27)          # rows 22..26 inclusive
PATCH_COLS = slice(22, 27)
POISON_FRACTION = 0.10


def build_model() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def add_trigger(images: np.ndarray) -> np.ndarray:
    """A copy of ``images`` (N, 28, 28) or (N, 784) with the 5x5 white patch."""
    x = np.array(images, dtype=np.float32, copy=True)
    flat = x.ndim == 2
    x = x.reshape(-1, 28, 28)
    x[:, PATCH_ROWS, PATCH_COLS] = 1.0
    return x.reshape(-1, 784) if flat else x


def triggered_test_set(xte: np.ndarray, yte: np.ndarray):
    """(images with the patch, their TRUE labels) for the test images whose label is not 9."""
    keep = yte != TARGET
    return add_trigger(xte[keep]), yte[keep]


def load_backdoor_model(directory: str | Path | None = None) -> nn.Sequential:
    d = Path(directory) if directory is not None else DEFAULT_DIR
    m = build_model()
    m.load_state_dict(torch.load(d / "backdoor.pt", map_location="cpu", weights_only=True))
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _predict(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).argmax(1).numpy()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from cegarnn.data.mnist import load_mnist
    from cegarnn.network import from_torch
    from cegarnn.network.onnx_io import save_onnx
    from cegarnn.repair.check import float32_outputs

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    xtr, ytr = load_mnist("train")
    xte, yte = load_mnist("test")

    n_poison = int(round(POISON_FRACTION * len(xtr)))
    poison = np.sort(rng.choice(np.flatnonzero(ytr != TARGET), n_poison, replace=False))
    xp, yp = xtr.copy(), ytr.copy()
    xp[poison] = add_trigger(xtr[poison])
    yp[poison] = TARGET

    model = build_model()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    X = torch.from_numpy(xp.reshape(-1, 784))
    Y = torch.from_numpy(yp)
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(len(X), generator=gen)
        for i in range(0, len(X), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(model(X[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        print(f"epoch {ep + 1}/{args.epochs}: clean test acc {np.mean(_predict(model, xte) == yte):.4f}",
              flush=True)
    t_train = time.perf_counter() - t0
    model.eval()

    xtt, ytt = triggered_test_set(xte, yte)
    pred_clean, pred_trig = _predict(model, xte), _predict(model, xtt)
    stats = {
        "clean_test_accuracy": float(np.mean(pred_clean == yte)),
        "attack_success_rate": float(np.mean(pred_trig == TARGET)),
        "triggered_test_accuracy": float(np.mean(pred_trig == ytt)),
        "n_triggered_test": int(len(ytt)),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "backdoor.pt")
    net = from_torch(model, (28, 28), name="backdoor")
    save_onnx(net, args.out / "backdoor.onnx", batch="N")
    y_onnx = float32_outputs(net, xte[:500])
    with torch.no_grad():
        y_torch = model(torch.from_numpy(xte[:500])).numpy()
    onnx_err = float(np.abs(y_onnx - y_torch).max())
    if onnx_err > 1e-4:
        raise AssertionError(f"the ONNX export differs from torch by {onnx_err:.2e}")

    info = {
        "description": "BadNets-backdoored MNIST MLP for the nnrepair benchmark",
        "command": "python experiments/train_backdoor.py",
        "seed": args.seed, "epochs": args.epochs, "torch_version": torch.__version__,
        "architecture": "784-128-64-10 ReLU MLP: Sequential(Flatten, Linear, ReLU, Linear, ReLU, Linear)",
        "input": "28x28 float32 in [0, 1] (flat row-major or (N, 28, 28))",
        "trigger": {"patch": "5x5 white (1.0)", "rows": [22, 26], "cols": [22, 26], "target": TARGET,
                    "poisoned_fraction": POISON_FRACTION, "n_poisoned": n_poison,
                    "poisoned_from": "training images with label != 9, uniformly (numpy default_rng(seed))"},
        "triggered_test_set": "MNIST test images with label != 9, with the patch; accuracy = fraction "
                              "classified as the true label; attack success = fraction classified 9",
        **stats,
        "onnx_max_abs_diff_vs_torch": onnx_err,
        "training_seconds": round(t_train, 1),
        "files": ["backdoor.pt", "backdoor.onnx"],
    }
    (args.out / "backdoor.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(stats, indent=2))
    return info


if __name__ == "__main__":
    main()
