"""Area rows for :func:`~.spec_loop.repair_spec`: a last-layer change correct on whole latent boxes.

For a generative problem ``(x, label, latent box)`` the classifier's last layer sees the features
of ``C(G([x, z]))``; the verifier's bounds (CROWN on the composed network, per leaf of a split of
the latent box along its most influential dimensions) enclose them, and
:class:`~.area.AreaRowBuilder` turns "``label`` beats class ``c`` by ``margin`` for every enclosed
feature vector" into a linear row on the change. :class:`AreaRows` adds those rows lazily (only
the (leaf, class) pairs a candidate change gets wrong), so thousands of leaves stay cheap.

The feature bounds depend only on the layers before the last one, so they are computed once per
problem and reused in every round (a last-layer change leaves them as they are).
"""
from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from .area import AreaRowBuilder, feature_bounds, margins


def split_box(lower, upper, leaves: int, order=None) -> tuple[np.ndarray, np.ndarray]:
    """At least ``leaves`` boxes (a power of two) that cover ``[lower, upper]`` exactly: every box
    is bisected along the dimensions of ``order`` in turn (cyclically; default: the widest side
    relative to the original widths first) until there are enough."""
    lo = np.atleast_2d(np.array(lower, dtype=np.float64))           # copies: the caller's box stays
    hi = np.atleast_2d(np.array(upper, dtype=np.float64))
    width0 = np.where(hi[0] > lo[0], hi[0] - lo[0], 1.0)
    splits = 0
    while lo.shape[0] < leaves:
        j = int(np.argmax((hi[0] - lo[0]) / width0)) if order is None else int(order[splits % len(order)])
        splits += 1
        if not hi[0, j] > lo[0, j]:
            if splits > 64 * lo.shape[1]:
                break                              # a point: nothing left to split
            continue
        mid = 0.5 * (lo[:, j] + hi[:, j])
        lo2, hi2 = lo.copy(), hi.copy()
        hi[:, j] = mid
        lo2[:, j] = mid
        lo, hi = np.concatenate([lo, lo2]), np.concatenate([hi, hi2])
    return lo, hi


def influence_order(network, lower, upper, bounds: str = "crown") -> np.ndarray:
    """The input dimensions, those whose bisection narrows the feature bounds most first (summed
    width of both halves' bounds, one batched bound computation)."""
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    k = lo.size
    L, H = np.tile(lo, (2 * k, 1)), np.tile(hi, (2 * k, 1))
    mid = 0.5 * (lo + hi)
    for j in range(k):
        H[2 * j, j] = mid[j]
        L[2 * j + 1, j] = mid[j]
    hl, hu = feature_bounds(network, L, H, bounds)
    width = (hu - hl).sum(1).reshape(k, 2).sum(1)
    return np.argsort(width, kind="stable")


@dataclass
class AreaCandidate:
    """One problem's leaves, the feature bounds on each, and its label."""

    index: int
    label: int
    hl: np.ndarray
    hu: np.ndarray

    @property
    def leaves(self) -> int:
        return self.hl.shape[0]


def area_candidate(index: int, problem_network, label: int, lower, upper, *, leaves: int = 256,
                   bounds: str = "crown") -> AreaCandidate:
    """The latent box split into ``leaves`` leaves (most influential dimensions first) and the
    verifier's feature bounds (``bounds``) on each."""
    order = influence_order(problem_network, lower, upper, bounds)
    lo, hi = split_box(lower, upper, leaves, order)
    hl, hu = feature_bounds(problem_network, lo, hi, bounds)
    return AreaCandidate(index, int(label), hl, hu)


class AreaRows:
    """Lazy ``extra_rows`` for :func:`~.finetune.finetune` (last layer ``(W, b)``): the area rows
    of every candidate, a (leaf, class) pair at a time. First the pairs the unchanged layer
    violates, then at each candidate change the pairs whose proven margin is below half of
    ``margin`` (the rows ask for ``margin``). A change it accepts has a proven margin of at least
    ``margin / 2`` on every leaf of every candidate (IR semantics)."""

    def __init__(self, candidates, W, b, margin: float):
        self.candidates, self.W, self.b, self.margin = list(candidates), W, b, float(margin)
        self.rows = 0
        self._prog = None

    def __call__(self, prog, we, x) -> int:
        if prog is not self._prog:
            # a new program (its first call): none of its rows exist yet
            self._prog, self._builder = prog, AreaRowBuilder(prog, we.dW, we.db, self.W, self.b,
                                                               max(we.delta, we.delta_bias))
            self.added = [np.zeros((c.leaves, self.W.shape[0]), dtype=bool) for c in self.candidates]
        if x is None:
            W, b, need = self.W, self.b, self.margin
        else:
            dW, db = we.decode(x)
            W, b, need = self.W + dW, self.b + db, 0.5 * self.margin
        n = 0
        for c, added in zip(self.candidates, self.added):
            low = (margins(W, b, c.hl, c.hu, c.label) < need) & ~added
            for leaf, cls in zip(*np.nonzero(low)):
                self._builder.add(c.hl[leaf], c.hu[leaf], c.label, int(cls), self.margin)
            added |= low
            n += int(low.sum())
        self.rows += n
        return n


__all__ = ["split_box", "influence_order", "AreaCandidate", "area_candidate", "AreaRows"]
