"""Input boxes and per-layer bounds containers shared by every bounds provider."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class BoxError(ValueError):
    """An input box is malformed: wrong size, NaN, or lower > upper."""


def check_box(lower, upper, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a box (or a batch of boxes, shape (B, n)); returns float64 arrays.

    Raises :class:`BoxError` naming the problem: size mismatch with ``n``, NaN entries, or an
    empty/inverted box (some lower > upper).
    """
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    if lo.shape != hi.shape:
        raise BoxError(f"box lower bound has shape {lo.shape} but upper bound has shape {hi.shape}")
    if lo.ndim not in (1, 2):
        lo = lo.reshape(-1)
        hi = hi.reshape(-1)
    if n is not None and lo.shape[-1] != n:
        raise BoxError(f"box has {lo.shape[-1]} dimensions but the network has {n} inputs")
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise BoxError("box bounds contain NaN")
    if np.any(lo > hi):
        j = np.argwhere(lo > hi)[0]
        raise BoxError(f"empty box: lower bound {lo[tuple(j)]} > upper bound {hi[tuple(j)]} at index {tuple(int(t) for t in j)}")
    return lo, hi


@dataclass
class LayerBounds:
    """Sound bounds on every value of ``network.forward_all``: ``lower[i] <= v[i] <= upper[i]``.

    Arrays have shape (size_i,) for one box or (B, size_i) for a batch of B boxes.
    ``method`` records the provider actually used (e.g. 'interval' after a CROWN fallback).
    """

    lower: list
    upper: list
    method: str = "interval"

    @property
    def batched(self) -> bool:
        return self.lower[0].ndim == 2

    def pick(self, b: int) -> "LayerBounds":
        """Bounds of box ``b`` of a batch."""
        return LayerBounds([l[b] for l in self.lower], [u[b] for u in self.upper], self.method)

    def unstable_relus(self, network) -> int:
        from ..network.ir import ReLU
        n = 0
        for i in network.activation_indices(ReLU):
            n += int(np.sum((self.lower[i] < 0) & (self.upper[i] > 0)))
        return n

    def output(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lower[-1], self.upper[-1]
