"""What a subproblem of the neuron branch and bound is, and how it is split (:mod:`.neuron_bab`).

A :class:`Sub` is an input box plus neuron splits (ReLU phases, sigmoid/tanh segments) in the
format of :class:`cegarnn.bounds.crown.Splits`, one subproblem at a time. Splitting choices are
scored from one backward pass per batch (:func:`backward_coefficients`): the coefficient
``lam_i`` of every activation output in a linearisation of the subproblem's weakest margin row,
taken through each activation with a slope from its bounds (ReLU: 1 / 0 when stable or fixed,
``u / (u - l)`` when unstable; sigmoid/tanh: the chord slope on ``[l, u]``).

* ReLU: ``score_j = max(-lam_j, 0) * (-l u / (u - l)) + 0.1 |lam_j| min(u, -l)``: the intercept
  of the upper relaxation is what a negative coefficient pays in the lower bound; the second
  term is the looseness of the lower relaxation line a positive coefficient pays.
* Sigmoid/tanh: ``score_j = |lam_j| * gap_j(v_j)``, ``gap`` the width of the neuron's relaxation
  (upper line minus lower line) at the candidate's pre-activation ``v_j`` clipped into the inner
  80 % of ``[l, u]``; the split point is that clipped ``v_j``.
* Input: ``score_d = width_d * |lam_0[d]|`` (the same linearisation carried to the input).

Progress (:class:`Progress`) compares a child's *own* bound (this bounds call's, not the one
inherited from an ancestor) with its parent's own bound computed the same way, so that splits
bounded by plain CROWN under an alpha-CROWN root are not all measured as zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..bounds.crown import Splits
from ..network.ir import Affine, Network, ReLU, Sigmoid, sigmoid

INNER = 0.1              # a segment split point stays this fraction of [l, u] away from its ends
MIN_SEGMENT = 1e-6       # segments narrower than this are not split further


@dataclass
class Sub:
    """One subproblem: the box ``lo..hi`` and its neuron splits (only layers that have one)."""

    lo: np.ndarray
    hi: np.ndarray
    relu: dict = field(default_factory=dict)      # ReLU layer -> int8 phases (n,) in {-1, 0, +1}
    seg_lo: dict = field(default_factory=dict)    # sigmoid/tanh layer -> (n,) lower segment ends (-inf: none)
    seg_hi: dict = field(default_factory=dict)    # ... upper segment ends (+inf: none)
    rows_lower: Optional[np.ndarray] = None       # sound lower bounds of the margin rows (from ancestors)
    depth: int = 0
    kind: str = "root"                            # the split that made it: root | input | neuron
    neuron_splits: int = 0                        # neuron splits on its path
    parent_lb: float = -np.inf                    # the parent's own weakest disjunct bound (progress)
    priority: float = -np.inf                     # queue order: the parent's best weakest bound
    alpha: Optional[dict] = None                  # the parent's alpha-CROWN parameters (one row)

    def child(self, kind: str, lb: float, rows_lower: np.ndarray) -> "Sub":
        return Sub(self.lo.copy(), self.hi.copy(), dict(self.relu), dict(self.seg_lo), dict(self.seg_hi),
                   rows_lower, self.depth + 1, kind, self.neuron_splits + (kind == "neuron"), lb, self.alpha)


def batch_splits(subs: list, sizes) -> Optional[Splits]:
    """The :class:`Splits` of a batch of subproblems (None if none has a neuron split)."""
    relu_layers = sorted(set().union(*(s.relu for s in subs)))
    seg_layers = sorted(set().union(*(s.seg_lo for s in subs)))
    if not relu_layers and not seg_layers:
        return None
    relu = {i: np.stack([s.relu.get(i, np.zeros(sizes[i], np.int8)) for s in subs]) for i in relu_layers}
    lo = {i: np.stack([s.seg_lo.get(i, np.full(sizes[i], -np.inf)) for s in subs]) for i in seg_layers}
    hi = {i: np.stack([s.seg_hi.get(i, np.full(sizes[i], np.inf)) for s in subs]) for i in seg_layers}
    return Splits(relu, lo, hi)


def phases(sub: Sub, i: int, n: int) -> np.ndarray:
    return sub.relu.get(i, np.zeros(n, np.int8))


def _activation(layer):
    return sigmoid if isinstance(layer, Sigmoid) else np.tanh


def _chord_slope(layer, l: np.ndarray, u: np.ndarray) -> np.ndarray:
    f = _activation(layer)
    w = u - l
    mid = f((l + u) / 2)
    deriv = mid * (1 - mid) if isinstance(layer, Sigmoid) else 1 - mid ** 2
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        chord = (f(u) - f(l)) / w
    return np.where(w > 1e-9, np.nan_to_num(chord), deriv)


def backward_coefficients(net: Network, lower: list, upper: list, cot: np.ndarray, split_phases: dict) -> dict:
    """``{i: lam_i (B, n_i)}``: coefficients of activation layer i's outputs (and ``0``: of the
    input) in the linearisation of ``cot . y`` (``cot`` (B, n_out)) described in the module docstring.
    ``split_phases``: {ReLU layer: (B, n) phases} of the batch."""
    lam = {}
    g = np.asarray(cot, dtype=np.float64)
    for i in range(len(net.layers) - 1, -1, -1):
        layer = net.layers[i]
        if isinstance(layer, Affine):
            g = np.asarray(layer.W.T @ g.T).T
            continue
        lam[i] = g
        l, u = np.clip(lower[i], -1e9, 1e9), np.clip(upper[i], -1e9, 1e9)
        if isinstance(layer, ReLU):
            with np.errstate(invalid="ignore", divide="ignore"):
                s = np.where(l >= 0, 1.0, np.where(u <= 0, 0.0, u / np.maximum(u - l, 1e-12)))
            ph = split_phases.get(i)
            if ph is not None:
                s = np.where(ph > 0, 1.0, np.where(ph < 0, 0.0, s))
        else:
            s = _chord_slope(layer, l, u)
        g = g * s
    lam[0] = g
    return lam


def relu_scores(l: np.ndarray, u: np.ndarray, lam: np.ndarray, ph: np.ndarray) -> np.ndarray:
    """Scores (n,) of one subproblem's ReLU layer; 0 where the neuron is stable or already split."""
    free = (l < 0) & (u > 0) & (ph == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        area = np.where(free, -l * u / np.maximum(u - l, 1e-12), 0.0)
    s = np.maximum(-lam, 0) * area + 0.1 * np.abs(lam) * np.where(free, np.minimum(u, -l), 0.0)
    return np.where(free, s + 1e-12, 0.0)      # any unstable neuron beats none


def segment_point(l: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The candidate's pre-activations clipped into the inner part of ``[l, u]``."""
    w = u - l
    return np.clip(v, l + INNER * w, u - INNER * w)


def relaxation_gap(layer, l: np.ndarray, u: np.ndarray, v: np.ndarray, relax=None) -> np.ndarray:
    """Width of the neuron relaxations at ``v``: from the CROWN lines ``relax = (kl, cl, ku, cu)``
    when given, else the chord's distance from the function (the looseness of a one-segment envelope)."""
    if relax is not None:
        kl, cl, ku, cu = relax
        return np.maximum((ku - kl) * v + (cu - cl), 0.0)
    f = _activation(layer)
    chord = f(l) + _chord_slope(layer, l, u) * (v - l)
    return np.abs(chord - f(v))


def sigmoid_scores(layer, l, u, lam, v, relax=None) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n,), split points (n,)) of one subproblem's sigmoid/tanh layer."""
    l, u = np.clip(l, -1e6, 1e6), np.clip(u, -1e6, 1e6)
    point = segment_point(l, u, v)
    ok = (u - l) > MIN_SEGMENT
    s = np.abs(lam) * relaxation_gap(layer, l, u, point, relax)
    return np.where(ok, s, 0.0), point


