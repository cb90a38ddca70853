"""Random generator+classifier instances with answers known by construction (issue 15).

    .venv/bin/python experiments/random_instances.py            # compute / refresh the cache of known answers
    .venv/bin/python experiments/random_instances.py --check    # re-check every cached answer (sampling, float32)

An instance ``seed`` is a pair of float32 torch networks drawn from ``numpy.random.default_rng(seed)``:

    generator G([x, z]):  Linear(F + k, 25), Sigmoid, Linear(25, 20), Sigmoid, Linear(20, 16), Sigmoid
    classifier C:         Linear(16, 20), ReLU, Linear(20, 20), ReLU, Linear(20, 5)

with ``k`` in 20..40 free latent inputs, a fixed "image" part ``x`` of F = 10 values in [0, 1] (folded
into the first bias by ``generative_problem``, as for the MNIST shift models) and a latent box
``mu ± delta·sigma`` like a prior's (mu ~ N(0, 0.3²), sigma ~ U(0.5, 1.5), delta = 1). The property:
``C(G(x, z))`` keeps the label ``y`` for every ``z`` in the box; its margin
``m(z) = C_y - max_{j != y} C_j``.

**Why the answers are known.** The latent part of G's first weight is ``W_z = A·B`` with ``B`` of
rank RANK = 2 (a 2 x k matrix): the network sees the k-dim box only through ``y = B z``, which ranges
over a polygon (a 2-dim zonotope). (Trained generators behave alike: most latent dimensions of a CVAE
collapse to the prior, experiments/models/shifts/*/model.json.) A verifier does not know this, so
the instance stays a k-dim problem for it; but an independent, complete check is cheap:
:func:`exact_min` runs best-first branch and bound over boxes in the 2-dim ``y`` space, each cut
to the exact zonotope polygon, bounded by interval arithmetic and a mean-value form with an interval
Jacobian (float64, the network's exact float32 weights, the rounding ``fl32(A·B) - A·B`` carried as
an interval term); the best point is mapped back to a ``z`` by an LP (HiGHS via scipy). It returns a sound lower bound ``L`` and a
point ``z*`` with ``m(z*) = U >= min m >= L``, and stops when ``U - L <= GAP``. Then the label's
output bias is moved:

- **verified** (margin ``MARGIN_VERIFIED``): bias_y += ``MARGIN_VERIFIED - L``, so
  ``min m >= MARGIN_VERIFIED`` (and ``<= MARGIN_VERIFIED + U - L``): a proof exists, but it is tight.
- **falsified** (planted counterexample, margin -0.1): bias_y += ``-0.1 - U``, so ``m(z*) = -0.1``
  exactly (float64; the float32 network is checked too) and only the sublevel set
  ``{m < min m + 0.1}`` — a small part of the box, measured by sampling in the cache — violates.

Before the shift, C's last layer is scaled so that the median of ``m`` over the box is 1 above its
minimum, so 0.1 is a tenth of the typical spread, not a rounding error.

The answers (``L``, ``U``, ``z*``, the sampled violating fraction) are computed once and cached in
``experiments/results/issue15/random_instances.json`` (committed); :func:`instance` rebuilds the
networks from the seed and applies the cached shift, so benchmarks and tests need no solver run.
"""
from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CACHE = ROOT / "experiments" / "results" / "issue15" / "random_instances.json"
FIXED = 10                 # fixed "image" inputs, folded into the first bias
GEN_HIDDEN = (25, 20)      # generator sigmoid hidden layers
GEN_OUT = 16               # generator sigmoid outputs
CLF_HIDDEN = (20, 20)      # classifier ReLU layers
CLASSES = 5
RANK = 1                   # rank of the main latent part of G's first weight
NOISE = 1e-4               # max change of a first pre-activation by the full-rank part over the box
DELTA = 1.0
MARGIN_VERIFIED = 0.05     # min margin of a verified instance (at least; at most this + GAP)
MARGIN_FALSIFIED = -0.1    # margin at the planted counterexample
GAP = 0.03                 # exact_min stops when U - L <= GAP
# the default benchmark: 10 verified and 10 falsified instances
VERIFIED_SEEDS = tuple(range(0, 10))
FALSIFIED_SEEDS = tuple(range(100, 110))


