"""Randomised soundness check: seeded small instances, cegarnn-independent ground truth, and a judge.

Shared by ``tests/test_soundness_random.py`` (fast, 40 instances) and
``experiments/bench_soundness.py`` (hundreds to thousands); :func:`check_instance` does one
instance end to end. Nothing here uses cegarnn to decide what is true:
networks are evaluated with this module's own numpy float64 forward pass and with onnxruntime on a
float32 ONNX graph this module writes itself; safety is proved with this module's own interval
arithmetic. cegarnn is only imported to *run* the methods under test (:func:`run_library`,
:func:`run_vnnlib`).

Instances (:func:`make_instance`): 1-3 hidden layers of width 2-12 with ReLU / Sigmoid / Tanh
(mixed per layer), 1-3 free inputs, a random box, 1-3 outputs, and an unsafe region
``OR_j AND_k (C_j y <= d_j)_k`` (1-2 disjuncts of 1-2 rows) whose thresholds are shifted so that the
smallest margin found by sampling is a chosen small offset: some instances are barely safe, some
barely unsafe. Weights are random float64 (never float32-exact). Flavours:

* ``plain``   - Gaussian weights;
* ``large``   - sigmoid/tanh pre-activations reach 300..1500 in magnitude on the samples (their
  interval bounds often far more), rows of very different scales (auto_LiRPA 0.3 clips
  sigmoid/tanh pre-activation bounds at ±500 and builds its relaxation from the clipped interval:
  unsound beyond);
* ``saturate`` - issue 10's case 1 in 1-3 dimensions: one sigmoid/tanh layer, one or two neurons
  whose pre-activation runs from near 0 to beyond ±500 (550..1e4) over the box, the others in
  their near-linear range, output weights of very different scales;
* ``cancel``  - pairs of first-layer rows ``w`` and ``w(1 + delta)`` (``delta`` 1e-8..1e-5)
  whose difference is amplified by the next layer (``±A``, ``A·delta·|w x + b| ~ 1``): float32
  rounding of the weights or float32 arithmetic changes the output by O(1);
* ``mixed``   - ``large`` and ``cancel`` together.

Thresholds: after a first search for the smallest margin ``m*`` with provisional thresholds, every
``d`` is shifted so that the smallest margin becomes ``offset``: 0 (8 %), ±1e-7..1e-2 of the
margin's spread over the box (67 %), or ±1e-2..0.3 of it (25 %), sign random.

Ground truth (:func:`ground_truth`), per network: dense grid + uniform samples + corners, local
refinement (scipy L-BFGS-B from the best points, then clouds of perturbations), on the float64
network AND on the float32 ONNX model (onnxruntime). A violation found by the batched session is
re-checked with batch size 1 (the way a reference model and VNN-COMP's checker run it). "safe" is
proved by bisection of the input box with outward-padded float64 interval arithmetic (float32
weights, float32 rounding of inputs and sums, and activation error are covered by the padding for
the float32 model), within a box budget; otherwise "unknown".

Judging (:func:`judge_library`, :func:`judge_vnnlib`): ``verified``/``unsat`` where a violation was
sampled is WRONG (library path: on the float64 network, or on the float32 model that is the
problem's reference - cegarnn's proofs cover float32 execution by default; VNN-LIB path: on
onnxruntime); ``falsified``/``sat`` whose counterexample is outside the box or does not violate the
property at that point (float64 network, and the float32 reference, for the library path;
onnxruntime for VNN-LIB) is WRONG. float64 margins within evaluation noise of 0 (``TAU64``) are
neither violations nor non-violations.
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

FLAVOURS = ("plain", "large", "saturate", "cancel", "mixed")
FLAVOUR_P = (0.25, 0.2, 0.2, 0.2, 0.15)
ACTS = ("relu", "sigmoid", "tanh")
SQUASHING = ("sigmoid", "tanh")

U64 = 2.0 ** -53
U32 = 2.0 ** -24


# ===================================================================== instances
@dataclass
class Instance:
    """A network (``layers``: ('affine', W, b) | ('relu',) | ('sigmoid',) | ('tanh',)), a box and
    an unsafe region ``disjuncts`` [(C, d)] (unsafe iff some disjunct has all rows ``C y - d <= 0``)."""

    name: str
    seed: int
    flavour: str
    layers: list
    lower: np.ndarray
    upper: np.ndarray
    disjuncts: list
    offset: float = 0.0              # intended smallest margin (>0 barely safe, <=0 barely unsafe)
    meta: dict = field(default_factory=dict)
    witness: Optional[np.ndarray] = None   # a known violating input (hand-made instances)

    @property
    def n_in(self) -> int:
        return int(self.lower.shape[0])

    @property
    def n_out(self) -> int:
        return int(self.disjuncts[0][0].shape[1])

    def layers32(self) -> list:
        """The same network with float32-rounded weights (what an exported float32 ONNX holds)."""
        return [(L[0], L[1].astype(np.float32).astype(np.float64), L[2].astype(np.float32).astype(np.float64))
                if L[0] == "affine" else L for L in self.layers]

    def describe(self) -> str:
        arch = "-".join([str(self.n_in)] + [f"{L[1].shape[0]}" if L[0] == "affine" else L[0][0].upper()
                                               for L in self.layers])
        return f"{self.name} [{self.flavour}] {arch} disjuncts={len(self.disjuncts)} offset={self.offset:.3g}"


def sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def forward64(layers, X, collect=False):
    """float64 forward pass of a batch ``X`` (B, n) -> (B, n_out); with ``collect`` also the list of
    pre-activations of the sigmoid/tanh layers."""
    v = np.atleast_2d(np.asarray(X, dtype=np.float64))
    pre = []
    for L in layers:
        if L[0] == "affine":
            v = v @ L[1].T + L[2]
        elif L[0] == "relu":
            v = np.maximum(v, 0.0)
        elif L[0] == "sigmoid":
            pre.append(v)
            v = sigmoid(v)
        elif L[0] == "tanh":
            pre.append(v)
            v = np.tanh(v)
        else:  # pragma: no cover
            raise ValueError(L[0])
    return (v, pre) if collect else v


def margins(disjuncts, Y) -> np.ndarray:
    """Margin of each output row of ``Y`` (B, n_out): min_j max_k (C_j y - d_j)_k; <= 0 is unsafe."""
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    return np.min(np.stack([np.max(Y @ C.T - d, axis=1) for C, d in disjuncts], axis=1), axis=1)


#: float64 evaluation noise: two correct float64 forward passes (different summation orders) may
#: differ by ~1e-16 of the magnitudes summed; a float64 margin counts as a violation only below
#: ``-TAU64 * scale`` and a counterexample's float64 margin is accepted up to ``+TAU64 * scale``
#: (scale: 1 + max over rows of |C| |y| + |d|). float32 margins come from the very onnxruntime
#: graph the tools run and are judged exactly.
TAU64 = 1e-11


def noise64(disjuncts, Y) -> np.ndarray:
    """Per-point float64 evaluation-noise allowance of :func:`margins` (see ``TAU64``)."""
    Y = np.abs(np.atleast_2d(np.asarray(Y, dtype=np.float64)))
    sc = np.max(np.stack([np.max(Y @ np.abs(C).T + np.abs(d), axis=1) for C, d in disjuncts], axis=1), axis=1)
    return TAU64 * (1.0 + sc)


def _rand_layer(rng, n_out, n_in, gain):
    W = rng.normal(0.0, gain / math.sqrt(n_in), size=(n_out, n_in))
    b = rng.normal(0.0, 0.5, size=n_out)
    return W, b


def _sample_box(rng, lo, hi, n):
    return lo + (hi - lo) * rng.random((n, lo.shape[0]))


def _random_network(rng, flavour: str, n_in: int):
    """plain / large / cancel / mixed networks: (layers, lower, upper, meta)."""
    depth = int(rng.integers(1, 4))
    widths = [int(w) for w in rng.integers(2, 13, size=depth)]
    acts = [str(a) for a in rng.choice(ACTS, size=depth)]
    n_out = int(rng.integers(1, 4))
    big = flavour in ("large", "mixed")
    cancel = flavour in ("cancel", "mixed")
    if big and not any(a in SQUASHING for a in acts):
        acts[int(rng.integers(depth))] = str(rng.choice(SQUASHING))
    if cancel:
        widths[0] = max(widths[0], 4)
    centre = rng.normal(0.0, 1.5, size=n_in)
    width = np.exp(rng.uniform(np.log(0.05), np.log(6.0), size=n_in))
    if big and rng.random() < 0.4:
        width = width * 20.0               # wide boxes, like issue 10's [-100, 0]
    lo, hi = centre - width / 2, centre + width / 2

    layers = []
    n = n_in
    gain = float(rng.uniform(1.0, 3.0))
    pairs = []
    for i, (w, a) in enumerate(zip(widths, acts)):
        W, b = _rand_layer(rng, w, n, gain)
        if cancel and i == 0:
            k = int(rng.integers(1, w // 2 + 1))
            for p in range(k):
                delta = float(10 ** rng.uniform(-8, -5)) * (1 if rng.random() < 0.5 else -1)
                W[2 * p + 1] = W[2 * p] * (1 + delta)
                b[2 * p + 1] = b[2 * p] * (1 + delta * rng.uniform(0, 1)) if rng.random() < 0.5 else b[2 * p]
                pairs.append((2 * p, 2 * p + 1, delta))
            if rng.random() < 0.7:
                a = acts[i] = "relu"
        layers.append(("affine", W, b))
        layers.append((a,))
        n = w
    Wout, bout = _rand_layer(rng, n_out, n, gain)
    layers.append(("affine", Wout, bout))

    samples = np.vstack([_sample_box(rng, lo, hi, 4000), _corners(lo, hi)])
    partner = {ib: ia for ia, ib, _ in pairs}
    if big:
        # rescale the affine layer in front of every squashing activation so that its
        # pre-activations reach T (300..1500) in magnitude, rows at very different scales
        # (the two rows of a cancelling pair get the same factor)
        for li, L in enumerate(layers):
            if L[0] not in SQUASHING:
                continue
            _, pre_all = _values(layers, samples)
            P = pre_all[li - 1]
            W, b = layers[li - 1][1].copy(), layers[li - 1][2].copy()
            T = float(rng.uniform(300.0, 1500.0))
            factor = {}
            for r in range(W.shape[0]):
                m = float(np.max(np.abs(P[:, r]))) + 1e-12
                target = T * (10 ** rng.uniform(-3.0, 0.0) if rng.random() < 0.5 else 1.0)
                factor[r] = target / m
                if li == 1 and r in partner:
                    factor[r] = factor[partner[r]]
                W[r] *= factor[r]
                b[r] *= factor[r]
            layers[li - 1] = ("affine", W, b)
        # and the next layer gives widely different weights to its inputs (like 1, -4000, 60)
        for li, L in enumerate(layers):
            if L[0] in SQUASHING and li + 1 < len(layers):
                W = layers[li + 1][1].copy()
                W *= 10 ** rng.uniform(-1.0, 3.0, size=W.shape)
                layers[li + 1] = ("affine", W, layers[li + 1][2])
    if cancel:
        # amplify every pair's difference in the next affine layer: A*(h_a - h_b) of order 1
        _, pre_all = _values(layers, samples)
        first_pre = pre_all[0]
        Wn = layers[2][1].copy()
        for (ia, ib, delta) in pairs:
            mag = float(np.max(np.abs(first_pre[:, ia]))) + 1e-12
            A = float(rng.uniform(0.3, 3.0)) / (abs(delta) * mag)
            rows = rng.choice(Wn.shape[0], size=int(rng.integers(1, Wn.shape[0] + 1)), replace=False)
            for r in rows:
                s = A * (1 if rng.random() < 0.5 else -1) * float(rng.uniform(0.5, 1.5))
                Wn[r, ia] = s
                Wn[r, ib] = -s * (1 + float(rng.normal(0, 1e-9)))
        layers[2] = ("affine", Wn, layers[2][2])
    return layers, lo, hi, {"depth": depth, "widths": widths, "acts": acts, "pairs": len(pairs)}


def _saturating_network(rng, n_in: int):
    """One sigmoid/tanh layer (issue 10, case 1): one or two neurons whose pre-activation interval
    over the box runs from near 0 to beyond ±500 (550..1500), the others in their near-linear range,
    output weights of very different scales (like 1, -4000, 60)."""
    width = int(rng.integers(2, 7))
    act = str(rng.choice(SQUASHING))
    n_out = int(rng.integers(1, 3))
    centre = rng.normal(0.0, 1.5, size=n_in)
    bw = np.exp(rng.uniform(np.log(0.1), np.log(200.0), size=n_in))
    lo, hi = centre - bw / 2, centre + bw / 2
    n_huge = int(rng.integers(1, min(2, width - 1) + 1))
    W = np.empty((width, n_in))
    b = np.empty(width)
    for r in range(width):
        w = rng.normal(size=n_in)
        # range of w.x over the box
        a0 = float(np.sum(np.where(w > 0, w * lo, w * hi)))
        a1 = float(np.sum(np.where(w > 0, w * hi, w * lo)))
        if r < n_huge:
            pl, pu = -float(10 ** rng.uniform(np.log10(550.0), 4.0)), float(rng.uniform(-3.0, 6.0))
            if rng.random() < 0.5:
                pl, pu = -pu, -pl                       # the mirrored (upper) side
        else:
            c, s_ = float(rng.uniform(-4.0, 4.0)), float(10 ** rng.uniform(-1.3, 0.8))
            pl, pu = c - s_ / 2, c + s_ / 2
        alpha = (pu - pl) / max(a1 - a0, 1e-12)
        W[r] = alpha * w
        b[r] = pl - alpha * a0
    Wout = rng.normal(size=(n_out, width)) * 10 ** rng.uniform(0.0, 3.6, size=(n_out, width))
    Wout[:, :n_huge] = rng.uniform(0.5, 3.0, size=(n_out, n_huge)) * rng.choice([-1.0, 1.0], size=(n_out, n_huge))
    bout = rng.normal(0.0, 1.0, size=n_out)
    layers = [("affine", W, b), (act,), ("affine", Wout, bout)]
    return layers, lo, hi, {"depth": 1, "widths": [width], "acts": [act], "pairs": 0, "huge": n_huge}


def flavour_of(seed: int) -> str:
    """The flavour :func:`make_instance` draws for ``seed`` (cheap: its first random draw)."""
    return str(np.random.default_rng([seed, 20240610]).choice(FLAVOURS, p=FLAVOUR_P))


def make_instance(seed: int, flavour: Optional[str] = None) -> Instance:
    """The seeded random instance number ``seed`` (see the module docstring)."""
    rng = np.random.default_rng([seed, 20240610])
    if flavour is None:
        flavour = str(rng.choice(FLAVOURS, p=FLAVOUR_P))
    n_in = int(rng.integers(1, 4))
    if flavour == "saturate":
        layers, lo, hi, meta = _saturating_network(rng, n_in)
    else:
        layers, lo, hi, meta = _random_network(rng, flavour, n_in)
    n_out = layers[-1][1].shape[0]
    samples = np.vstack([_sample_box(rng, lo, hi, 4000), _corners(lo, hi)])

    # the unsafe region: 1-2 disjuncts of 1-2 rows, thresholds set by sampling
    n_disj = int(rng.integers(1, 3))
    Y = forward64(layers, samples)
    disjuncts = []
    for _ in range(n_disj):
        k = int(rng.integers(1, 3)) if n_out > 1 else 1
        C = rng.normal(0.0, 1.0, size=(k, n_out))
        vals = Y @ C.T
        q = rng.uniform(0.2, 0.8, size=k)
        d0 = np.array([np.quantile(vals[:, r], q[r]) for r in range(k)])
        disjuncts.append((C, d0))
    inst = Instance(f"s{seed}", seed, flavour, layers, lo, hi, disjuncts)
    # smallest margin with the provisional thresholds, found by a first (cheaper) search
    pts = _search_points(inst, rng, dense=False)
    m = margins(disjuncts, forward64(layers, pts))
    i0 = int(np.argmin(m))
    xbest, mstar = _refine64(inst, pts[np.argsort(m)[:4]])
    mstar = min(mstar, float(m[i0]))
    spread = float(np.max(m) - np.min(m)) or 1.0
    u = rng.random()
    if u < 0.08:
        offset = 0.0
    elif u < 0.75:
        offset = float(10 ** rng.uniform(-7, -2)) * spread * (1 if rng.random() < 0.5 else -1)
    else:
        offset = float(10 ** rng.uniform(-2, -0.5)) * spread * (1 if rng.random() < 0.5 else -1)
    # margin_{d0 + t} = margin_{d0} - t: choose t so that the smallest margin is `offset`
    t = mstar - offset
    inst.disjuncts = [(C, d0 + t) for C, d0 in disjuncts]
    inst.offset = offset
    inst.meta = meta
    return inst


def _values(layers, X):
    """(outputs, {index of an affine layer followed by an activation: its values (B, width)})."""
    v = np.atleast_2d(np.asarray(X, dtype=np.float64))
    pre = {}
    for i, L in enumerate(layers):
        if L[0] == "affine":
            v = v @ L[1].T + L[2]
        else:
            pre[i - 1] = v
            v = {"relu": lambda a: np.maximum(a, 0.0), "sigmoid": sigmoid, "tanh": np.tanh}[L[0]](v)
    return v, pre


def _corners(lo, hi):
    n = lo.shape[0]
    return np.array([[hi[j] if (c >> j) & 1 else lo[j] for j in range(n)] for c in range(2 ** n)])


# ===================================================================== sampling ground truth
def _grid(lo, hi, dense: bool):
    n = lo.shape[0]
    per = {1: 4001, 2: 201, 3: 45}[n] if dense else {1: 801, 2: 61, 3: 19}[n]
    axes = [np.linspace(lo[j], hi[j], per) for j in range(n)]
    return np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)


def _search_points(inst: Instance, rng, dense: bool = True):
    lo, hi = inst.lower, inst.upper
    return np.vstack([_grid(lo, hi, dense), _sample_box(rng, lo, hi, 20000 if dense else 3000), _corners(lo, hi)])


def _refine64(inst: Instance, starts, maxiter: int = 150):
    """L-BFGS-B on the float64 margin from each start; (best x, best margin)."""
    from scipy.optimize import minimize

    lo, hi = inst.lower, inst.upper
    scale = np.where(hi > lo, hi - lo, 1.0)

    def f(u):
        x = lo + u * scale
        return float(margins(inst.disjuncts, forward64(inst.layers, x[None]))[0])

    best_x, best_m = None, math.inf
    for s in np.atleast_2d(starts):
        u0 = np.clip((s - lo) / scale, 0, 1)
        try:
            r = minimize(f, u0, method="L-BFGS-B", bounds=[(0.0, 1.0)] * lo.shape[0],
                         options={"maxiter": maxiter, "eps": 1e-9})
            cand = [(r.x, r.fun), (u0, f(u0))]
        except (ValueError, FloatingPointError):   # pragma: no cover - nonsmooth margins may upset it
            cand = [(u0, f(u0))]
        for u, m in cand:
            if m < best_m:
                best_m, best_x = float(m), lo + np.clip(u, 0, 1) * scale
    return best_x, best_m


def _clouds(rng, centres, lo, hi, per: int = 200):
    out = [np.atleast_2d(centres)]
    w = hi - lo
    for c in np.atleast_2d(centres):
        for s in (1e-2, 1e-4, 1e-6, 1e-8):
            out.append(np.clip(c + s * w * rng.normal(size=(per // 4, lo.shape[0])), lo, hi))
    return np.vstack(out)


# --------------------------------------------------------------------- float32 model (onnxruntime)
def onnx_model(layers, n_in: int, batch: Optional[int] = 1):
    """A float32 ONNX graph (Gemm/Relu/Sigmoid/Tanh) of ``layers``; input ``[batch, n_in]``
    (``batch=None``: dynamic batch). Written here, not by cegarnn."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    cur = "X"
    n_out = None
    for i, L in enumerate(layers):
        out = "Y" if i == len(layers) - 1 else f"h{i}"
        if L[0] == "affine":
            inits.append(numpy_helper.from_array(np.asarray(L[1], dtype=np.float32), f"W{i}"))
            inits.append(numpy_helper.from_array(np.asarray(L[2], dtype=np.float32), f"B{i}"))
            nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out], transB=1))
            n_out = L[1].shape[0]
        else:
            nodes.append(helper.make_node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[L[0]], [cur], [out]))
        cur = out
    dim0 = batch if batch else "N"
    graph = helper.make_graph(nodes, "soundness",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [dim0, n_in])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [dim0, n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="soundness_lib")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _session(model):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


