"""Train the small demo models committed in experiments/models/.

    .venv/bin/python experiments/train_demo_models.py            # a few minutes on 2 CPU cores

Models (float32):

- classifier C: 784-32-32-10 ReLU MLP, nn.Sequential(Flatten, Linear, ReLU, Linear, ReLU, Linear),
  trained on MNIST with mild rotation augmentation (|angle| <= AUG_DEGREES on half the images),
  so it tolerates small rotations but not large ones.
- conditional VAE for one realistic shift, rotation by theta ~ U[-MAX_DEGREES, MAX_DEGREES]
  (cegarnn.data.shifts.rotate), trained on pairs (x, T_theta(x)), latent dim 8:
    prior     p(z|x):     nn.Sequential(Flatten, Linear(784, 64), ReLU, Linear(64, 16)) -> [mu, log sigma^2]
    encoder   q(z|x, x'): Linear(1568, 256), ReLU, Linear(256, 16)    (training only, not saved)
    generator G([x, z]):  nn.Sequential(Linear(792, 200), ReLU, Linear(200, 784), Sigmoid)
  loss = BCE(G([x, z]), x') summed over pixels + KL(q(z|x, x') || p(z|x)), z ~ q.

Writes classifier/generator/prior as .pt (state_dict) and .onnx (Gemm/Relu/Sigmoid written with
onnx.helper, input "input" of shape [1, n], output "output"; each checked against torch with
onnxruntime to 1e-5), test_images.npz, samples.png and models.json.

Use ``load_demo_models(dir)`` (or ``build_classifier/build_generator/build_prior``) to get the
torch modules back.
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

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_DIR = Path(__file__).resolve().parent / "models"
IMG = 784
LATENT = 8
MAX_DEGREES = 30.0
AUG_DEGREES = 10.0
N_TEST_IMAGES = 40
DELTAS = (0.5, 1.0, 2.0, 3.0)


# ----------------------------------------------------------------------------- architectures
def build_classifier() -> nn.Sequential:
    """784-32-32-10 ReLU MLP; accepts (N, 28, 28), (N, 1, 28, 28) or (N, 784); returns logits."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(IMG, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def build_generator(latent: int = LATENT, hidden: int = 200) -> nn.Sequential:
    """G([x_flat, z]): input (N, 784 + latent), output (N, 784) in (0, 1) (row-major 28x28)."""
    return nn.Sequential(nn.Linear(IMG + latent, hidden), nn.ReLU(), nn.Linear(hidden, IMG), nn.Sigmoid())


def build_prior(latent: int = LATENT) -> nn.Sequential:
    """p(z|x): input x (N, 784) or (N, 28, 28); output (N, 2*latent) = [mu, log sigma^2]."""
    return nn.Sequential(nn.Flatten(), nn.Linear(IMG, 64), nn.ReLU(), nn.Linear(64, 2 * latent))


def build_encoder(latent: int = LATENT) -> nn.Sequential:
    """q(z|x, x'): input [x_flat, x'_flat] (N, 1568); output [mu, log sigma^2]. Training only."""
    return nn.Sequential(nn.Linear(2 * IMG, 256), nn.ReLU(), nn.Linear(256, 2 * latent))


def load_demo_models(directory: str | Path | None = None) -> dict[str, nn.Module]:
    """Load the committed demo models: {'classifier', 'generator', 'prior'} in eval mode."""
    d = Path(directory) if directory is not None else DEFAULT_DIR
    out = {}
    for name, build in (("classifier", build_classifier), ("generator", build_generator),
                        ("prior", build_prior)):
        path = d / f"{name}.pt"
        if not path.is_file():
            raise FileNotFoundError(f"demo model {path} not found (run experiments/train_demo_models.py)")
        m = build()
        m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
        out[name] = m
    return out


def load_test_images(directory: str | Path | None = None):
    """(images float32 (N, 28, 28) in [0, 1], labels int64 (N,), indices into the MNIST test set)."""
    d = Path(directory) if directory is not None else DEFAULT_DIR
    with np.load(d / "test_images.npz") as z:
        return z["images"].astype(np.float32), z["labels"].astype(np.int64), z["indices"]


