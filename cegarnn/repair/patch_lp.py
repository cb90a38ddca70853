"""The patch of one linear region: an LP (HiGHS through :mod:`cegarnn.solvers`).

On a region the network is affine, ``f(x') = W x' + b``, and the patched output is
``f(x') + P x' + q``. For every input of the region with its label ``l`` and its box ``B`` (inside
the region), every other class ``c`` must lose by ``need_c`` on the whole box:

    min over x' in B of (f_l - f_c)(x') + (p_l - p_c)(x')  >=  need_c.

``kind='constant'`` (``P = 0``): the row is ``q_l - q_c >= need_c + max_B (f_c - f_l)``, exact
since ``f`` is affine on ``B``; the objective ``max_k |q_k|`` is the patch's L∞ size on the
region. ``kind='affine'``: ``(P_l - P_c)·m - (u_l + u_c)·h`` (``m``, ``h`` the box's centre and
half-widths, ``u >= |P|``) bounds the patch's part from below, so the rows are sufficient; the
objective ``max_k max over the domain box of |p_k|`` bounds the size on the region from above.
Second stage (lexicographic, the first objective held within 1e-9 relative): the smallest L1
size, so classes that need no change keep theirs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..encoding.program import INF, Program
from ..solvers import Status, make_backend
from .regions import RegionMaps, output_range_gap

KINDS = ("constant", "affine")


@dataclass
class PatchSolution:
    """``P`` (K, n) or None, ``q`` (K,); ``size``: the first-stage optimum (None if not solved);
    ``status``: the solver's status of the last stage; ``time``: seconds in the solver."""

    P: Optional[np.ndarray]
    q: Optional[np.ndarray]
    size: Optional[float]
    status: Status
    time: float
    message: str = ""

    @property
    def solved(self) -> bool:
        return self.q is not None


def domain_size(P: Optional[np.ndarray], q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """``max over the domain box of max_k |P_k x + q_k|`` (exact; ``max_k |q_k|`` when ``P`` is None)."""
    if P is None:
        return float(np.abs(q).max(initial=0.0))
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    return float((np.abs(P @ mid + q) + np.abs(P) @ half).max(initial=0.0))


def solve_patch(maps: RegionMaps, boxes, labels, needs, lo: np.ndarray, hi: np.ndarray, kind: str = "constant",
                bound: float = 1e6, backend: str = "highs", time_limit: Optional[float] = None) -> PatchSolution:
    """The smallest patch of the region ``maps`` (see the module) for the inputs whose boxes are
    ``boxes`` (a list of ``(lo_box, hi_box)``), labels ``labels`` and required margins ``needs``
    (one (K,) array per input). Every entry of ``P`` and ``q`` lies in ``[-bound, bound]``."""
    K, n = maps.W.shape
    prog = Program(name=f"patch_{kind}")
    q = prog.add_vars(K, -bound, bound, name="q")
    affine = kind == "affine"
    if affine:
        P = prog.add_vars(K * n, -bound, bound, name="P").reshape(K, n)
        u = prog.add_vars(K * n, 0.0, bound, name="absP").reshape(K, n)
        ones = np.ones(n)
        rows = np.concatenate([np.arange(n), np.arange(n), np.arange(n, 2 * n), np.arange(n, 2 * n)])
        vals = np.concatenate([ones, -ones, ones, ones])
        for k in range(K):          # u_k - P_k >= 0 and u_k + P_k >= 0
            prog.add_rows(rows, np.concatenate([u[k], P[k], u[k], P[k]]), vals, np.zeros(2 * n), INF,
                          name=f"absP[{k}]")
    for (blo, bhi), l, need in zip(boxes, labels, needs):
        gap = output_range_gap(maps, blo, bhi, int(l))
        for c in range(K):
            if c == l:
                continue
            rhs = float(need[c] + gap[c])
            if not affine:
                prog.add_rows([0, 0], [q[l], q[c]], [1.0, -1.0], [rhs], INF, name=f"label[{l},{c}]")
                continue
            mid, half = 0.5 * (blo + bhi), 0.5 * (bhi - blo)
            cols = np.concatenate([[q[l], q[c]], P[l], P[c], u[l], u[c]])
            vals = np.concatenate([[1.0, -1.0], mid, -mid, -half, -half])
            prog.add_rows(np.zeros(cols.size, dtype=np.int64), cols, vals, [rhs], INF, name=f"label[{l},{c}]")
    t = prog.add_vars(1, 0.0, INF, name="size")[0]
    if affine:
        dmid, dhalf = 0.5 * (lo + hi), 0.5 * (hi - lo)
        for k in range(K):          # t >= ±(P_k·dmid + q_k) + u_k·dhalf
            for sgn in (1.0, -1.0):
                cols = np.concatenate([[t, q[k]], P[k], u[k]])
                vals = np.concatenate([[1.0, -sgn], -sgn * dmid, -dhalf])
                prog.add_rows(np.zeros(cols.size, dtype=np.int64), cols, vals, [0.0], INF, name=f"size[{k}]")
    else:
        prog.add_rows(np.repeat(np.arange(2 * K), 2), np.stack([np.full(2 * K, t), np.tile(q, 2)], 1).reshape(-1),
                      np.stack([np.ones(2 * K), np.repeat([-1.0, 1.0], K)], 1).reshape(-1),
                      np.zeros(2 * K), INF, name="size")
    prog.set_objective([t], [1.0], "min")
    solver = make_backend(prog, backend)
    sol = solver.solve(time_limit=time_limit)
    spent = sol.time
    if sol.status is not Status.OPTIMAL or sol.x is None:
        return PatchSolution(None, None, None, sol.status, spent, sol.message)
    size = float(sol.objective)
    # second stage: the smallest L1 size among the L∞-smallest patches
    prog.set_col_bounds([t], 0.0, size * (1 + 1e-9) + 1e-12)
    a = prog.add_vars(K, 0.0, INF, name="abs_q")
    prog.add_rows(np.repeat(np.arange(2 * K), 2), np.stack([np.tile(a, 2), np.tile(q, 2)], 1).reshape(-1),
                  np.stack([np.ones(2 * K), np.repeat([-1.0, 1.0], K)], 1).reshape(-1), np.zeros(2 * K), INF,
                  name="abs_q")
    cols = np.concatenate([a, u.reshape(-1)]) if affine else a
    weights = np.concatenate([np.ones(K), np.tile(0.5 * (hi - lo), K)]) if affine else np.ones(K)
    prog.set_objective(cols, weights, "min")
    sol2 = solver.solve(time_limit=None if time_limit is None else max(1e-3, time_limit - spent))
    spent += sol2.time
    best = sol2 if sol2.status is Status.OPTIMAL and sol2.x is not None else sol
    Pv = best.x[P] if affine else None
    return PatchSolution(Pv, best.x[q], size, best.status, spent, best.message)


__all__ = ["KINDS", "PatchSolution", "solve_patch", "domain_size"]