class Float32Model:
    """onnxruntime on the float32 ONNX graph: ``batched(X)`` (dynamic batch, fast) and ``single(x)``
    (the fixed ``[1, n]`` graph written for VNN-LIB, one row per run — what reference models and
    VNN-COMP's checker do). Both take float64 inputs, cast them to float32, return float64."""

    def __init__(self, inst: Instance):
        self.n_in = inst.n_in
        self.model1 = onnx_model(inst.layers, inst.n_in, batch=1)
        self._s1 = _session(self.model1)
        self._sN = _session(onnx_model(inst.layers, inst.n_in, batch=None))

    def batched(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64)).astype(np.float32)
        out = [self._sN.run(None, {"X": X[i:i + 65536]})[0] for i in range(0, X.shape[0], 65536)]
        return np.vstack(out).astype(np.float64)

    def single(self, X) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64)).astype(np.float32)
        return np.vstack([self._s1.run(None, {"X": X[i:i + 1]})[0] for i in range(X.shape[0])]).astype(np.float64)

    def save(self, path):
        Path(path).write_bytes(self.model1.SerializeToString())


# ===================================================================== interval proofs
def _interval_margin_lower(inst: Instance, lo, hi, f32: bool) -> np.ndarray:
    """Lower bounds (B,) on the margin over boxes (B, n): float64 network, or (``f32``) the float32
    model (float32 weights; input rounding, float32 sums and activation error covered by padding)."""
    layers = inst.layers32() if f32 else inst.layers
    if f32:
        lo = lo - np.abs(lo) * 2.0 * U32 - 1e-44
        hi = hi + np.abs(hi) * 2.0 * U32 + 1e-44
    u = U32 if f32 else U64
    l, h = lo, hi
    for L in layers:
        if L[0] == "affine":
            W, b = L[1], L[2]
            Wa = np.abs(W)
            c, r = (l + h) / 2, (h - l) / 2
            mid = c @ W.T + b
            rad = r @ Wa.T
            mag = np.maximum(np.abs(l), np.abs(h)) @ Wa.T + np.abs(b)
            # evaluation error of a dot product of n terms + bias (any order, FMA or not): gamma_{n+1}
            # of the magnitude; doubled, plus our own float64 rounding of mid/rad
            n = W.shape[1]
            pad = 2.0 * (n + 2) * u * mag * 1.01 + 4.0 * (n + 2) * U64 * (mag + np.abs(mid) + rad) + 1e-300
            l, h = mid - rad - pad, mid + rad + pad
        elif L[0] == "relu":
            l, h = np.maximum(l, 0.0), np.maximum(h, 0.0)
        else:
            fn = sigmoid if L[0] == "sigmoid" else np.tanh
            fl, fh = fn(l), fn(h)
            # float32 libraries approximate sigmoid/tanh (onnxruntime clamps the input, absolute
            # errors ~1e-8): be generous
            pa = (2e-6 + 1e-5 * np.abs(fl), 2e-6 + 1e-5 * np.abs(fh)) if f32 else \
                 (1e-300 + 8 * U64 * np.abs(fl), 1e-300 + 8 * U64 * np.abs(fh))
            lim = (0.0, 1.0) if L[0] == "sigmoid" else (-1.0, 1.0)
            l = np.maximum(fl - pa[0], lim[0])
            h = np.minimum(fh + pa[1], lim[1])
    out = []
    for C, d in inst.disjuncts:
        c, r = (l + h) / 2, (h - l) / 2
        mid = c @ C.T - d
        rad = r @ np.abs(C).T
        mag = np.maximum(np.abs(l), np.abs(h)) @ np.abs(C).T + np.abs(d)
        lb = mid - rad - 8.0 * (C.shape[1] + 2) * U64 * (mag + np.abs(mid)) - 1e-300
        out.append(np.max(lb, axis=1))
    return np.min(np.stack(out, axis=1), axis=1)