def prior_box(prior: nn.Module, x: torch.Tensor, delta: float):
    """Latent box mu +- delta * sigma of p(z|x) for images x (N, 28, 28): (lo, hi), each (N, LATENT)."""
    with torch.no_grad():
        mu, logvar = prior(x).chunk(2, dim=-1)
    sigma = torch.exp(0.5 * logvar)
    return mu - delta * sigma, mu + delta * sigma


# ----------------------------------------------------------------------------- ONNX
def sequential_to_onnx(model: nn.Sequential, n_in: int, path: str | Path, name: str) -> None:
    """Write a Sequential of Flatten/Linear/ReLU/Sigmoid as ONNX (Gemm/Relu/Sigmoid), input [1, n_in]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "input"
    n_out = n_in
    for i, layer in enumerate(model):
        if isinstance(layer, nn.Flatten):
            continue
        out = f"t{i}"
        if isinstance(layer, nn.Linear):
            w = layer.weight.detach().cpu().numpy().astype(np.float32)
            b = layer.bias.detach().cpu().numpy().astype(np.float32)
            inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
            nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out], name=f"gemm{i}",
                                          alpha=1.0, beta=1.0, transB=1))
            n_out = w.shape[0]
        elif isinstance(layer, nn.ReLU):
            nodes.append(helper.make_node("Relu", [cur], [out], name=f"relu{i}"))
        elif isinstance(layer, nn.Sigmoid):
            nodes.append(helper.make_node("Sigmoid", [cur], [out], name=f"sigmoid{i}"))
        else:
            raise TypeError(f"unsupported layer {layer!r}")
        cur = out
    nodes.append(helper.make_node("Identity", [cur], ["output"], name="output"))
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n_out])], initializer=inits)
    mp = helper.make_model(graph, producer_name="cegarnn-train_demo_models",
                           opset_imports=[helper.make_opsetid("", 13)])
    mp.ir_version = 8
    onnx.checker.check_model(mp)
    onnx.save(mp, str(path))


def check_onnx(model: nn.Module, path: Path, realistic: np.ndarray, rng: np.random.Generator) -> dict:
    """Compare onnxruntime with torch, one row at a time.

    ``realistic``: (n, n_in) inputs the model really sees (MNIST images; [x, z] with z in a prior
    box): max absolute difference must be <= 1e-5. Also 20 uniform random inputs in [0, 1]^n_in,
    where logits can be large: difference relative to max(1, |output|) must be <= 1e-5.
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n_in = realistic.shape[1]
    run = lambda x: (model(torch.from_numpy(x)).detach().numpy(), sess.run(["output"], {"input": x})[0])
    abs_err = 0.0
    for row in realistic.astype(np.float32):
        ref, got = run(row[None])
        abs_err = max(abs_err, float(np.abs(ref - got).max()))
    rel_err = 0.0
    for _ in range(20):
        ref, got = run(rng.random((1, n_in), dtype=np.float32))
        rel_err = max(rel_err, float(np.abs(ref - got).max() / max(1.0, np.abs(ref).max())))
    if abs_err > 1e-5 or rel_err > 1e-5:
        raise AssertionError(f"{path}: onnxruntime differs from torch: abs {abs_err:.2e} on realistic "
                             f"inputs, rel {rel_err:.2e} on random inputs (limit 1e-5)")
    return {"max_abs_realistic": abs_err, "n_realistic": int(len(realistic)), "max_rel_random": rel_err}


# ----------------------------------------------------------------------------- training
def _batches(n: int, bs: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, bs):
        yield perm[i:i + bs]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(1).numpy()
    return float((pred == y).mean())


