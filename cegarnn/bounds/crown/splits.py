"""Neuron splits of a batch of subproblems: ReLU phases and sigmoid/tanh segments.

A subproblem ``b`` is the set of inputs ``x`` in its box whose pre-activations satisfy its splits:

* ``relu[i][b, j] = +1``: pre-activation ``v_i[j] >= 0`` (active); ``-1``: ``v_i[j] <= 0``
  (inactive); ``0``: free. ``i`` is the index of a ReLU layer (its pre-activation is value ``i``
  of ``Network.forward_all``).
* ``seg_lo[i][b, j] <= v_i[j] <= seg_hi[i][b, j]`` for a sigmoid/tanh layer ``i``; ``NaN`` or
  ``-inf`` / ``+inf`` mean no restriction on that side.

Bounds of a subproblem are sound on that set: the computed pre-activation bounds are intersected
with the split, so the relaxation of a split sigmoid is the envelope of its segment.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...network.ir import Network, ReLU, Sigmoid, Tanh


class SplitError(ValueError):
    """Splits do not fit the network or the batch (wrong layer, shape, value, inverted segment)."""


@dataclass
class Splits:
    """Per-subproblem neuron splits, keyed by layer index (see the module docstring).

    ``relu``: {layer index: int array (B, n) of -1/0/+1}; ``seg_lo`` / ``seg_hi``: {layer index:
    float array (B, n)}. A layer may be absent (no split there)."""

    relu: dict = field(default_factory=dict)
    seg_lo: dict = field(default_factory=dict)
    seg_hi: dict = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (self.relu or self.seg_lo or self.seg_hi)

    def take(self, idx) -> "Splits":
        """Splits of the subproblems ``idx`` (an index array or slice)."""
        return Splits({k: v[idx] for k, v in self.relu.items()},
                      {k: v[idx] for k, v in self.seg_lo.items()},
                      {k: v[idx] for k, v in self.seg_hi.items()})

    def checked(self, network: Network, batch: int) -> "Splits":
        """Validated copy (int8 phases, float64 segments with NaN replaced by +-inf); raises
        :class:`SplitError` naming the problem."""
        sizes = network.sizes
        relu, lo, hi = {}, {}, {}
        for name, d in (("relu", self.relu), ("seg_lo", self.seg_lo), ("seg_hi", self.seg_hi)):
            if not isinstance(d, dict):
                raise SplitError(f"Splits.{name} must be a dict {{layer index: array}}, got {type(d).__name__}")
            for i, arr in d.items():
                if not isinstance(i, (int, np.integer)) or not 0 <= i < len(network.layers):
                    raise SplitError(f"Splits.{name}: {i!r} is not a layer index of the network "
                                     f"(0..{len(network.layers) - 1})")
                layer = network.layers[i]
                want = ReLU if name == "relu" else (Sigmoid, Tanh)
                if not isinstance(layer, want):
                    kind = "a ReLU" if name == "relu" else "a sigmoid/tanh"
                    raise SplitError(f"Splits.{name}[{i}]: layer {i} is {type(layer).__name__}, not {kind} layer")
                a = np.asarray(arr)
                if a.shape != (batch, sizes[i]):
                    raise SplitError(f"Splits.{name}[{i}] has shape {a.shape}, expected {(batch, sizes[i])} "
                                     f"(batch, neurons of layer {i})")
                if name == "relu":
                    if not np.all(np.isin(a, (-1, 0, 1))):
                        raise SplitError(f"Splits.relu[{i}] must hold -1, 0 or +1 only")
                    relu[int(i)] = a.astype(np.int8)
                else:
                    a = a.astype(np.float64)
                    a = np.where(np.isnan(a), -np.inf if name == "seg_lo" else np.inf, a)
                    (lo if name == "seg_lo" else hi)[int(i)] = a
        for i in set(lo) | set(hi):
            a = lo.get(i, np.full((batch, sizes[i]), -np.inf))
            b = hi.get(i, np.full((batch, sizes[i]), np.inf))
            if np.any(a > b):
                bj = tuple(int(t) for t in np.argwhere(a > b)[0])
                raise SplitError(f"inverted segment [{a[bj]}, {b[bj]}] for layer {i}, subproblem {bj[0]}, "
                                 f"neuron {bj[1]}")
            lo[i], hi[i] = a, b
        return Splits(relu, lo, hi)

    def restrict(self, i: int, l: np.ndarray, u: np.ndarray):
        """Pre-activation bounds of layer ``i`` intersected with the splits: ``(l', u', empty)``,
        ``empty[b]`` True where some neuron's intersection is empty (subproblem b is infeasible).
        Where empty, the unsplit bounds are kept (still sound for a superset)."""
        nl, nu = l, u
        if i in self.relu:
            ph = self.relu[i]
            nl = np.where(ph > 0, np.maximum(nl, 0.0), nl)
            nu = np.where(ph < 0, np.minimum(nu, 0.0), nu)
        if i in self.seg_lo:
            nl = np.maximum(nl, self.seg_lo[i])
            nu = np.minimum(nu, self.seg_hi[i])
        bad = nl > nu
        if not np.any(bad):
            return nl, nu, np.zeros(l.shape[0], dtype=bool)
        return np.where(bad, l, nl), np.where(bad, u, nu), bad.any(axis=1)