def interval_prove(inst: Instance, f32: bool, budget: int = 50_000, slack: float = 0.0,
                   deadline: Optional[float] = None) -> tuple[bool, int]:
    """Bisect the box until every sub-box has margin lower bound > ``slack`` (True) or the budget of
    bounded boxes (or the wall-clock ``deadline``) runs out (False). Returns (proved, boxes used)."""
    lo0, hi0 = inst.lower, inst.upper
    width0 = np.where(hi0 > lo0, hi0 - lo0, 1.0)
    qlo, qhi = lo0[None].copy(), hi0[None].copy()
    used = 0
    while qlo.shape[0]:
        if used >= budget or (deadline is not None and time.perf_counter() > deadline):
            return False, used
        take = min(qlo.shape[0], 8192, budget - used)
        blo, bhi = qlo[:take], qhi[:take]
        qlo, qhi = qlo[take:], qhi[take:]
        used += take
        lb = _interval_margin_lower(inst, blo, bhi, f32)
        open_ = ~(lb > slack)
        if not open_.any():
            continue
        blo, bhi = blo[open_], bhi[open_]
        rel = (bhi - blo) / width0
        if np.any(np.max(rel, axis=1) < 1e-13):
            return False, used
        dim = np.argmax(rel, axis=1)
        idx = np.arange(blo.shape[0])
        midv = (blo[idx, dim] + bhi[idx, dim]) / 2
        a_hi = bhi.copy()
        a_hi[idx, dim] = midv
        b_lo = blo.copy()
        b_lo[idx, dim] = midv
        qlo = np.vstack([qlo, blo, b_lo])
        qhi = np.vstack([qhi, a_hi, bhi])
    return True, used