def train_classifier(xtr, ytr, xte, yte, epochs, rng, gen, log):
    from cegarnn.data.shifts import rotate

    model = build_classifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    yt = torch.from_numpy(ytr)
    n = len(xtr)
    for ep in range(epochs):
        # mild augmentation: half of the images rotated by U[-AUG, AUG] degrees, fresh each epoch
        ang = rng.uniform(-AUG_DEGREES, AUG_DEGREES, n) * (rng.random(n) < 0.5)
        xa = torch.from_numpy(rotate(xtr, ang))
        model.train()
        for idx in _batches(n, 128, gen):
            loss = F.cross_entropy(model(xa[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        log(f"  classifier epoch {ep + 1}/{epochs}: loss {loss.item():.3f}, "
            f"test acc {accuracy(model, xte, yte):.4f}")
    return model


def kl_diag(mu_q, lv_q, mu_p, lv_p):
    """KL(N(mu_q, e^lv_q) || N(mu_p, e^lv_p)) summed over latent dims, per sample."""
    return 0.5 * (lv_p - lv_q + (lv_q.exp() + (mu_q - mu_p) ** 2) / lv_p.exp() - 1.0).sum(-1)


def train_cvae(xtr, epochs, rng, gen, log, shift: str = "rotation", hidden: int = 200, latent: int = LATENT,
               sample=None):
    """CVAE on pairs (x, T_theta(x)), theta ~ U(SHIFTS[shift] range) drawn afresh each epoch
    (``sample(xtr, rng)``, if given, draws the shifted images instead)."""
    from cegarnn.data.shifts import SHIFTS, apply_shift

    if sample is None:
        lo, hi = SHIFTS[shift][1]
        sample = lambda xs, r: apply_shift(shift, xs, r.uniform(lo, hi, len(xs)))  # noqa: E731
    prior, enc, G = build_prior(latent), build_encoder(latent), build_generator(latent, hidden=hidden)
    params = [*prior.parameters(), *enc.parameters(), *G.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    n = len(xtr)
    xf = torch.from_numpy(xtr.reshape(n, IMG))
    for ep in range(epochs):
        xs = torch.from_numpy(sample(xtr, rng).reshape(n, IMG))
        tot_rec = tot_kl = 0.0
        for idx in _batches(n, 128, gen):
            x, x2 = xf[idx], xs[idx]
            mu_p, lv_p = prior(x).chunk(2, -1)
            mu_q, lv_q = enc(torch.cat([x, x2], 1)).chunk(2, -1)
            z = mu_q + torch.randn(mu_q.shape, generator=gen) * (0.5 * lv_q).exp()
            out = G(torch.cat([x, z], 1))
            rec = F.binary_cross_entropy(out, x2, reduction="none").sum(1)
            kl = kl_diag(mu_q, lv_q, mu_p, lv_p)
            loss = (rec + kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot_rec += rec.sum().item()
            tot_kl += kl.sum().item()
        sched.step()
        log(f"  {shift} (latent {latent}) cvae epoch {ep + 1}/{epochs}: rec(BCE) {tot_rec / n:.2f}, KL {tot_kl / n:.2f}")
    for m in (prior, enc, G):
        m.eval()
    return prior, enc, G


# ----------------------------------------------------------------------------- evaluation
def reconstruction_report(prior, enc, G, x, rng, gen):
    """Mean absolute pixel errors on held-out pairs (x, T_theta(x)), theta ~ U[-MAX, MAX]."""
    from cegarnn.data.shifts import rotate

    n = len(x)
    theta = rng.uniform(-MAX_DEGREES, MAX_DEGREES, n)
    xs = rotate(x, theta).reshape(n, IMG)
    xf = torch.from_numpy(x.reshape(n, IMG))
    with torch.no_grad():
        mu_p, lv_p = prior(xf).chunk(2, -1)
        mu_q, _ = enc(torch.cat([xf, torch.from_numpy(xs)], 1)).chunk(2, -1)
        eps = torch.randn(mu_p.shape, generator=gen)
        g_prior = G(torch.cat([xf, mu_p + (0.5 * lv_p).exp() * eps], 1)).numpy()
        g_prior_mean = G(torch.cat([xf, mu_p], 1)).numpy()
        g_post = G(torch.cat([xf, mu_q], 1)).numpy()
    xn = xf.numpy()
    mae = lambda a, b: float(np.abs(a - b).mean())
    return {
        "n_pairs": int(n),
        "source": "MNIST test images, theta ~ U[-30, 30] degrees",
        "mae_identity_baseline": mae(xn, xs),
        "mae_G_prior_sample": mae(g_prior, xs),
        "mae_G_prior_mean": mae(g_prior_mean, xs),
        "mae_G_posterior_mean": mae(g_post, xs),
        "mae_G_prior_mean_vs_unrotated_x": mae(g_prior_mean, xn),
        "notes": ("prior_sample: z = mu_p + sigma_p*eps (a random rotation, so compared with the pair's own "
                  "theta it is not expected to beat much the identity baseline); posterior_mean: "
                  "z = mean of q(z|x, T_theta x), i.e. how well G reproduces that specific rotation"),
    }


def best_angle(G_out: np.ndarray, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """For each generated image, the rotation angle of x (from grid) that it is closest to (L2)."""
    from cegarnn.data.shifts import rotate

    n = len(x)
    errs = np.stack([((rotate(x, a).reshape(n, IMG) - G_out) ** 2).sum(1) for a in grid], 1)
    return grid[errs.argmin(1)]


def latent_sweep(prior, G, x, dims, ts):
    """G(x, mu + t*sigma*e_k) for k in dims, t in ts: array (len(dims), len(ts), N, 784)."""
    n = len(x)
    xf = torch.from_numpy(x.reshape(n, IMG))
    with torch.no_grad():
        mu, lv = prior(xf).chunk(2, -1)
        sig = (0.5 * lv).exp()
        res = np.zeros((len(dims), len(ts), n, IMG), np.float32)
        for a, k in enumerate(dims):
            for b, t in enumerate(ts):
                z = mu.clone()
                z[:, k] += t * sig[:, k]
                res[a, b] = G(torch.cat([xf, z], 1)).numpy()
    return res


def robustness_fractions(C, prior, G, x, y, deltas, n_samples, gen):
    """Per delta: fraction of images whose label C keeps for all n_samples z ~ U(mu +- delta*sigma)."""
    n = len(x)
    xf = torch.from_numpy(x.reshape(n, IMG))
    out = {}
    with torch.no_grad():
        mu, lv = prior(xf).chunk(2, -1)
        sig = (0.5 * lv).exp()
        for d in deltas:
            robust = []
            for i in range(n):
                u = torch.rand((n_samples, LATENT), generator=gen) * 2 - 1
                z = mu[i] + d * sig[i] * u
                imgs = G(torch.cat([xf[i].expand(n_samples, IMG), z], 1))
                robust.append(bool((C(imgs).argmax(1) == int(y[i])).all()))
            out[str(d)] = {"fraction_robust": float(np.mean(robust)),
                           "n_falsified": int(n - sum(robust)),
                           "falsified_indices": [i for i, r in enumerate(robust) if not r]}
    return out


def save_samples_png(path, x, G, prior, dims, ts, n_random, gen):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from cegarnn.data.shifts import rotate

    n = len(x)
    sweep = latent_sweep(prior, G, x, dims, ts)
    xf = torch.from_numpy(x.reshape(n, IMG))
    with torch.no_grad():
        mu, lv = prior(xf).chunk(2, -1)
        sig = (0.5 * lv).exp()
        rand = [G(torch.cat([xf, mu + sig * torch.randn(mu.shape, generator=gen)], 1)).numpy()
                for _ in range(n_random)]
    cols = [("x", x.reshape(n, IMG)), ("rot -30", rotate(x, -30).reshape(n, IMG)),
            ("rot +30", rotate(x, 30).reshape(n, IMG))]
    for a, k in enumerate(dims):
        cols += [(f"z{k} {t:+g}s", sweep[a, b]) for b, t in enumerate(ts)]
    cols += [(f"rand {j}", r) for j, r in enumerate(rand)]
    fig, axes = plt.subplots(n, len(cols), figsize=(0.9 * len(cols), 0.95 * n + 0.3))
    for i in range(n):
        for j, (title, imgs) in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(imgs[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=6)
    fig.suptitle("G(x, z): columns = x, true rotations, mu + t*sigma*e_k sweeps, z ~ p(z|x)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--data", type=Path, default=None, help="MNIST IDX folder (default: search)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs-classifier", type=int, default=10)
    ap.add_argument("--epochs-cvae", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from cegarnn.data import load_mnist, rotate

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    log = lambda s: print(f"[{time.time() - t0:6.1f}s] {s}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)

    xtr, ytr = load_mnist("train", args.data)
    xte, yte = load_mnist("test", args.data)
    log(f"MNIST train {xtr.shape}, test {xte.shape}")

    t_c = time.time()
    C = train_classifier(xtr, ytr, xte, yte, args.epochs_classifier, rng, gen, log)
    t_c = time.time() - t_c
    acc_train, acc_test = accuracy(C, xtr, ytr), accuracy(C, xte, yte)
    acc_rot = {str(a): accuracy(C, rotate(xte, a), yte) for a in (-45, -30, -20, -10, -5, 5, 10, 20, 30, 45)}
    log(f"classifier: train acc {acc_train:.4f}, test acc {acc_test:.4f}, rotated test acc {acc_rot}")

    t_g = time.time()
    prior, enc, G = train_cvae(xtr, args.epochs_cvae, rng, gen, log)
    t_g = time.time() - t_g

    # --- artifacts
    for name, m, n_in in (("classifier", C, IMG), ("generator", G, IMG + LATENT), ("prior", prior, IMG)):
        torch.save(m.state_dict(), args.out / f"{name}.pt")
        sequential_to_onnx(m, n_in, args.out / f"{name}.onnx", name)
    xr = xte[:200].reshape(200, IMG)
    with torch.no_grad():
        mu, lv = prior(torch.from_numpy(xr)).chunk(2, -1)
        u = torch.rand(mu.shape, generator=gen) * 2 - 1
        zr = (mu + 3.0 * (0.5 * lv).exp() * u).numpy()  # z in the delta = 3 box
    onnx_err = {"classifier": check_onnx(C, args.out / "classifier.onnx", xr, rng),
                "generator": check_onnx(G, args.out / "generator.onnx", np.concatenate([xr, zr], 1), rng),
                "prior": check_onnx(prior, args.out / "prior.onnx", xr, rng)}
    log(f"ONNX max |ort - torch|: {onnx_err}")

    with torch.no_grad():
        pred = C(torch.from_numpy(xte)).argmax(1).numpy()
    idx = np.flatnonzero(pred == yte)[:N_TEST_IMAGES]
    timg, tlab = xte[idx], yte[idx]
    np.savez_compressed(args.out / "test_images.npz", images=timg.astype(np.float32),
                        labels=tlab.astype(np.int64), indices=idx.astype(np.int64))

    # --- evaluation
    recon = reconstruction_report(prior, enc, G, xte, rng, gen)
    log(f"reconstruction (mean |.| per pixel): {recon}")
    with torch.no_grad():
        mu_q = enc(torch.cat([torch.from_numpy(xte[:2000].reshape(-1, IMG)),
                              torch.from_numpy(rotate(xte[:2000], rng.uniform(-30, 30, 2000)).reshape(-1, IMG))],
                             1)).chunk(2, -1)[0]
        mu_p, lv_p = prior(torch.from_numpy(xte[:2000])).chunk(2, -1)
    # activity of each latent dim: spread of the posterior means in units of the prior sigma
    activity = (((mu_q - mu_p) / (0.5 * lv_p).exp()).std(0)).numpy()
    dims = [int(k) for k in np.argsort(-activity)[:2]]
    ts = [-2.0, -1.0, 0.0, 1.0, 2.0]
    sweep = latent_sweep(prior, G, timg, dims, ts)
    grid = np.arange(-60, 61, 2.0)
    angle_sweep = {f"z{k}": {f"{t:+g}": float(np.median(best_angle(sweep[a, b], timg, grid)))
                             for b, t in enumerate(ts)} for a, k in enumerate(dims)}
    sigma_mean = (0.5 * lv_p).exp().mean(0).numpy()
    log(f"latent activity {np.round(activity, 3).tolist()}; median best-matching rotation along "
        f"the 2 most active dims: {angle_sweep}")
    robust = robustness_fractions(C, prior, G, timg, tlab, DELTAS, 200, gen)
    log("robustness (200 z ~ U(box)): " + ", ".join(
        f"delta={d}: {r['fraction_robust']:.3f}" for d, r in robust.items()))
    save_samples_png(args.out / "samples.png", timg[:6], G, prior, dims, ts, 4, gen)

    sizes = {p.name: p.stat().st_size for p in sorted(args.out.iterdir()) if p.is_file() and p.name != "models.json"}
    n_params = lambda m: int(sum(p.numel() for p in m.parameters()))
    meta = {
        "description": "demo models for generative verification: C(G(x, z)) keeps label(x) for z in a latent box?",
        "seed": args.seed,
        "command": ("python experiments/train_demo_models.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "torch_version": torch.__version__,
        "training_seconds": {"classifier": round(t_c, 1), "cvae": round(t_g, 1), "total": round(time.time() - t0, 1)},
        "image": {"shape": [28, 28], "flattening": "row-major (torch.flatten / numpy reshape)",
                  "range": [0.0, 1.0]},
        "shift": {"kind": "rotation", "implementation": "cegarnn.data.shifts.rotate (bilinear, about the "
                  "image centre (13.5, 13.5), zero fill, positive = counter-clockwise as displayed)",
                  "theta_distribution": f"uniform[-{MAX_DEGREES}, {MAX_DEGREES}] degrees"},
        "latent_dim": LATENT,
        "classifier": {
            "files": ["classifier.pt", "classifier.onnx"],
            "torch": "nn.Sequential(Flatten, Linear(784,32), ReLU, Linear(32,32), ReLU, Linear(32,10))",
            "onnx": "input 'input' [1,784] -> Gemm,Relu,Gemm,Relu,Gemm -> output 'output' [1,10] (logits)",
            "parameters": n_params(C),
            "training": f"Adam lr 2e-3 cosine, batch 128, {args.epochs_classifier} epochs, half of the images "
                        f"rotated by U[-{AUG_DEGREES}, {AUG_DEGREES}] degrees each epoch",
            "train_accuracy": acc_train, "test_accuracy": acc_test,
            "test_accuracy_rotated_by_degrees": acc_rot,
        },
        "generator": {
            "files": ["generator.pt", "generator.onnx"],
            "torch": "nn.Sequential(Linear(792,200), ReLU, Linear(200,784), Sigmoid)",
            "input": "concatenation [x_flat (784), z (8)]", "output": "image (784) in (0,1)",
            "onnx": "input 'input' [1,792] -> Gemm,Relu,Gemm,Sigmoid -> output 'output' [1,784]",
            "parameters": n_params(G),
        },
        "prior": {
            "files": ["prior.pt", "prior.onnx"],
            "torch": "nn.Sequential(Flatten, Linear(784,64), ReLU, Linear(64,16))",
            "output": "[mu (8), log sigma^2 (8)] of p(z|x); latent box = mu +- delta*exp(0.5*logvar)",
            "onnx": "input 'input' [1,784] -> Gemm,Relu,Gemm -> output 'output' [1,16]",
            "parameters": n_params(prior),
        },
        "encoder": {"torch": "Linear(1568,256), ReLU, Linear(256,16) on [x_flat, x'_flat]",
                    "committed": False, "parameters": n_params(enc)},
        "cvae_training": f"Adam lr 1e-3 cosine, batch 128, {args.epochs_cvae} epochs, fresh theta per "
                         "epoch; loss = BCE(G([x,z]), T_theta(x)) summed over pixels + KL(q(z|x,x') || p(z|x))",
        "onnx_max_abs_diff_vs_torch": onnx_err,
        "reconstruction_mae": recon,
        "latent_activity": {"per_dim": [round(float(a), 4) for a in activity],
                            "meaning": "std over test pairs of (mu_q - mu_p)/sigma_p",
                            "prior_sigma_mean_per_dim": [round(float(a), 4) for a in sigma_mean]},
        "latent_sweep_best_matching_rotation_degrees": {
            "meaning": "median over the test images of the rotation of x closest (L2) to G(x, mu + t*sigma*e_k)",
            **angle_sweep},
        "test_images": {"file": "test_images.npz", "keys": ["images", "labels", "indices"],
                        "count": int(len(idx)), "selection": "first MNIST test images classified correctly by C"},
        "robustness_random_sampling": {
            "meaning": "fraction of the test images for which 200 z ~ U(mu +- delta*sigma) all keep C's label "
                       "(an upper bound on the verifiable fraction)",
            **robust},
        "file_sizes_bytes": sizes,
    }
    (args.out / "models.json").write_text(json.dumps(meta, indent=2) + "\n")
    log(f"wrote {args.out} ({sum(sizes.values()) / 1e6:.2f} MB): {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
