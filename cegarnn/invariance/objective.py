"""Maximising a norm of a linear difference in a MILP (a convex function: it needs binaries).

The difference is ``e_k = v[a_k] - v[b_k] + const_k`` (``b`` may be absent) with known bounds
``elo_k <= e_k <= ehi_k`` (from the columns' bounds). Both encodings add one column ``t`` whose
maximum over the program is the maximum of the norm:

* ``linf``: binaries ``s_(k,σ)`` (one per coordinate ``k`` and sign ``σ``), ``sum s = 1``, and
  ``t <= σ e_k + M_(k,σ) (1 - s_(k,σ))`` with ``M_(k,+) = T - elo_k``, ``M_(k,-) = T + ehi_k``,
  ``0 <= t <= T = max_k max(ehi_k, -elo_k)``. The chosen row is ``t <= σ e_k``; the others are
  implied by the bounds. Pairs (k, σ) with ``σ e_k <= 0`` on the whole box cannot carry a positive
  maximum and get no binary. With ``signs=(1,)`` (a problem symmetric under ``x <-> y``) only
  ``σ = +1`` is used.
* ``l1``: ``e_k = p_k - q_k`` with ``0 <= p_k <= ehi_k⁺ z_k``, ``0 <= q_k <= elo_k⁻ (1 - z_k)``
  (one binary per coordinate whose sign is not fixed by the bounds), ``t = sum (p_k + q_k)``.

In both, every feasible point of the program with its ``t`` at the maximum has ``t = ||e||``, and
every value of ``||e||`` on the feasible set is reachable, so the MILP optimum is the maximum of
the norm.

:func:`linf_pieces` splits an L∞ maximum instead into one linear objective per coordinate and
sign (``max σ e_k``, no binaries); the largest of their maxima is the maximum of the norm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..encoding.program import INF, Program


@dataclass(frozen=True)
class Piece:
    """One linear objective ``max coeffs @ v[cols] + offset`` of a maximum split into pieces."""

    cols: np.ndarray
    coeffs: np.ndarray
    offset: float
    name: str


def linf_pieces(program: Program, a, b, const, signs=(1, -1), name: str = "e") -> list:
    """``||e||∞ = max over (k, σ) of σ e_k`` as one :class:`Piece` per coordinate and sign, for
    ``e = v[a] - v[b] + const`` (``b`` may be None); pairs whose ``σ e_k`` cannot be positive on the
    box are left out (if all are, one piece remains so that the maximum, 0, is still bounded)."""
    a = np.asarray(a, dtype=np.int64)
    const = np.broadcast_to(np.asarray(const, dtype=np.float64), a.shape)
    elo, ehi = difference_bounds(program, a, None if b is None else np.asarray(b, dtype=np.int64), const)
    out = []
    for k in range(len(a)):
        for s in signs:
            if (ehi[k] if s > 0 else -elo[k]) <= 0:
                continue
            cols = [a[k]] if b is None else [a[k], b[k]]
            coeffs = [float(s)] if b is None else [float(s), -float(s)]
            out.append(Piece(np.array(cols), np.array(coeffs), float(s * const[k]), f"{'+' if s > 0 else '-'}{name}[{k}]"))
    if not out:
        cols = [a[0]] if b is None else [a[0], b[0]]
        out.append(Piece(np.array(cols), np.array([1.0] if b is None else [1.0, -1.0]), float(const[0]), f"+{name}[0]"))
    return out


@dataclass(frozen=True)
class NormObjective:
    """The column ``t`` to maximise, the binaries added, and the difference's bounds."""

    t: int
    binaries: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    norm: str


def difference_bounds(program: Program, a: np.ndarray, b: Optional[np.ndarray], const) -> tuple:
    """Bounds of ``v[a] - v[b] + const`` from the program's column bounds."""
    const = np.broadcast_to(np.asarray(const, dtype=np.float64), (len(a),))
    lo, hi = program.col_lo[a] + const, program.col_hi[a] + const
    if b is not None:
        lo, hi = lo - program.col_hi[b], hi - program.col_lo[b]
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError("the difference to maximise needs finite column bounds")
    return lo, hi


def _diff_terms(a, b, sign: np.ndarray):
    """Columns and coefficients of ``sign_k * (v[a_k] - v[b_k])`` per row k (rows local 0..K-1)."""
    K = len(a)
    rows = [np.arange(K)]
    cols = [np.asarray(a)]
    vals = [sign]
    if b is not None:
        rows.append(np.arange(K))
        cols.append(np.asarray(b))
        vals.append(-sign)
    return rows, cols, vals