def interval_preactivation_extent(inst: Instance) -> float:
    """Largest |bound| of a sigmoid/tanh pre-activation over the whole box by naive intervals (what
    a bound propagation sees before splitting; auto_LiRPA 0.3 clips these at ±500)."""
    l, h = inst.lower[None], inst.upper[None]
    ext = 0.0
    for L in inst.layers:
        if L[0] == "affine":
            c, r = (l + h) / 2, (h - l) / 2
            mid, rad = c @ L[1].T + L[2], r @ np.abs(L[1]).T
            l, h = mid - rad, mid + rad
        elif L[0] == "relu":
            l, h = np.maximum(l, 0), np.maximum(h, 0)
        else:
            ext = max(ext, float(np.max(np.abs(l))), float(np.max(np.abs(h))))
            fn = sigmoid if L[0] == "sigmoid" else np.tanh
            l, h = fn(l), fn(h)
    return ext


# ===================================================================== ground truth
@dataclass
class Truth:
    """What sampling found and interval bisection proved, for the float64 network (``64``), the
    float32 ONNX model under onnxruntime (``32``, violations re-checked with batch size 1)."""

    min_margin64: float
    min_margin32: float
    argmin64: list
    argmin32: list
    viol64: bool                 # a sampled point violates on the float64 network
    viol32: bool                 # ... on onnxruntime (batch-1 confirmed)
    joint: bool                  # one point violates on both
    proved64: bool               # interval bisection proves the float64 network safe
    proved32: bool               # ... the float32 model safe
    boxes64: int = 0
    boxes32: int = 0
    max_pre_sampled: float = 0.0      # largest |sigmoid/tanh pre-activation| among the samples
    max_pre_interval: float = 0.0     # largest |pre-activation bound| by intervals on the whole box
    f32_gap: float = 0.0              # max |y64 - y32| over the samples (float32 sensitivity)
    seconds: float = 0.0

    @property
    def library(self) -> str:
        """Label of the library path (float64 IR + float32 reference)."""
        if self.joint:
            return "unsafe"
        if self.viol64:
            return "unsafe-f64-only"
        if self.viol32:
            return "unsafe-f32-only"
        return "safe" if (self.proved64 and self.proved32) else "unknown"

    @property
    def vnnlib(self) -> str:
        """Label of the VNN-LIB path (the float32 ONNX model, executed by onnxruntime)."""
        if self.viol32:
            return "unsafe"
        return "safe" if self.proved32 else "unknown"