def lp_gap_scores(layer, l, u, lam, v, y) -> tuple[np.ndarray, np.ndarray]:
    """(scores (n,), split points (n,)) of a sigmoid/tanh layer at an LP candidate with
    pre-activations ``v`` and outputs ``y``: ``|lam| * |y - f(v)|`` (its abstraction error), split at
    ``v`` clipped into the inner part of ``[l, u]``."""
    l, u = np.clip(l, -1e6, 1e6), np.clip(u, -1e6, 1e6)
    v = np.asarray(v, dtype=np.float64)
    point = segment_point(l, u, v)
    ok = (u - l) > MIN_SEGMENT
    s = np.abs(lam) * np.abs(np.asarray(y, dtype=np.float64) - _activation(layer)(v))
    return np.where(ok, s, 0.0), point


def split_neuron(sub: Sub, layer_kind: str, i: int, j: int, n: int, point: float, lb: float, rows) -> list:
    """The two children of ``sub`` split at neuron ``j`` of layer ``i`` (``layer_kind`` 'relu':
    inactive / active; else the segment at ``point``)."""
    a, b = sub.child("neuron", lb, rows), sub.child("neuron", lb, rows)
    if layer_kind == "relu":
        for c, sign in ((a, -1), (b, 1)):
            ph = phases(sub, i, n).copy()
            ph[j] = sign
            c.relu[i] = ph
    else:
        for c, side in ((a, "hi"), (b, "lo")):
            lo = sub.seg_lo.get(i, np.full(n, -np.inf)).copy()
            hi = sub.seg_hi.get(i, np.full(n, np.inf)).copy()
            (hi if side == "hi" else lo)[j] = point
            c.seg_lo[i], c.seg_hi[i] = lo, hi
    return [a, b]