# ----------------------------------------------------------------------------------------------
# the random networks (before the label's bias is moved)

@dataclass
class Base:
    """The seeded networks and box; ``gen``/``clf`` are float32 nn.Sequential; ``B`` (RANK, k) float64."""
    seed: int
    k: int
    x: np.ndarray
    label: int
    lower: np.ndarray
    upper: np.ndarray
    gen: nn.Sequential
    clf: nn.Sequential
    A: np.ndarray
    B: np.ndarray


def _linear(W, b) -> nn.Linear:
    lin = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(W, dtype=torch.float32))
        lin.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    return lin


def base(seed: int) -> Base:
    """The networks and box of instance ``seed`` (deterministic: numpy Generator only)."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(20, 41))
    x = rng.random(FIXED)
    mu = rng.normal(0.0, 0.3, k)
    sigma = rng.uniform(0.5, 1.5, k)
    lower, upper = mu - DELTA * sigma, mu + DELTA * sigma
    rho = DELTA * sigma
    # y = B z: each coordinate has std ~1 over the box (uniform z: var = sum B^2 rho^2 / 3)
    B = rng.normal(0.0, 1.0, (RANK, k))
    B *= 1.0 / np.sqrt((B ** 2 * rho ** 2 / 3.0).sum(1, keepdims=True))
    A = rng.normal(0.0, 1.5, (GEN_HIDDEN[0], RANK))
    # a full-rank part N, scaled so that it moves each first pre-activation by at most NOISE over the box
    N = rng.normal(0.0, 1.0, (GEN_HIDDEN[0], k))
    N *= NOISE / (np.abs(N) @ rho).max()
    Wx = rng.normal(0.0, 0.5, (GEN_HIDDEN[0], FIXED))
    Wz = A @ B + N
    b1 = -(Wz @ mu) - Wx @ x + rng.normal(0.0, 0.5, GEN_HIDDEN[0])   # centred pre-activations
    layers = [_linear(np.concatenate([Wx, Wz], 1), b1), nn.Sigmoid()]
    sizes = (*GEN_HIDDEN, GEN_OUT)
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W = rng.normal(0.0, 3.0 / np.sqrt(n_in), (n_out, n_in))
        layers += [_linear(W, -W @ np.full(n_in, 0.5) + rng.normal(0.0, 0.5, n_out)), nn.Sigmoid()]
    gen = nn.Sequential(*layers).eval()
    c_sizes = (GEN_OUT, *CLF_HIDDEN, CLASSES)
    c_layers = []
    for i, (n_in, n_out) in enumerate(zip(c_sizes[:-1], c_sizes[1:])):
        W = rng.normal(0.0, np.sqrt(2.0 / n_in) * (2.0 if i == 0 else 1.0), (n_out, n_in))
        c_layers += [_linear(W, rng.normal(0.0, 0.1, n_out) - (W @ np.full(n_in, 0.5) if i == 0 else 0.0))]
        if i < len(c_sizes) - 2:
            c_layers.append(nn.ReLU())
    clf = nn.Sequential(*c_layers).eval()
    for p in (*gen.parameters(), *clf.parameters()):
        p.requires_grad_(False)
    b = Base(seed, k, x, 0, lower, upper, gen, clf, A, B)
    # label: the class the classifier picks most often over the box
    z = _uniform(rng, lower, upper, 2000)
    b.label = int(np.bincount(logits(b, z).argmax(1), minlength=CLASSES).argmax())
    # scale C's last layer so that median(m) - min(m) over samples is ~1 (min from a short PGD)
    m = margins(b, z)
    lo = min(m.min(), _pgd(b, restarts=16, steps=60)[1])
    last = clf[-1]
    with torch.no_grad():
        s = float(1.0 / max(np.median(m) - lo, 1e-3))
        last.weight.mul_(s)
        last.bias.mul_(s)
    return b


def _uniform(rng, lower, upper, n):
    return lower + (upper - lower) * rng.random((n, lower.shape[0]))


def logits(b: Base, z, dtype=torch.float64) -> np.ndarray:
    """C(G([x, z])) for z (n, k), computed in ``dtype`` (float64: the IR's arithmetic; float32: executed)."""
    z = np.asarray(z, dtype=np.float64).reshape(-1, b.k)
    inp = np.concatenate([np.broadcast_to(b.x, (len(z), FIXED)), z], 1)
    g, c = b.gen.to(dtype), b.clf.to(dtype)
    with torch.no_grad():
        out = c(g(torch.as_tensor(inp, dtype=dtype))).double().numpy()
    b.gen.float(), b.clf.float()
    return out


def _margin_of(out: np.ndarray, label: int) -> np.ndarray:
    others = np.delete(out, label, axis=1)
    return out[:, label] - others.max(1)


def margins(b: Base, z, dtype=torch.float64) -> np.ndarray:
    return _margin_of(logits(b, z, dtype), b.label)


def _pgd(b: Base, restarts=64, steps=200, seed=0):
    """Projected gradient descent on m(z) in the box (float64); (z, m(z)) of the best point."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.as_tensor(b.lower), torch.as_tensor(b.upper)
    z = lo + (hi - lo) * torch.rand((restarts, b.k), generator=g, dtype=torch.float64)
    x = torch.as_tensor(b.x, dtype=torch.float64).expand(restarts, FIXED)
    gen, clf = b.gen.double(), b.clf.double()
    step = 0.1 * (hi - lo)
    best_z, best_m = None, np.inf
    for t in range(steps):
        z.requires_grad_(True)
        out = clf(gen(torch.cat([x, z], 1)))
        others = torch.cat([out[:, :b.label], out[:, b.label + 1:]], 1)
        m = out[:, b.label] - others.max(1).values
        i = int(m.argmin())
        if float(m[i].detach()) < best_m:
            best_m, best_z = float(m[i].detach()), z[i].detach().numpy().copy()
        (gz,) = torch.autograd.grad(m.sum(), z)
        with torch.no_grad():
            z = torch.max(torch.min(z - step * (1 - t / steps) * gz.sign(), hi), lo)
    b.gen.float(), b.clf.float()
    return best_z, best_m


# ----------------------------------------------------------------------------------------------
# the independent complete check

def _layers(b: Base):
    """float64 copies of the float32 weights: [(W, bias, act)] ('Sigmoid' | 'ReLU' | None)."""
    out, mods, i = [], [*b.gen, *b.clf], 0
    while i < len(mods):
        lin = mods[i]
        act = mods[i + 1] if i + 1 < len(mods) and not isinstance(mods[i + 1], nn.Linear) else None
        out.append((lin.weight.double().numpy(), lin.bias.double().numpy(),
                    None if act is None else type(act).__name__))
        i += 2 if act is not None else 1
    return out


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _act_range(act, lo, hi):
    if act == "Sigmoid":
        return _sig(lo), _sig(hi)
    if act == "ReLU":
        return np.maximum(lo, 0), np.maximum(hi, 0)
    return lo, hi


def _act_slope(act, lo, hi):
    """Interval of the activation's derivative over [lo, hi] (both >= 0)."""
    if act == "Sigmoid":
        d = lambda v: _sig(v) * (1 - _sig(v))
        return np.minimum(d(lo), d(hi)), d(np.clip(0.0, lo, hi))
    return (lo > 0).astype(float), (hi > 0).astype(float)       # ReLU


def _imul_pos(c, r, slo, shi):
    """[c - r, c + r] * [slo, shi] (slo >= 0) elementwise, as (center, radius)."""
    lo, hi = c - r, c + r
    cands = np.stack([lo * slo, lo * shi, hi * slo, hi * shi])
    a, b = cands.min(0), cands.max(0)
    return (a + b) / 2, (b - a) / 2


def _cell_bounds(layers, label, A, first_bias, E_rad, ylo, yhi, verts):
    """Lower bounds of each margin row m_j = C_label - C_j over z with B z in the cell [ylo, yhi] (n, RANK)
    intersected with the zonotope (``verts``: the vertices of that intersection, one array per cell).

    max of (1) interval arithmetic and (2) the mean-value form m_j(y) >= m_j(yc) + Jc·(y - yc) - Jr·|y - yc|
    with [Jc ± Jr] an interval enclosure of the Jacobian over the cell (backward mode in interval
    arithmetic), the linear part minimised exactly over the clipped polygon's vertices. The first
    pre-activation is A y + first_bias + e with |e| <= E_rad (float32 rounding of W_z = A·B).
    """
    yc, yr = (ylo + yhi) / 2, (yhi - ylo) / 2
    c, r = yc @ A.T + first_bias, yr @ np.abs(A).T + E_rad
    pres, lo, hi = [], c - r, c + r
    last = len(layers) - 1
    W_last, b_last, _ = layers[last]
    D = W_last[label][None] - np.delete(W_last, label, 0)
    d = b_last[label] - np.delete(b_last, label)
    for j, (W, bias, act) in enumerate(layers):
        if j > 0:
            c, r = (lo + hi) / 2, (hi - lo) / 2
            if j == last:
                ibp = c @ D.T + d - r @ np.abs(D).T                 # (n, C-1)
                break
            c, r = c @ W.T + bias, r @ np.abs(W).T
            lo, hi = c - r, c + r
        pres.append((lo, hi, act))
        lo, hi = _act_range(act, lo, hi)
    # backward interval Jacobian of every margin row w.r.t. the first pre-activation: (n, C-1, h1)
    n = len(yc)
    gc = np.broadcast_to(D[None], (n, *D.shape)).copy()
    gr = np.zeros_like(gc)
    for j in range(last - 1, -1, -1):
        plo, phi, act = pres[j]
        slo, shi = _act_slope(act, plo, phi)
        gc, gr = _imul_pos(gc, gr, slo[:, None, :], shi[:, None, :])
        if j > 0:
            W = layers[j][0]
            gc, gr = gc @ W, gr @ np.abs(W)
    Jc, Jr = gc @ A, gr @ np.abs(A)                                # w.r.t. y: (n, C-1, RANK)
    e_term = (np.abs(gc) + gr) @ E_rad                             # (n, C-1)
    # value at the centre (e = 0)
    v = yc @ A.T + first_bias
    for j, (W, bias, act) in enumerate(layers):
        if j > 0:
            if j == last:
                mc = v @ D.T + d
                break
            v = v @ W.T + bias
        v = _act_range(act, v, v)[0]
    lin = np.einsum("njr,nvr->njv", Jc, verts - yc[:, None, :]).min(2)
    mv = mc + lin - (Jr * yr[:, None, :]).sum(2) - e_term
    return np.maximum(ibp, mv).min(1), mc.min(1)


def _z_for(B, y, lower, upper):
    """A z in the box with B z = y (an LP, HiGHS via scipy); None if none is found."""
    from scipy.optimize import linprog
    res = linprog(np.zeros(B.shape[1]), A_eq=B, b_eq=y, bounds=list(zip(lower, upper)), method="highs")
    return res.x if res.status == 0 else None


def exact_min(b: Base, gap=GAP, max_boxes=2_000_000, time_limit=300.0, batch=512):
    """Sound lower bound L and a point z* (m(z*) = U) of min m over the box; stops at U - L <= gap.

    The first pre-activation is ``A y + e + const`` with ``y = B z`` (RANK = 1: ``y`` ranges over the
    interval ``B zc ± |B| zr`` exactly) and ``e = (W_z - A·B) z`` (the full-rank part and the float32
    rounding), ``|e - e(zc)| <= |W_z - A·B| zr``, carried as an interval. Best-first branch and bound
    over intervals of ``y``: a cell's bound is the better of interval arithmetic and a mean-value
    form with an interval Jacobian (:func:`_cell_bounds`), both containing the network's values for
    every ``z`` with ``B z`` in the cell; the cell ends are candidate points of the network at
    ``e = e(zc)``; the best one is mapped back to a ``z`` in the box by an LP and evaluated on the
    real network (its ``U`` includes the true ``e``). L is lowered by 1e-9 (float64 rounding).
    """
    if RANK != 1 or b.B.shape[0] != 1:
        raise ValueError("exact_min handles RANK = 1")
    layers = _layers(b)
    W1 = layers[0][0]
    E = W1[:, FIXED:] - b.A @ b.B
    zc, zr = (b.lower + b.upper) / 2, (b.upper - b.lower) / 2
    E_rad = np.abs(E) @ zr * (1 + 1e-12) + 1e-12
    first_bias = W1[:, :FIXED] @ b.x + layers[0][1] + E @ zc
    label, A = b.label, b.A

    def f_y(ys):                       # the margin as a function of y (e = e(zc))
        out = np.asarray(ys).reshape(-1, 1) @ A.T + first_bias
        for j, (W, bias, act) in enumerate(layers):
            if j > 0:
                out = out @ W.T + bias
            out = _act_range(act, out, out)[0]
        return _margin_of(out, label)

    yc0, yr0 = float(b.B[0] @ zc), float(np.abs(b.B[0]) @ zr)
    z_pgd, _ = _pgd(b)
    grid = np.linspace(yc0 - yr0, yc0 + yr0, 20001)
    fv = f_y(grid)
    y_best = float(grid[int(np.argmin(fv))])
    U = float(fv.min())
    t0 = time.perf_counter()

    def bound(lo, hi):
        lo, hi = np.asarray(lo).reshape(-1, 1), np.asarray(hi).reshape(-1, 1)
        verts = np.stack([lo, hi], 1)                             # (n, 2, 1)
        return _cell_bounds(layers, label, A, first_bias, E_rad, lo, hi, verts)[0]

    heap = [(float(bound([yc0 - yr0], [yc0 + yr0])[0]), yc0 - yr0, yc0 + yr0)]
    n_boxes, dropped_min = 1, np.inf
    while heap:
        L = min(heap[0][0], dropped_min, U)
        if U - L <= gap or n_boxes >= max_boxes or time.perf_counter() - t0 > time_limit:
            break
        take = [heapq.heappop(heap) for _ in range(min(batch, len(heap)))]
        lo = np.array([t[1] for t in take])
        hi = np.array([t[2] for t in take])
        keep = np.array([t[0] < U for t in take])
        if (~keep).any():
            dropped_min = min(dropped_min, min(t[0] for t in take if t[0] >= U))
        lo, hi = lo[keep], hi[keep]
        if not len(lo):
            continue
        mid = (lo + hi) / 2
        klo, khi = np.concatenate([lo, mid]), np.concatenate([mid, hi])
        lbs = bound(klo, khi)
        fm = f_y(mid)
        i = int(np.argmin(fm))
        if fm[i] < U:
            U, y_best = float(fm[i]), float(mid[i])
        for v, a, c in zip(lbs, klo, khi):
            heapq.heappush(heap, (float(v), float(a), float(c)))
        n_boxes += len(klo)
    L = min(heap[0][0] if heap else np.inf, dropped_min, U) - 1e-9
    z_star = _z_for(b.B, np.array([y_best]), b.lower, b.upper)
    if z_star is None:
        z_star = z_pgd
    U_true = float(margins(b, z_star[None])[0])
    U_pgd = float(margins(b, z_pgd[None])[0])
    if U_pgd < U_true:
        U_true, z_star = U_pgd, z_pgd
    if U_true < L:
        raise AssertionError(f"exact_min: a point has margin {U_true} below the lower bound {L}")
    return {"L": float(L), "U": U_true, "z_star": [float(v) for v in z_star], "boxes": int(n_boxes),
            "seconds": round(time.perf_counter() - t0, 2), "converged": bool(U_true - L <= gap + 1e-6),
            "method": "best-first B&B over y = B z (1-d), interval + mean-value bounds, e = (W_z - A B) z as an interval"}


# ----------------------------------------------------------------------------------------------
# instances with known answers

@dataclass
class Instance:
    """A random instance with its known answer; ``problem()`` is the cegarnn Problem."""
    name: str
    kind: str                    # "verified" | "falsified"
    base: Base
    shift: float                 # added to the label's output bias (float64 value before float32 rounding)
    known: dict = field(default_factory=dict)

    @property
    def gen(self):
        return self.base.gen

    @property
    def clf(self):
        return self.base.clf

    @property
    def z_star(self):
        return np.asarray(self.known["z_star"], dtype=np.float64)

    def margins(self, z, dtype=torch.float64):
        return margins(self.base, z, dtype)

    def problem(self):
        from cegarnn.specs.problem import generative_problem
        b = self.base
        return generative_problem(b.gen, b.clf, b.x, b.label, latent_lower=b.lower, latent_upper=b.upper,
                                  name=self.name)


def _apply_shift(b: Base, shift: float) -> float:
    """Add ``shift`` to the label's float32 bias; the exact float64 change actually applied."""
    bias = b.clf[-1].bias
    old = float(bias[b.label])
    with torch.no_grad():
        bias[b.label] = float(np.float32(old + shift))
    return float(bias[b.label]) - old


def load_cache(path: Path = CACHE) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def instance(seed: int, kind: str, cache: dict | None = None, **check) -> Instance:
    """Instance ``seed`` of ``kind``; the check comes from ``cache`` (default: the committed JSON) or is run."""
    if kind not in ("verified", "falsified"):
        raise ValueError(f"kind must be 'verified' or 'falsified', got {kind!r}")
    b = base(seed)
    cache = load_cache() if cache is None else cache
    key = str(seed)
    res = cache.get(key, {}).get("check") if key in cache else None
    if res is None:
        res = exact_min(b, **check)
    target = (MARGIN_VERIFIED - res["L"]) if kind == "verified" else (MARGIN_FALSIFIED - res["U"])
    applied = _apply_shift(b, target)
    known = {"answer": kind, "check": res, "bias_shift": applied, "label": b.label, "latent_dim": b.k}
    if kind == "verified":
        known["min_margin_at_least"] = res["L"] + applied
        known["min_margin_at_most"] = res["U"] + applied
    else:
        known["planted_margin"] = res["U"] + applied
        known["z_star"] = res["z_star"]
    return Instance(f"random-{kind}-seed{seed}", kind, b, applied, known)


def default_instances(cache: dict | None = None) -> list[Instance]:
    cache = load_cache() if cache is None else cache
    return ([instance(s, "verified", cache) for s in VERIFIED_SEEDS]
            + [instance(s, "falsified", cache) for s in FALSIFIED_SEEDS])


def independent_checks(inst: Instance, n: int = 20000, seed: int = 1) -> dict:
    """Float32 checks of the known answer on the torch networks (the executed model)."""
    b = inst.base
    rng = np.random.default_rng(seed)
    z = _uniform(rng, b.lower, b.upper, n)
    corners = np.where(rng.random((2000, b.k)) < 0.5, b.lower, b.upper)
    m = inst.margins(np.concatenate([z, corners]), torch.float32)
    out = {"samples": int(len(m)), "sampled_min_margin_float32": float(m.min()),
           "sampled_violating_fraction": float((m <= 0).mean())}
    if inst.kind == "falsified":
        out["planted_margin_float32"] = float(inst.margins(inst.z_star[None], torch.float32)[0])
        out["z_star_in_box"] = bool(np.all((inst.z_star >= b.lower) & (inst.z_star <= b.upper)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="default: the benchmark's 20 seeds")
    ap.add_argument("--check", action="store_true", help="only re-check the cached answers")
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--time-limit", type=float, default=300.0, help="seconds of exact_min per seed")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cache = load_cache(args.cache)
    kinds = {**{s: "verified" for s in VERIFIED_SEEDS}, **{s: "falsified" for s in FALSIFIED_SEEDS}}
    seeds = args.seeds if args.seeds is not None else list(kinds)
    for s in seeds:
        kind = kinds.get(s, "verified")
        if not args.check and str(s) not in cache:
            b = base(s)
            res = exact_min(b, time_limit=args.time_limit)
            cache[str(s)] = {"kind": kind, "latent_dim": b.k, "label": b.label, "check": res}
        inst = instance(s, kind, cache)
        chk = independent_checks(inst)
        cache[str(s)]["independent_float32"] = chk
        ok = (chk["sampled_violating_fraction"] == 0.0 if kind == "verified"
              else chk["planted_margin_float32"] < -0.099 and chk["z_star_in_box"])
        cache[str(s)]["ok"] = bool(ok and cache[str(s)]["check"]["converged"])
        print(f"seed {s} ({kind}, k={inst.base.k}): L={inst.known['check']['L']:.4f} U={inst.known['check']['U']:.4f} "
              f"{inst.known['check']['seconds']}s {inst.known['check']['boxes']} boxes; {chk}; ok={cache[str(s)]['ok']}",
              flush=True)
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        args.cache.write_text(json.dumps(cache, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