def ground_truth(inst: Instance, f32model: Optional[Float32Model] = None, dense: bool = True,
                 budget: int = 50_000, prove_seconds: float = 20.0) -> Truth:
    t0 = time.perf_counter()
    rng = np.random.default_rng([inst.seed, 777])
    f32model = f32model or Float32Model(inst)
    lo, hi = inst.lower, inst.upper
    P = _search_points(inst, rng, dense=dense)
    Y64, pre = forward64(inst.layers, P, collect=True)
    Y32 = f32model.batched(P)
    m64 = margins(inst.disjuncts, Y64)
    m32 = margins(inst.disjuncts, Y32)
    # local refinement on float64 from the best points of both models
    order64, order32 = np.argsort(m64), np.argsort(m32)
    starts = np.vstack([P[order64[:6 if dense else 3]], P[order32[:3 if dense else 2]]])
    xr, _ = _refine64(inst, starts, maxiter=200 if dense else 60)
    centres = np.vstack([xr[None], P[order64[:3]], P[order32[:3]]])
    Q = _clouds(rng, centres, lo, hi, per=400 if dense else 100)
    P = np.vstack([P, Q])
    Y64 = np.vstack([Y64, forward64(inst.layers, Q)])
    Y32 = np.vstack([Y32, f32model.batched(Q)])
    m64 = margins(inst.disjuncts, Y64)
    v64 = m64 <= -noise64(inst.disjuncts, Y64)          # violations beyond float64 evaluation noise
    m32b = margins(inst.disjuncts, Y32)
    # confirm float32 violations with batch size 1 (the fixed-shape graph)
    viol32 = joint = False
    best32 = (math.inf, P[0])
    cand = np.argsort(m32b)[:8]
    cand_joint = np.argsort(np.maximum(m64, m32b))[:8]
    for idx in np.unique(np.concatenate([cand, cand_joint])):
        m1 = float(margins(inst.disjuncts, f32model.single(P[idx]))[0])
        if m1 < best32[0]:
            best32 = (m1, P[idx])
        if m1 <= 0:
            viol32 = True
            if v64[idx]:
                joint = True
    i64 = int(np.argmin(m64))
    viol64 = bool(v64.any())
    if viol64:
        i64 = int(np.flatnonzero(v64)[np.argmin(m64[v64])])
    pre_max = max([float(np.max(np.abs(p))) for p in pre], default=0.0)
    gap = float(np.max(np.abs(Y64 - Y32))) if Y64.size else 0.0
    deadline = time.perf_counter() + prove_seconds
    proved64, b64 = (False, 0) if viol64 else interval_prove(inst, False, budget, deadline=deadline)
    proved32, b32 = (False, 0) if viol32 else interval_prove(inst, True, budget, deadline=deadline)
    return Truth(float(m64[i64]), float(best32[0]), P[i64].tolist(), np.asarray(best32[1]).tolist(),
                 viol64, viol32, joint, proved64, proved32, b64, b32, pre_max,
                 interval_preactivation_extent(inst), gap, time.perf_counter() - t0)