def split_input(sub: Sub, d: int, lb: float, rows) -> list:
    """The two halves of ``sub``'s box at the midpoint of input ``d`` (neuron splits kept)."""
    a, b = sub.child("input", lb, rows), sub.child("input", lb, rows)
    mid = (sub.lo[d] + sub.hi[d]) / 2
    a.hi[d] = mid
    b.lo[d] = mid
    return [a, b]


@dataclass
class Progress:
    """Measured progress of each kind of split: the mean share of the gap to a proof that a split
    closed in its children (``(min(child lb, 0) - parent lb) / -parent lb``, clipped to [0, 1];
    1 for an infeasible child), an average over the first ``warm`` samples, then exponential."""

    rate: float = 0.2
    warm: int = 4
    explore_every: int = 16
    mean: dict = field(default_factory=lambda: {"input": 0.0, "neuron": 0.0})
    count: dict = field(default_factory=lambda: {"input": 0, "neuron": 0})
    decisions: int = 0

    def record(self, kind: str, parent_lb: float, child_lb: float, infeasible: bool):
        if kind not in self.mean or not np.isfinite(parent_lb) or parent_lb >= 0:
            return
        r = 1.0 if infeasible else float(np.clip((min(child_lb, 0.0) - parent_lb) / -parent_lb, 0.0, 1.0))
        self.count[kind] += 1
        w = max(self.rate, 1.0 / self.count[kind]) if self.count[kind] <= self.warm else self.rate
        self.mean[kind] += w * (r - self.mean[kind])

    def choose(self, can_input: bool, can_neuron: bool) -> Optional[str]:
        """'input', 'neuron' or None (neither is possible)."""
        if not (can_input and can_neuron):
            return "input" if can_input else ("neuron" if can_neuron else None)
        self.decisions += 1
        for k in ("neuron", "input"):
            if self.count[k] < 2:
                return k
        best = max(("neuron", "input"), key=lambda k: self.mean[k])
        if self.decisions % self.explore_every == 0:
            return "input" if best == "neuron" else "neuron"
        return best
