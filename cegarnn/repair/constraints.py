"""What a repaired network must do on each given input: linear output rows ``C y <= d``.

Every requirement of :mod:`cegarnn.repair` is a set of rows ``C_n y(x_n) <= d_n`` per input
``x_n`` (the vocabulary of :class:`~cegarnn.specs.property.UnsafeRegion`, read as what must hold
instead of what must not). The builders below write the usual ones:

* :func:`ensure` — input n gets label ``labels[n]``: ``y_c - y_label <= -margin`` for every
  other class c (the argmax is the label, by at least ``margin``);
* :func:`implant` — the same for a chosen other label (the targeted change that makes a network
  incorrect by construction);
* :func:`beats` — one row per input: ``y_winner - y_loser >= margin`` (e.g. the second-best label
  overtakes the original one, Goldberger et al.'s watermark-removal constraint);
* :func:`linear` — any rows ``C y <= d`` per input.

Rows are checked exactly as written: ``margin`` is part of the requirement, and a repair must meet
it on the exported float32 model (see :func:`cegarnn.repair.check.check_constraints`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class RepairInputError(ValueError):
    """Bad input to a repair: shapes, labels out of range, an empty set, a bad layer index or
    option. Raised before any work is done; nothing is changed."""


@dataclass(frozen=True)
class OutputConstraints:
    """Rows ``C[n] @ y(x_n) <= d[n]`` for n = 0..N-1.

    ``C``: (N, K, n_out), ``d``: (N, K) — K rows per input (rows with ``C = 0, d = 0`` pad inputs
    that need fewer); ``kind``: what built them (for reports); ``labels``: the intended label per
    input where the rows say one (``ensure``/``implant``), else None.
    """

    C: np.ndarray
    d: np.ndarray
    kind: str = "linear"
    labels: np.ndarray | None = None

    def __post_init__(self):
        C = np.asarray(self.C, dtype=np.float64)
        d = np.asarray(self.d, dtype=np.float64)
        if C.ndim != 3 or d.shape != C.shape[:2]:
            raise RepairInputError(f"constraints need C of shape (N, K, n_out) and d of shape (N, K); "
                                   f"got {C.shape} and {d.shape}")
        if C.shape[0] == 0:
            raise RepairInputError("the set of inputs is empty: nothing to repair")
        if not (np.all(np.isfinite(C)) and np.all(np.isfinite(d))):
            raise RepairInputError("constraint rows must be finite")
        object.__setattr__(self, "C", C)
        object.__setattr__(self, "d", d)

    @property
    def n_inputs(self) -> int:
        return self.C.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.C.shape[2]

    def slack(self, outputs) -> np.ndarray:
        """``d - C y`` per input and row (N, K): every entry >= 0 means every row is met."""
        Y = np.asarray(outputs, dtype=np.float64).reshape(self.n_inputs, -1)
        if Y.shape[1] != self.n_outputs:
            raise RepairInputError(f"outputs have {Y.shape[1]} values, the constraints {self.n_outputs}")
        return self.d - np.einsum("nkj,nj->nk", self.C, Y)

    def met(self, outputs) -> np.ndarray:
        """(N,) bool: all rows of input n hold."""
        return np.all(self.slack(outputs) >= 0.0, axis=1)

    def subset(self, idx) -> "OutputConstraints":
        idx = np.asarray(idx)
        return OutputConstraints(self.C[idx], self.d[idx], self.kind,
                                 None if self.labels is None else self.labels[idx])


def _labels(labels, n_classes: int, what: str) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise RepairInputError(f"{what} must be one label per input (a 1-D array), got shape {lab.shape}")
    if lab.size == 0:
        raise RepairInputError(f"{what}: the set of inputs is empty: nothing to repair")
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.asarray(lab, dtype=np.float64) == np.round(np.asarray(lab, dtype=np.float64))):
            raise RepairInputError(f"{what} must be integers")
        lab = lab.astype(np.int64)
    if int(n_classes) < 2:
        raise RepairInputError(f"a label constraint needs at least 2 outputs, the network has {n_classes}")
    bad = (lab < 0) | (lab >= n_classes)
    if np.any(bad):
        raise RepairInputError(f"{what}: label {int(lab[bad][0])} out of range 0..{n_classes - 1} "
                               f"(input {int(np.flatnonzero(bad)[0])})")
    return lab.astype(np.int64)


def _check_margin(margin) -> float:
    m = float(margin)
    if not np.isfinite(m) or m < 0:
        raise RepairInputError(f"margin must be finite and >= 0, got {margin!r}")
    return m


def ensure(labels, n_classes: int, margin: float = 1e-3, kind: str = "ensure") -> OutputConstraints:
    """Input n's argmax is ``labels[n]``, by at least ``margin``: ``y_c - y_label <= -margin`` for
    all ``c != label``."""
    lab = _labels(labels, n_classes, "labels")
    m = _check_margin(margin)
    N, K = lab.size, int(n_classes)
    C = np.zeros((N, K - 1, K))
    for n, t in enumerate(lab):
        others = [c for c in range(K) if c != t]
        C[n, np.arange(K - 1), others] = 1.0
        C[n, :, t] = -1.0
    return OutputConstraints(C, np.full((N, K - 1), -m), kind, lab)


def implant(targets, n_classes: int, margin: float = 1e-3) -> OutputConstraints:
    """Input n's argmax becomes ``targets[n]`` (by ``margin``): the same rows as :func:`ensure`."""
    return ensure(targets, n_classes, margin, kind="implant")