# ===================================================================== hand-made instances (issue 10)
def issue10_clipping() -> Instance:
    """auto_LiRPA's clipping of sigmoid pre-activation bounds at ±500 (issue 10, case 1).

    x in [-100, 0]^20; one affine layer with per-input weights 100/n, 0.001/n, 0.1/n (n = 20) and
    biases 0, 0, 6; sigmoid; y = s1 - 4000 s2 + 60 s3. At x = -100·1: y = -1899.004 >= -1900, so
    the unsafe region y >= -1900 (C = [-1], d = [1900]) is reached: the property is FALSE.
    """
    n = 20
    W1 = np.array([[100.0 / n] * n, [0.001 / n] * n, [0.1 / n] * n])
    b1 = np.array([0.0, 0.0, 6.0])
    layers = [("affine", W1, b1), ("sigmoid",), ("affine", np.array([[1.0, -4000.0, 60.0]]), np.zeros(1))]
    return Instance("issue10-clipping", -1, "issue10", layers, np.full(n, -100.0), np.zeros(n),
                    [(np.array([[-1.0]]), np.array([1900.0]))], offset=-0.996, witness=np.full(n, -100.0))


def issue10_float32() -> Instance:
    """float32 rounding / widening (issue 10, case 2).

    x in [0, 1]^10; rows 100.000002·Σx + 1 and 100·Σx + 1; ReLU; [1, -1]; ReLU; 1000 z - 0.019;
    ReLU; ×1000. In float64 the output at x = 1 is ~1 (0 in float32): the unsafe region y >= 0.5
    (C = [-1], d = [-0.5]) is reached by the float64 network: the property is FALSE for it.
    """
    n = 10
    layers = [("affine", np.array([[100.000002] * n, [100.0] * n]), np.array([1.0, 1.0])), ("relu",),
              ("affine", np.array([[1.0, -1.0]]), np.zeros(1)), ("relu",),
              ("affine", np.array([[1000.0]]), np.array([-0.019])), ("relu",),
              ("affine", np.array([[1000.0]]), np.zeros(1))]
    return Instance("issue10-float32", -2, "issue10", layers, np.zeros(n), np.ones(n),
                    [(np.array([[-1.0]]), np.array([-0.5]))], offset=-0.5, witness=np.ones(n))


