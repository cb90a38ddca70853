"""Train the models of the distribution-shift experiments (EXPERIMENTS.md) into experiments/models/shifts/.

    .venv/bin/python experiments/train_shift_models.py                     # everything (~15 min, 2 cores)
    .venv/bin/python experiments/train_shift_models.py --shifts rotation   # one CVAE
    .venv/bin/python experiments/train_shift_models.py --only classifier   # the conv classifier + test images
    .venv/bin/python experiments/train_shift_models.py --only cvae --shifts affine --latent 32   # affine32 (~5 min)

Per shift in cegarnn.data.shifts.SHIFTS (rotation, shear, scaling, brightness, contrast) a
conditional VAE learned from pairs (x, T_theta(x)), theta ~ U(SHIFTS[shift] range), fresh each epoch:
    prior     p(z|x):     Flatten, Linear(784, 64), ReLU, Linear(64, 16) -> [mu, log sigma^2]  (latent 8)
    encoder   q(z|x, x'): Linear(1568, 256), ReLU, Linear(256, 16)              (training only)
    generator G([x, z]):  Linear(792, HIDDEN), ReLU, Linear(HIDDEN, 784), Sigmoid
written as <shift>/generator.onnx, <shift>/prior.onnx, <shift>/samples.png (G across the latent
box) and <shift>/model.json (reconstruction error on held-out pairs, sampling robustness).

``--latent K`` (K != 8) or the combined shift ``affine`` (rotation, shear and scaling drawn jointly,
ranges in COMBINED; not one of cegarnn.data.shifts.SHIFTS) train the same architecture with a K-dim
latent (prior Linear(64, 2K), generator Linear(784 + K, HIDDEN)) into <shift><K>/ (e.g. affine32/),
and also save generator.pt / prior.pt (state_dicts). The five 8-dim shifts take the unchanged path.

Classifiers: the 784-32-32-10 MLP is the demo one (experiments/models/classifier.onnx); this
script adds classifier_conv.onnx, a small CNN (Conv 1->4 k4 s2 p1, ReLU, Conv 4->8 k4 s2 p1, ReLU,
Linear(392, 32), ReLU, Linear(32, 10)), input [1, 784] reshaped to [1, 1, 28, 28], and
test_images.npz: the first N MNIST test images that BOTH classifiers classify correctly.
Seeded (torch + numpy); one torch thread by default.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from train_demo_models import (IMG, LATENT, _batches, accuracy, check_onnx, sequential_to_onnx,  # noqa: E402
                               train_cvae)

DEFAULT_OUT = HERE / "models" / "shifts"
MLP_ONNX = HERE / "models" / "classifier.onnx"
HIDDEN = 100
N_TEST_IMAGES = 60
DELTAS = (0.5, 1.0, 2.0, 3.0)
# shifts with several nuisance parameters drawn jointly (each uniform on its range, independent)
COMBINED = {"affine": {"rotation": (-20.0, 20.0), "shear": (-0.3, 0.3), "scaling": (0.8, 1.2)}}


def shift_names():
    from cegarnn.data.shifts import SHIFTS
    return [*SHIFTS, *COMBINED]


def affine_combined(images, rotation, shear, scaling) -> np.ndarray:
    """Scale, then shear, then rotate (each parameter a scalar or one per image), one interpolation.

    cegarnn.data.shifts.affine takes maps of OUTPUT offsets to INPUT offsets, so the inverse of
    the motion R·S·Z is Z^-1 S^-1 R^-1, the product of the three single-shift matrices.
    """
    from cegarnn.data.shifts import affine

    x = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28)
    n = len(x)
    per = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,))
    t, s, f = np.deg2rad(per(rotation)), per(shear), per(scaling)
    one, zero = np.ones(n), np.zeros(n)
    m_rot = np.stack([np.stack([np.cos(t), np.sin(t)], -1), np.stack([-np.sin(t), np.cos(t)], -1)], -2)
    m_shear = np.stack([np.stack([one, zero], -1), np.stack([-s, one], -1)], -2)
    m_scale = np.stack([np.stack([1 / f, zero], -1), np.stack([zero, 1 / f], -1)], -2)
    return affine(x, m_scale @ m_shear @ m_rot)


def theta_range(shift):
    from cegarnn.data.shifts import SHIFTS
    return {k: list(v) for k, v in COMBINED[shift].items()} if shift in COMBINED else list(SHIFTS[shift][1])


def sample_shift(shift, x, rng) -> np.ndarray:
    """T_theta(x) with theta drawn uniformly (jointly for a combined shift), fresh per image."""
    from cegarnn.data.shifts import SHIFTS, apply_shift

    n = len(x)
    if shift in COMBINED:
        return affine_combined(x, **{k: rng.uniform(lo, hi, n) for k, (lo, hi) in COMBINED[shift].items()})
    lo, hi = SHIFTS[shift][1]
    return apply_shift(shift, x, rng.uniform(lo, hi, n))


def range_ends(shift, x):
    """[(title, T_theta(x))] at both ends of the range (all parameters at their low / high end)."""
    from cegarnn.data.shifts import SHIFTS, apply_shift

    if shift in COMBINED:
        return [(f"T({end})", affine_combined(x, **{k: r[i] for k, r in COMBINED[shift].items()}))
                for i, end in enumerate(("lo", "hi"))]
    lo, hi = SHIFTS[shift][1]
    return [(f"T({lo:g})", apply_shift(shift, x, lo)), (f"T({hi:g})", apply_shift(shift, x, hi))]


def train_cvae_latent(xtr, epochs, rng, gen, log, shift: str, latent: int, hidden: int):
    """train_demo_models.train_cvae with a ``latent``-dim latent and any shift of shift_names()."""
    from train_demo_models import train_cvae

    return train_cvae(xtr, epochs, rng, gen, log, shift=shift, hidden=hidden, latent=latent,
                      sample=lambda xs, r: sample_shift(shift, xs, r))


class ConvClassifier(nn.Module):
    """Small CNN on (N, 784) or (N, 28, 28) images; returns logits (N, 10)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 4, stride=2, padding=1)    # -> 4 x 14 x 14
        self.c2 = nn.Conv2d(4, 8, 4, stride=2, padding=1)    # -> 8 x 7 x 7
        self.f1 = nn.Linear(392, 32)
        self.f2 = nn.Linear(32, 10)

    def forward(self, x):
        x = x.reshape(-1, 1, 28, 28)
        x = F.relu(self.c2(F.relu(self.c1(x))))
        return self.f2(F.relu(self.f1(x.flatten(1))))