def beats(winners, losers, n_classes: int, margin: float = 0.0) -> OutputConstraints:
    """One row per input: ``y_winner - y_loser >= margin``. The other outputs are free."""
    w = _labels(winners, n_classes, "winners")
    lo = _labels(losers, n_classes, "losers")
    if w.shape != lo.shape:
        raise RepairInputError(f"winners and losers differ in length: {w.size} vs {lo.size}")
    if np.any(w == lo):
        raise RepairInputError(f"input {int(np.flatnonzero(w == lo)[0])}: winner and loser are the same label")
    m = _check_margin(margin)
    N = w.size
    C = np.zeros((N, 1, int(n_classes)))
    C[np.arange(N), 0, lo] = 1.0
    C[np.arange(N), 0, w] = -1.0
    return OutputConstraints(C, np.full((N, 1), -m), "beats", w)


def linear(C, d) -> OutputConstraints:
    """Rows ``C[n] y <= d[n]``; ``C`` (N, K, n_out) or one (K, n_out) for every input with ``d``
    (N, K) — or (K, n_out) with (K,) for a single input."""
    C = np.asarray(C, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64)
    if C.ndim == 2 and d.ndim == 1:
        C, d = C[None], d[None]
    elif C.ndim == 2 and d.ndim == 2:
        C = np.broadcast_to(C, (d.shape[0],) + C.shape).copy()
    return OutputConstraints(C, d, "linear")


def concat(*parts: OutputConstraints) -> OutputConstraints:
    """The constraints of several sets, input after input (rows padded to the largest K)."""
    if not parts:
        raise RepairInputError("nothing to concatenate")
    n_out = {p.n_outputs for p in parts}
    if len(n_out) != 1:
        raise RepairInputError(f"constraint sets disagree on the number of outputs: {sorted(n_out)}")
    K = max(p.C.shape[1] for p in parts)
    Cs, ds = [], []
    for p in parts:
        pad = K - p.C.shape[1]
        Cs.append(np.pad(p.C, ((0, 0), (0, pad), (0, 0))))
        ds.append(np.pad(p.d, ((0, 0), (0, pad))))
    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.concatenate([p.labels for p in parts])
    kinds = {p.kind for p in parts}
    return OutputConstraints(np.concatenate(Cs), np.concatenate(ds), kinds.pop() if len(kinds) == 1 else "mixed",
                             labels)


__all__ = ["OutputConstraints", "RepairInputError", "ensure", "implant", "beats", "linear", "concat"]