def add_norm_objective(program: Program, a, b, const, norm: str = "linf", signs=(1, -1),
                       name: str = "obj") -> NormObjective:
    """Add the columns/rows maximising ``||v[a] - v[b] + const||`` (see the module docstring) and
    set the objective to ``max t``. ``b`` None: the difference is ``v[a] + const``."""
    a = np.asarray(a, dtype=np.int64)
    b = None if b is None else np.asarray(b, dtype=np.int64)
    const = np.broadcast_to(np.asarray(const, dtype=np.float64), a.shape).copy()
    elo, ehi = difference_bounds(program, a, b, const)
    if norm == "linf":
        obj = _linf(program, a, b, const, elo, ehi, signs, name)
    elif norm == "l1":
        obj = _l1(program, a, b, const, elo, ehi, name)
    else:
        raise ValueError(f"norm must be 'linf' or 'l1', got {norm!r}")
    program.set_objective([obj.t], [1.0], "max")
    return obj


def _linf(program, a, b, const, elo, ehi, signs, name) -> NormObjective:
    T = float(max(np.max(ehi), np.max(-elo), 0.0))
    t = int(program.add_vars(1, 0.0, T, name=f"{name}.t")[0])
    pairs = []
    for s in signs:
        reach = ehi if s > 0 else -elo                # the largest σ e_k on the box
        pairs += [(k, float(s)) for k in np.flatnonzero(reach > 0)]
    if not pairs:                                     # the norm is 0 on the whole box
        program.set_col_bounds([t], 0.0, 0.0)
        return NormObjective(t, np.zeros(0, dtype=np.int64), elo, ehi, "linf")
    ks = np.array([p[0] for p in pairs], dtype=np.int64)
    sg = np.array([p[1] for p in pairs])
    P = len(pairs)
    s_bin = program.add_binaries(P, name=f"{name}.s")
    program.add_rows(np.zeros(P, dtype=np.int64), s_bin, np.ones(P), [1.0], [1.0], name=f"{name}.choose")
    M = np.where(sg > 0, T - elo[ks], T + ehi[ks])
    # t - σ (v[a] - v[b]) + M s <= M + σ const
    r, c, v = _diff_terms(a[ks], None if b is None else b[ks], -sg)
    rows = np.concatenate(r + [np.arange(P), np.arange(P)])
    cols = np.concatenate(c + [np.full(P, t), s_bin])
    vals = np.concatenate(v + [np.ones(P), M])
    program.add_rows(rows, cols, vals, np.full(P, -INF), M + sg * const[ks], name=f"{name}.linf")
    return NormObjective(t, s_bin, elo, ehi, "linf")


def _l1(program, a, b, const, elo, ehi, name) -> NormObjective:
    K = len(a)
    pu, qu = np.maximum(ehi, 0.0), np.maximum(-elo, 0.0)
    p = program.add_vars(K, 0.0, pu, name=f"{name}.p")
    q = program.add_vars(K, 0.0, qu, name=f"{name}.q")
    t = int(program.add_vars(1, 0.0, float(np.sum(pu + qu)), name=f"{name}.t")[0])
    # v[a] - v[b] - p + q = -const
    r, c, v = _diff_terms(a, b, np.ones(K))
    rows = np.concatenate(r + [np.arange(K), np.arange(K)])
    cols = np.concatenate(c + [p, q])
    vals = np.concatenate(v + [-np.ones(K), np.ones(K)])
    program.add_rows(rows, cols, vals, -const, -const, name=f"{name}.split")
    # t - sum (p + q) = 0
    program.add_rows(np.zeros(2 * K + 1, dtype=np.int64), np.concatenate([[t], p, q]),
                     np.concatenate([[1.0], -np.ones(2 * K)]), [0.0], [0.0], name=f"{name}.sum")
    both = np.flatnonzero((pu > 0) & (qu > 0))
    z = program.add_binaries(len(both), name=f"{name}.z")
    if len(both):
        m = len(both)
        ar = np.arange(m)
        # p - pu z <= 0 ;  q + qu z <= qu
        program.add_rows(np.concatenate([ar, ar, ar + m, ar + m]),
                         np.concatenate([p[both], z, q[both], z]),
                         np.concatenate([np.ones(m), -pu[both], np.ones(m), qu[both]]),
                         np.full(2 * m, -INF), np.concatenate([np.zeros(m), qu[both]]), name=f"{name}.l1")
    return NormObjective(t, z, elo, ehi, "l1")


def norm_value(e, norm: str) -> float:
    """``||e||`` in the named norm (float64)."""
    e = np.abs(np.asarray(e, dtype=np.float64).reshape(-1))
    return float(np.max(e, initial=0.0)) if norm == "linf" else float(np.sum(e))


def objective_pieces(program: Program, a, b, const, norm: str, split: bool, signs=(1, -1), name: str = "e") -> list:
    """The pieces whose maximum is ``||v[a] - v[b] + const||``: one per coordinate and sign
    (:func:`linf_pieces`) for ``linf`` with ``split``, else the single column ``t`` of
    :func:`add_norm_objective` (``l1`` is never split)."""
    if norm == "linf" and split:
        return linf_pieces(program, a, b, const, signs, name)
    obj = add_norm_objective(program, a, b, const, norm, signs, name)
    return [Piece(np.array([obj.t]), np.array([1.0]), 0.0, f"||{name}||")]


__all__ = ["NormObjective", "Piece", "add_norm_objective", "difference_bounds", "linf_pieces", "norm_value",
           "objective_pieces"]