# ===================================================================== running cegarnn
def cegarnn_network(layers, n_in: int):
    from cegarnn.network import Affine, Network, ReLU, Sigmoid, Tanh
    out = []
    for L in layers:
        if L[0] == "affine":
            out.append(Affine(L[1], L[2]))
        else:
            out.append({"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}[L[0]]())
    return Network(tuple(out), (n_in,))


def cegarnn_unsafe(inst: Instance):
    from cegarnn.specs.property import UnsafeRegion
    return UnsafeRegion(tuple((C, d) for C, d in inst.disjuncts), inst.n_out)


def methods_available() -> list[str]:
    try:
        from cegarnn.verifier.methods import METHODS
    except ImportError:          # older checkouts (before the verifier was split into modules)
        from cegarnn.verifier.cegar import METHODS
    from cegarnn.verifier import marabou
    return [m for m in METHODS if m != "marabou" or marabou.available()]


def method_time_limit(method: str, time_limit: float) -> float:
    # Marabou's timeout is whole seconds and it needs >= 1 s left after the attack
    return max(time_limit, 2.0) if method == "marabou" else time_limit


@dataclass
class Verdict:
    method: str
    path: str                     # 'library' | 'vnnlib'
    verdict: str                  # verified | falsified | unknown | error (library); unsat | sat | ... (vnnlib)
    reason: str = ""
    seconds: float = 0.0
    cex: Optional[np.ndarray] = None      # free input of the counterexample
    cex_y: Optional[np.ndarray] = None    # outputs reported with it (vnnlib)
    wrong: bool = False
    wrong_kind: str = ""
    cex_margin64: float = float("nan")
    cex_margin32: float = float("nan")


def run_library(inst: Instance, method: str, time_limit: float, f32model: Optional[Float32Model] = None,
                reference: bool = True, **options) -> Verdict:
    """``cegarnn.verify`` on the float64 network (the library path); with ``reference`` the float32
    ONNX model under onnxruntime is the problem's original model (every counterexample must be
    confirmed on it, and a proof covers it)."""
    import cegarnn
    from cegarnn.specs.problem import box_problem

    ref = None
    if reference:
        f32model = f32model or Float32Model(inst)
        ref = f32model.single
    net = cegarnn_network(inst.layers, inst.n_in)
    problem = box_problem(net, inst.lower, inst.upper, cegarnn_unsafe(inst), reference=ref, name=inst.name)
    t0 = time.perf_counter()
    try:
        res = cegarnn.verify(problem, method=method, time_limit=method_time_limit(method, time_limit), **options)
    except Exception as e:  # noqa: BLE001 - an error is a verdict of its own, never a wrong answer
        return Verdict(method, "library", "error", f"{type(e).__name__}: {e}", time.perf_counter() - t0)
    v = Verdict(method, "library", res.status, res.reason, time.perf_counter() - t0)
    if res.counterexample is not None:
        v.cex = np.asarray(res.counterexample.free_input, dtype=np.float64)
    return v


def vnnlib_text(inst: Instance) -> str:
    """The property in VNN-LIB (exact float64 decimals; the unsafe region as asserted)."""
    lines = [f"; {inst.describe()}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(inst.n_in)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(inst.n_out)]
    for i in range(inst.n_in):
        lines.append(f"(assert (>= X_{i} {float(inst.lower[i])!r}))")
        lines.append(f"(assert (<= X_{i} {float(inst.upper[i])!r}))")

    def row(c, dv):
        terms = " ".join(f"(* {float(ci)!r} Y_{k})" for k, ci in enumerate(c))
        return f"(<= (+ {terms}) {float(dv)!r})" if len(c) > 1 else f"(<= {terms} {float(dv)!r})"

    conj = []
    for C, d in inst.disjuncts:
        rows = [row(C[r], d[r]) for r in range(C.shape[0])]
        conj.append(rows[0] if len(rows) == 1 else "(and " + " ".join(rows) + ")")
    lines.append(f"(assert {conj[0]})" if len(conj) == 1 else "(assert (or " + " ".join(conj) + "))")
    return "\n".join(lines) + "\n"


_ENTRY = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


def parse_result_file(text: str):
    """(result, x, y) of a VNN-COMP result file (own parser)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    head = lines[0].lower() if lines else "missing"
    reason = next((ln[1:].strip() for ln in lines[1:] if ln.startswith(";")), "")
    if head != "sat":
        return head, None, None, reason
    xs, ys = {}, {}
    for m in _ENTRY.finditer(text):
        (xs if m.group(1) == "X" else ys)[int(m.group(2))] = float(m.group(3))
    x = np.array([xs[i] for i in sorted(xs)]) if xs else None
    y = np.array([ys[i] for i in sorted(ys)]) if ys else None
    return head, x, y, reason


def run_vnnlib(inst: Instance, method: str, time_limit: float, workdir=None,
               f32model: Optional[Float32Model] = None) -> Verdict:
    """Write the float32 ONNX model and the VNN-LIB property, run ``cegarnn vnnlib`` in-process
    (``cegarnn.cli.commands.main``), read the result file."""
    from cegarnn.cli.commands import main as cli_main

    f32model = f32model or Float32Model(inst)
    with contextlib.ExitStack() as stack:
        d = Path(workdir) if workdir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        net, prop, out = d / f"{inst.name}.onnx", d / f"{inst.name}.vnnlib", d / f"{inst.name}_{method}.txt"
        f32model.save(net)
        prop.write_text(vnnlib_text(inst))
        if out.exists():
            out.unlink()
        t0 = time.perf_counter()
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):   # result text, tracebacks
                code = cli_main(["vnnlib", str(net), str(prop), "--timeout", str(method_time_limit(method, time_limit)),
                                 "--out", str(out), "--method", method])
        except SystemExit as e:   # argparse
            code = e.code
        except Exception as e:  # noqa: BLE001
            return Verdict(method, "vnnlib", "error", f"{type(e).__name__}: {e}", time.perf_counter() - t0)
        secs = time.perf_counter() - t0
        if not out.exists():
            return Verdict(method, "vnnlib", "error", f"no result file (exit code {code})", secs)
        head, x, y, reason = parse_result_file(out.read_text())
    return Verdict(method, "vnnlib", head, reason, secs, cex=x, cex_y=y)


# ===================================================================== judging
def judge_library(inst: Instance, truth: Optional[Truth], v: Verdict, f32model: Optional[Float32Model] = None,
                  reference: bool = True) -> Verdict:
    """Mark ``v`` wrong: ``verified`` with a sampled violation (float64 or, with the float32
    reference, float32); ``falsified`` whose counterexample is outside the box or not unsafe on the
    float64 network (or, with the reference, on onnxruntime)."""
    if v.verdict == "verified" and truth is not None:
        if truth.viol64:
            v.wrong, v.wrong_kind = True, "verified-but-f64-violation"
        elif reference and truth.viol32:
            v.wrong, v.wrong_kind = True, "verified-but-f32-violation"
    if v.verdict == "verified" and inst.witness is not None:
        yw = forward64(inst.layers, inst.witness[None])
        if margins(inst.disjuncts, yw)[0] <= -noise64(inst.disjuncts, yw)[0]:
            v.wrong, v.wrong_kind = True, "verified-but-witness-violates"
    if v.verdict == "falsified":
        x = v.cex
        if x is None or x.shape != inst.lower.shape or not np.all(np.isfinite(x)):
            v.wrong, v.wrong_kind = True, "falsified-without-counterexample"
            return v
        y64 = forward64(inst.layers, x[None])
        v.cex_margin64 = float(margins(inst.disjuncts, y64)[0])
        tol64 = float(noise64(inst.disjuncts, y64)[0])
        if reference:
            f32model = f32model or Float32Model(inst)
            v.cex_margin32 = float(margins(inst.disjuncts, f32model.single(x))[0])
        if np.any(x < inst.lower) or np.any(x > inst.upper):
            v.wrong, v.wrong_kind = True, "counterexample-outside-box"
        elif not v.cex_margin64 <= tol64:
            v.wrong, v.wrong_kind = True, "counterexample-not-unsafe-f64"
        elif reference and not v.cex_margin32 <= 0:
            v.wrong, v.wrong_kind = True, "counterexample-not-unsafe-f32-reference"
    return v


def judge_vnnlib(inst: Instance, truth: Optional[Truth], v: Verdict, f32model: Optional[Float32Model] = None) -> Verdict:
    """``unsat`` with an onnxruntime violation (sampled, batch-1 confirmed) is wrong; ``sat`` whose
    X is outside the box or not unsafe under onnxruntime is wrong."""
    f32model = f32model or Float32Model(inst)
    if v.verdict == "unsat":
        if truth is not None and truth.viol32:
            v.wrong, v.wrong_kind = True, "unsat-but-onnxruntime-violation"
        if inst.witness is not None and margins(inst.disjuncts, f32model.single(inst.witness))[0] <= 0:
            v.wrong, v.wrong_kind = True, "unsat-but-witness-violates-onnxruntime"
    if v.verdict == "sat":
        x = v.cex
        if x is None or x.shape != inst.lower.shape or not np.all(np.isfinite(x)):
            v.wrong, v.wrong_kind = True, "sat-without-counterexample"
            return v
        v.cex_margin64 = float(margins(inst.disjuncts, forward64(inst.layers, x[None]))[0])
        v.cex_margin32 = float(margins(inst.disjuncts, f32model.single(x))[0])
        if np.any(x < inst.lower) or np.any(x > inst.upper):
            v.wrong, v.wrong_kind = True, "counterexample-outside-box"
        elif not v.cex_margin32 <= 0:
            v.wrong, v.wrong_kind = True, "counterexample-not-unsafe-onnxruntime"
    return v


def harness_check(truth: Truth, verdicts: list) -> list[str]:
    """Contradictions that would mean the *harness* is wrong: a confirmed counterexample on a model
    our interval bisection proved safe."""
    out = []
    for v in verdicts:
        if v.verdict in ("falsified", "sat") and not v.wrong:
            if v.path == "library" and truth.proved64 and v.cex_margin64 <= -TAU64:
                out.append(f"{v.method}/{v.path}: counterexample on a float64 network proved safe")
            if truth.proved32 and v.cex_margin32 <= 0:
                out.append(f"{v.method}/{v.path}: counterexample on a float32 model proved safe")
    return out


# ===================================================================== one instance, end to end
ISSUE10 = {"issue10-clipping": issue10_clipping, "issue10-float32": issue10_float32}


def load_instance(key) -> Instance:
    """A random instance (an int seed, or its string) or a hand-made one ('issue10-clipping',
    'issue10-float32')."""
    if str(key) in ISSUE10:
        return ISSUE10[str(key)]()
    return make_instance(int(key))


def witness_truth(inst: Instance, f32: Float32Model) -> Truth:
    """Ground truth of a hand-made instance from its known violating input (no sampling)."""
    yw = forward64(inst.layers, inst.witness[None])
    m64 = float(margins(inst.disjuncts, yw)[0])
    v64 = m64 <= -float(noise64(inst.disjuncts, yw)[0])
    m32 = float(margins(inst.disjuncts, f32.single(inst.witness))[0])
    _, pre = forward64(inst.layers, inst.witness[None], collect=True)
    pre_max = max([float(np.max(np.abs(p))) for p in pre], default=0.0)
    w = inst.witness.tolist()
    return Truth(m64, m32, w, w, v64, m32 <= 0, v64 and m32 <= 0, False, False, 0, 0, pre_max,
                 interval_preactivation_extent(inst), abs(m64 - m32), 0.0)


def arch(inst: Instance) -> str:
    parts = [str(inst.n_in)]
    for L in inst.layers:
        parts.append(str(L[1].shape[0]) if L[0] == "affine" else L[0][0].upper())
    return "-".join(parts)


@dataclass
class Report:
    """Everything about one instance: its ground truth and every method's judged verdicts."""

    key: str
    name: str
    seed: int
    flavour: str
    description: str
    arch: str
    n_in: int
    n_disjuncts: int
    offset: float
    meta: dict
    truth: Truth
    reference: bool                  # library path ran with the float32 reference
    verdicts: list
    harness: list

    def label(self, path: str) -> str:
        if path == "vnnlib":
            return self.truth.vnnlib
        if not self.reference:
            return "unsafe" if self.truth.viol64 else ("safe" if self.truth.proved64 else "unknown")
        return self.truth.library

    @property
    def wrong(self) -> list:
        return [v for v in self.verdicts if v.wrong]


def check_instance(key, methods, paths=("library", "vnnlib"), time_limit: float = 1.0, dense: bool = True,
                   budget: int = 50_000, prove_seconds: float = 10.0, library_options: Optional[dict] = None,
                   workdir=None) -> Report:
    """Ground truth of instance ``key``, then every method on every path, judged.

    ``library_options``: verifier options of the library path (default ``attack=False``: the
    proof machinery must be sound on its own; the cheap attack would otherwise falsify most
    instances before any bound is computed). The ``vnnlib`` path runs the command as a user would.
    The library path of 'issue10-float32' has no float32 reference (the case is about the float64
    network; its float32 model is safe)."""
    inst = load_instance(key)
    f32 = Float32Model(inst)
    truth = witness_truth(inst, f32) if inst.witness is not None else \
        ground_truth(inst, f32, dense=dense, budget=budget, prove_seconds=prove_seconds)
    reference = str(key) != "issue10-float32"
    opts = {"attack": False} if library_options is None else dict(library_options)
    verdicts = []
    with contextlib.ExitStack() as stack:
        wd = workdir if workdir is not None else stack.enter_context(tempfile.TemporaryDirectory(prefix="soundness_"))
        for m in methods:
            if "library" in paths:
                v = run_library(inst, m, time_limit, f32, reference=reference, **opts)
                verdicts.append(judge_library(inst, truth, v, f32, reference=reference))
            if "vnnlib" in paths:
                v = run_vnnlib(inst, m, time_limit, workdir=wd, f32model=f32)
                verdicts.append(judge_vnnlib(inst, truth, v, f32))
    return Report(str(key), inst.name, inst.seed, inst.flavour, inst.describe(), arch(inst), inst.n_in,
                  len(inst.disjuncts), inst.offset, dict(inst.meta), truth, reference, verdicts,
                  harness_check(truth, verdicts))


def quiet_worker():
    """Process-pool initializer: no cegarnn warnings, one thread."""
    import logging
    import os
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    logging.getLogger("cegarnn").setLevel(logging.ERROR)
    logging.getLogger("cegarnn").propagate = False
