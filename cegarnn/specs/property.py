"""Output properties in VNN-LIB semantics: the *unsafe* outputs are a disjunction of conjunctions
of linear inequalities ``C_j y <= d_j``. A problem is verified when no input reaches any disjunct.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class SpecError(ValueError):
    """A specification is malformed (sizes, labels, boxes, shapes)."""


@dataclass(frozen=True, eq=False)
class UnsafeRegion:
    """``OR_j AND_k (C_j y - d_j)_k <= 0`` over network outputs ``y``.

    Margin of a disjunct: ``max_k (C_j y - d_j)_k`` (<= 0 iff the disjunct holds). Margin of the
    region: the minimum over disjuncts; ``margin(y) <= 0`` iff ``y`` is unsafe. A proof of safety
    is a proof that the margin is > 0 everywhere.
    """

    disjuncts: tuple  # of (C (k, n_out), d (k,))
    n_outputs: int
    names: tuple = ()

    def __post_init__(self):
        out = []
        if not self.disjuncts:
            raise SpecError("unsafe region needs at least one disjunct")
        for j, (C, d) in enumerate(self.disjuncts):
            C = np.atleast_2d(np.asarray(C, dtype=np.float64))
            d = np.asarray(d, dtype=np.float64).reshape(-1)
            if C.shape[1] != self.n_outputs:
                raise SpecError(f"disjunct {j} has {C.shape[1]} output coefficients, network has {self.n_outputs} outputs")
            if C.shape[0] != d.shape[0]:
                raise SpecError(f"disjunct {j}: {C.shape[0]} rows but {d.shape[0]} right-hand sides")
            if not (np.all(np.isfinite(C)) and np.all(np.isfinite(d))):
                raise SpecError(f"disjunct {j} has non-finite coefficients")
            out.append((C, d))
        object.__setattr__(self, "disjuncts", tuple(out))

    @property
    def stacked(self) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """All rows stacked: (C_all, d_all, row index arrays per disjunct)."""
        Cs, ds, groups, start = [], [], [], 0
        for C, d in self.disjuncts:
            Cs.append(C)
            ds.append(d)
            groups.append(np.arange(start, start + C.shape[0]))
            start += C.shape[0]
        return np.vstack(Cs), np.concatenate(ds), groups

    def disjunct_margins(self, y) -> np.ndarray:
        """(B, n_disjuncts) margins (or (n_disjuncts,) for one output vector)."""
        y = np.asarray(y, dtype=np.float64)
        single = y.ndim == 1
        y2 = y.reshape(1, -1) if single else y
        m = np.stack([np.max(y2 @ C.T - d, axis=1) for C, d in self.disjuncts], axis=1)
        return m[0] if single else m

    def margin(self, y) -> np.ndarray | float:
        m = self.disjunct_margins(y)
        return float(np.min(m)) if m.ndim == 1 else np.min(m, axis=1)

    def violated_disjunct(self, y, tol: float = 0.0) -> int | None:
        """Index of a disjunct that ``y`` satisfies (margin <= tol), else None."""
        m = self.disjunct_margins(np.asarray(y, dtype=np.float64).reshape(-1))
        j = int(np.argmin(m))
        return j if m[j] <= tol else None

    def disjunct_lower_bounds(self, row_lower: np.ndarray) -> np.ndarray:
        """Lower bounds on each disjunct's margin from lower bounds on every stacked row
        ``C_all y - d_all`` (shape (..., n_rows)) -> (..., n_disjuncts). A disjunct is excluded
        (unreachable) where its bound is positive."""
        _, _, groups = self.stacked
        return np.stack([np.max(row_lower[..., g], axis=-1) for g in groups], axis=-1)


def classification_unsafe(n_outputs: int, label: int) -> UnsafeRegion:
    """Unsafe = some other class scores >= the label's score: ``OR_j (y_label - y_j <= 0)``."""
    if not (0 <= int(label) < n_outputs):
        raise SpecError(f"label {label} out of range for a network with {n_outputs} outputs")
    disj, names = [], []
    for j in range(n_outputs):
        if j == label:
            continue
        C = np.zeros((1, n_outputs))
        C[0, label] = 1.0
        C[0, j] = -1.0
        disj.append((C, np.zeros(1)))
        names.append(f"y{label}<=y{j}")
    return UnsafeRegion(tuple(disj), n_outputs, tuple(names))