def conv_to_onnx(model: ConvClassifier, path: Path) -> None:
    """Write ConvClassifier as ONNX: input [1, 784] -> Reshape -> Conv/Relu x2 -> Flatten -> Gemm/Relu/Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    a = lambda t: t.detach().cpu().numpy().astype(np.float32)
    inits = [numpy_helper.from_array(np.array([1, 1, 28, 28], np.int64), "shape"),
             numpy_helper.from_array(a(model.c1.weight), "W1"), numpy_helper.from_array(a(model.c1.bias), "B1"),
             numpy_helper.from_array(a(model.c2.weight), "W2"), numpy_helper.from_array(a(model.c2.bias), "B2"),
             numpy_helper.from_array(a(model.f1.weight), "W3"), numpy_helper.from_array(a(model.f1.bias), "B3"),
             numpy_helper.from_array(a(model.f2.weight), "W4"), numpy_helper.from_array(a(model.f2.bias), "B4")]
    conv = dict(kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["img"]),
             helper.make_node("Conv", ["img", "W1", "B1"], ["c1"], **conv),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], **conv),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Flatten", ["r2"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "W3", "B3"], ["g1"], transB=1),
             helper.make_node("Relu", ["g1"], ["r3"]),
             helper.make_node("Gemm", ["r3", "W4", "B4"], ["output"], transB=1)]
    graph = helper.make_graph(nodes, "classifier_conv",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, IMG])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])],
                              initializer=inits)
    mp = helper.make_model(graph, producer_name="cegarnn-train_shift_models",
                           opset_imports=[helper.make_opsetid("", 13)])
    mp.ir_version = 8
    onnx.checker.check_model(mp)
    onnx.save(mp, str(path))


def train_conv(xtr, ytr, xte, yte, epochs, gen, log):
    model = ConvClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for ep in range(epochs):
        model.train()
        for idx in _batches(len(x), 128, gen):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        log(f"  conv epoch {ep + 1}/{epochs}: test acc {accuracy(model, xte, yte):.4f}")
    return model


def reconstruction(shift, prior, enc, G, x, rng):
    """Mean |pixel error| on held-out pairs (x, T_theta x): G at the posterior mean vs the identity baseline."""
    n = len(x)
    xs = sample_shift(shift, x, rng).reshape(n, IMG)
    xf = torch.from_numpy(x.reshape(n, IMG))
    with torch.no_grad():
        mu_p, _ = prior(xf).chunk(2, -1)
        mu_q, _ = enc(torch.cat([xf, torch.from_numpy(xs)], 1)).chunk(2, -1)
        g_post = G(torch.cat([xf, mu_q], 1)).numpy()
        g_prior = G(torch.cat([xf, mu_p], 1)).numpy()
    mae = lambda a, b: float(np.abs(a - b).mean())
    return {"n_pairs": int(n), "theta": f"U{theta_range(shift)}",
            "mae_G_posterior_mean": mae(g_post, xs),
            "mae_identity_baseline": mae(xf.numpy(), xs),
            "mae_G_prior_mean": mae(g_prior, xs),
            "meaning": "mean |pixel error| against T_theta(x) on MNIST test pairs: G(x, mean of q(z|x, T_theta x)) "
                       "(how well G reproduces that transformation), the untransformed x (identity "
                       "baseline), G(x, mu_prior)"}


def box_samples(prior, G, x, delta, n, gen):
    """n generator outputs per image with z ~ U(mu +- delta*sigma): (N, n, 784), and the box (lo, hi)."""
    xf = torch.from_numpy(x.reshape(len(x), IMG))
    with torch.no_grad():
        mu, lv = prior(xf).chunk(2, -1)
        sig = (0.5 * lv).exp()
        out = []
        for i in range(len(x)):
            u = torch.rand((n, mu.shape[1]), generator=gen) * 2 - 1
            out.append(G(torch.cat([xf[i].expand(n, IMG), mu[i] + delta * sig[i] * u], 1)).numpy())
    return np.stack(out)


def samples_png(path, shift, prior, G, x, gen):
    """Grid: per image, x, the true shift at both ends of its range, and G at 6 random z per delta in {1, 2}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = [("x", x), *range_ends(shift, x)]
    for d in (1.0, 2.0):
        s = box_samples(prior, G, x, d, 6, gen)
        cols += [(f"d={d:g} #{j}", s[:, j]) for j in range(6)]
    fig, axes = plt.subplots(len(x), len(cols), figsize=(0.8 * len(cols), 0.85 * len(x) + 0.4))
    for i in range(len(x)):
        for j, (title, imgs) in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(np.asarray(imgs[i]).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=6)
    fig.suptitle(f"{shift}: x, true T_theta at the range ends, G(x, z) for z ~ U(mu ± d·sigma)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def onnx_classifier(path):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: np.concatenate([sess.run(["output"], {"input": r[None].astype(np.float32)})[0]
                                     for r in np.asarray(x).reshape(len(x), IMG)])


