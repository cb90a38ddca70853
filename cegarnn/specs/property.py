"""Output properties in VNN-LIB semantics: the *unsafe* outputs are a disjunction of conjunctions
of linear inequalities ``C_j y <= d_j`` (a row may be strict, ``<``). A problem is verified when no
input reaches any disjunct.
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

    ``strict`` (optional): per disjunct a boolean array over its rows; a strict row is
    ``(C_j y - d_j)_k < 0`` (VNN-LIB ``<``, ``>``). The margins ignore strictness, so a proof
    (margin > 0) is read non-strictly, which is conservative. Whether ``y`` really is unsafe — what
    a counterexample must show — is :meth:`disjunct_holds` / :meth:`violated_disjunct`, which
    honour strictness (a strict row needs a negative value, a non-strict one a value <= 0).
    Default: no strict row.
    """

    disjuncts: tuple  # of (C (k, n_out), d (k,))
    n_outputs: int
    names: tuple = ()
    strict: tuple = ()  # of bool (k,) per disjunct; () = all non-strict

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
        strict = self.strict
        if strict is None or (isinstance(strict, tuple) and len(strict) == 0):
            strict = tuple(np.zeros(C.shape[0], dtype=bool) for C, _ in out)
        else:
            strict = tuple(strict)
            if len(strict) != len(out):
                raise SpecError(f"strictness given for {len(strict)} disjuncts, the region has {len(out)}")
            checked = []
            for j, (s, (C, _)) in enumerate(zip(strict, out)):
                s = np.asarray(s)
                if s.dtype != np.bool_:
                    raise SpecError(f"disjunct {j}: strictness must be boolean, got {s.dtype}")
                s = s.reshape(-1) if s.ndim <= 1 else s
                if s.shape != (C.shape[0],):
                    raise SpecError(f"disjunct {j}: strictness has shape {s.shape}, the disjunct has "
                                    f"{C.shape[0]} rows")
                checked.append(s.copy())
            strict = tuple(checked)
        object.__setattr__(self, "strict", strict)

    @property
    def has_strict(self) -> bool:
        """Whether any row is strict."""
        return any(bool(s.any()) for s in self.strict)

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

    def disjunct_holds(self, y, tol: float = 0.0) -> np.ndarray:
        """(B, n_disjuncts) booleans (or (n_disjuncts,)): does ``y`` satisfy the disjunct, honouring
        strictness — every strict row ``(C_j y - d_j)_k < tol``, every other row ``<= tol``.
        NaN outputs satisfy nothing."""
        y = np.asarray(y, dtype=np.float64)
        single = y.ndim == 1
        y2 = y.reshape(1, -1) if single else y
        cols = []
        for (C, d), s in zip(self.disjuncts, self.strict):
            r = y2 @ C.T - d                                   # (B, k)
            ok = np.where(s, r < tol, r <= tol)
            cols.append(np.all(ok, axis=1))
        h = np.stack(cols, axis=1)
        return h[0] if single else h

    def violated_disjunct(self, y, tol: float = 0.0) -> int | None:
        """Index of a disjunct that ``y`` satisfies (strict rows ``< tol``, the others ``<= tol``;
        see :meth:`disjunct_holds`), the one with the smallest margin; else None."""
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        h = self.disjunct_holds(y, tol)
        if not h.any():
            return None
        m = np.where(h, self.disjunct_margins(y), np.inf)
        return int(np.argmin(m))

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