def main(argv=None) -> int:
    from cegarnn.data import load_mnist
    from cegarnn.data.shifts import SHIFTS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--data", type=Path, default=None, help="MNIST IDX folder (default: search)")
    ap.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=shift_names(),
                    help="default: the five 8-dim shifts; 'affine' (COMBINED) only when named")
    ap.add_argument("--latent", type=int, default=LATENT,
                    help=f"latent dimension (default {LATENT}); other values or 'affine' write <shift><latent>/")
    ap.add_argument("--only", choices=["classifier", "cvae"], default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs-cvae", type=int, default=12)
    ap.add_argument("--epochs-conv", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=HIDDEN)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    log = lambda s: print(f"[{time.time() - t0:6.1f}s] {s}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    xtr, ytr = load_mnist("train", args.data)
    xte, yte = load_mnist("test", args.data)
    cmd = "python experiments/train_shift_models.py " + " ".join(argv if argv is not None else sys.argv[1:])

    if args.only in (None, "classifier"):
        torch.manual_seed(args.seed)
        gen = torch.Generator().manual_seed(args.seed)
        t = time.time()
        conv = train_conv(xtr, ytr, xte, yte, args.epochs_conv, gen, log)
        conv_to_onnx(conv, args.out / "classifier_conv.onnx")
        err = check_onnx(conv, args.out / "classifier_conv.onnx", xte[:200].reshape(200, IMG),
                         np.random.default_rng(args.seed))
        mlp = onnx_classifier(MLP_ONNX)
        with torch.no_grad():
            ok = (mlp(xte).argmax(1) == yte) & (conv(torch.from_numpy(xte)).argmax(1).numpy() == yte)
        idx = np.flatnonzero(ok)[:N_TEST_IMAGES]
        np.savez_compressed(args.out / "test_images.npz", images=xte[idx].astype(np.float32),
                            labels=yte[idx].astype(np.int64), indices=idx.astype(np.int64))
        meta = {"command": cmd.strip(), "seed": args.seed, "torch_version": torch.__version__,
                "training_seconds": round(time.time() - t, 1),
                "architecture": ConvClassifier.__doc__ + " " + conv_to_onnx.__doc__,
                "parameters": int(sum(p.numel() for p in conv.parameters())),
                "test_accuracy": accuracy(conv, xte, yte),
                "mlp_test_accuracy": float((mlp(xte).argmax(1) == yte).mean()),
                "onnx_vs_torch": err,
                "test_images": {"file": "test_images.npz", "count": int(len(idx)),
                                "selection": "first MNIST test images classified correctly by both the MLP "
                                             "(../classifier.onnx) and the CNN (classifier_conv.onnx)"}}
        (args.out / "classifier_conv.json").write_text(json.dumps(meta, indent=2) + "\n")
        log(f"conv classifier: {meta['test_accuracy']:.4f} test acc; {len(idx)} test images")
    if args.only == "classifier":
        return 0

    with np.load(args.out / "test_images.npz") as z:
        timg, tlab = z["images"], z["labels"]
    mlp = onnx_classifier(MLP_ONNX)
    for shift in args.shifts:
        # each shift seeded on its own, so training one shift alone gives the same weights
        # (the 8-dim SHIFTS keep their seeds and their code path: train_demo_models.train_cvae)
        seed = args.seed + 1000 * (shift_names().index(shift) + 1)
        classic = shift in SHIFTS and args.latent == LATENT
        name = shift if classic else f"{shift}{args.latent}"
        if not classic:
            seed += args.latent
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        d = args.out / name
        d.mkdir(parents=True, exist_ok=True)
        t = time.time()
        if classic:
            prior, enc, G = train_cvae(xtr, args.epochs_cvae, rng, gen, log, shift=shift, hidden=args.hidden)
        else:
            prior, enc, G = train_cvae_latent(xtr, args.epochs_cvae, rng, gen, log, shift=shift,
                                              latent=args.latent, hidden=args.hidden)
        secs = round(time.time() - t, 1)
        sequential_to_onnx(G, IMG + args.latent, d / "generator.onnx", f"generator_{name}")
        sequential_to_onnx(prior, IMG, d / "prior.onnx", f"prior_{name}")
        if not classic:
            torch.save(G.state_dict(), d / "generator.pt")
            torch.save(prior.state_dict(), d / "prior.pt")
        xr = xte[:200].reshape(200, IMG)
        with torch.no_grad():
            mu, lv = prior(torch.from_numpy(xr)).chunk(2, -1)
            zr = (mu + 3.0 * (0.5 * lv).exp() * (torch.rand(mu.shape, generator=gen) * 2 - 1)).numpy()
        err = {"generator": check_onnx(G, d / "generator.onnx", np.concatenate([xr, zr], 1), rng),
               "prior": check_onnx(prior, d / "prior.onnx", xr, rng)}
        rec = reconstruction(shift, prior, enc, G, xte, rng)
        robust = {}
        for delta in DELTAS:
            s = box_samples(prior, G, timg, delta, 100, gen)
            keep = [bool((mlp(s[i]).argmax(1) == tlab[i]).all()) for i in range(len(timg))]
            robust[str(delta)] = {"fraction_robust_mlp": float(np.mean(keep)), "n_falsified_mlp": int(len(keep) - sum(keep))}
        samples_png(d / "samples.png", shift, prior, G, timg[:6], gen)
        with torch.no_grad():
            sig = (0.5 * prior(torch.from_numpy(timg.reshape(-1, IMG))).chunk(2, -1)[1]).exp().mean(0).numpy()
        meta = {"shift": name, "theta_range": theta_range(shift), "command": cmd.strip(), "seed": seed,
                "torch_version": torch.__version__, "training_seconds": secs, "epochs": args.epochs_cvae,
                "generator": f"Linear({IMG + args.latent},{args.hidden}), ReLU, Linear({args.hidden},784), Sigmoid; "
                             "input [x_flat, z]",
                "prior": f"Flatten, Linear(784,64), ReLU, Linear(64,{2 * args.latent}) -> [mu, log sigma^2]",
                "latent_dim": args.latent, "prior_sigma_mean_per_dim": [round(float(v), 4) for v in sig],
                "onnx_vs_torch": err, "reconstruction": rec,
                "robustness_random_sampling": {"meaning": "fraction of the test images whose MLP label is kept "
                                               "by 100 z ~ U(mu ± delta·sigma) (upper bound on verifiable)",
                                               **robust}}
        if shift in COMBINED:
            meta["transformation"] = ("experiments/train_shift_models.py affine_combined: scale, shear, rotate "
                                      "about the centre in one bilinear interpolation; parameters independent, "
                                      "uniform on theta_range")
        if not classic:
            meta["files"] = {f.name: f.stat().st_size for f in sorted(d.iterdir()) if f.suffix in (".onnx", ".pt")}
        (d / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        log(f"{name}: MAE posterior {rec['mae_G_posterior_mean']:.4f} vs identity {rec['mae_identity_baseline']:.4f}; "
            f"robust (MLP) {[r['fraction_robust_mlp'] for r in robust.values()]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
