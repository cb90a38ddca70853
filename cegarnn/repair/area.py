"""Area repair of the last layer: one LP whose change is correct on whole input boxes.

For each box ``B`` (e.g. a latent box of a generative specification, on the composed network),
the features ``h`` that reach the last Affine layer are enclosed in ``[l, u]`` by the bounds
provider (CROWN by default; interval or LP also work — per box, so splitting a box tightens
them). Requiring label ``t`` to win by ``margin`` for *every* ``h`` in ``[l, u]`` is linear in
the change by the standard dualisation: with ``a = (W_t - W_c) + (dW_t - dW_c)`` (linear in the
change) and ``a = p - q``, ``p, q >= 0``,

    min over h in [l, u] of a·h  >=  p·l - q·u,

with equality at the best split. So the rows ``p·l - q·u + (b_t - b_c) + (db_t - db_c) >= margin``
for every other class ``c`` make every feature vector of the box — hence every input of ``B``,
on the float64 IR — classified ``t`` by at least ``margin``. One LP, no search.

The LP is conservative (the enclosure is larger than the reachable set): infeasible means only
"not with these bounds" (status ``unknown``, reason ``AREA_TOO_CONSERVATIVE``); splitting the
boxes or using tighter bounds may make it feasible. The guarantee holds for the IR; the
float32 model is covered by re-verifying the repaired network (``cegarnn.verify``).
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ..bounds import compute_bounds
from ..encoding.program import INF, Program
from ..network.ir import Affine, Network
from ..solvers import Status, make_backend
from .constraints import RepairInputError
from .inputs import LARGE_BOUND, as_network
from .result import REPAIRED, UNKNOWN, RepairReason, RepairResult, StageInfo


def _boxes(network: Network, lower, upper) -> tuple[np.ndarray, np.ndarray]:
    lo = np.atleast_2d(np.asarray(lower, dtype=np.float64))
    hi = np.atleast_2d(np.asarray(upper, dtype=np.float64))
    if lo.shape != hi.shape or lo.shape[1] != network.n_inputs:
        raise RepairInputError(f"boxes must be (B, {network.n_inputs}) lower and upper arrays of one shape; "
                               f"got {lo.shape} and {hi.shape}")
    if lo.shape[0] == 0:
        raise RepairInputError("the set of boxes is empty: nothing to repair")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo > hi):
        raise RepairInputError("boxes must be finite with lower <= upper")
    return lo, hi


def feature_bounds(network: Network, lower, upper, method: str = "crown") -> tuple[np.ndarray, np.ndarray]:
    """Sound bounds ``(B, n_h)`` on the input of the last Affine layer over each box."""
    lb = compute_bounds(network, lower, upper, method=method)
    i = len(network.layers) - 1
    return np.atleast_2d(lb.lower[i]), np.atleast_2d(lb.upper[i])


class AreaRowBuilder:
    """Adds area rows to one program (see the module). For the class pair ``(t, c)`` let
    ``a = (W_t - W_c) + (dW_t - dW_c)``; over the box with centre ``m`` and radius ``r``,
    ``min a·h = a·m - |a|·r``. The auxiliaries ``s >= |a|`` (``n`` columns, ``2n`` rows) are made
    once per class pair and shared by every box, so each box costs ONE row
    ``a·m - s·r + (b_t - b_c) + (db_t - db_c) >= margin``; the row is exact (the LP may take
    ``s = |a|``). ``dW`` (m, n) and ``db`` (m,) are the change's columns (-1: frozen)."""

    def __init__(self, prog: Program, dW, db, W, b, bound: float):
        self.prog, self.dW, self.db, self.W, self.b, self.bound = prog, dW, db, W, b, float(bound)
        self.abs: dict = {}
        self.rows = 0

    def _abs(self, t: int, c: int) -> np.ndarray:
        if (t, c) not in self.abs:
            n = self.W.shape[1]
            d = self.W[t] - self.W[c]
            s = self.prog.add_vars(n, 0.0, 2 * self.bound + np.abs(d), name=f"abs[{t},{c}]")
            r = np.tile(np.arange(n), 3)
            for sign in (1.0, -1.0):          # s - sign*(dW_t - dW_c) >= sign*d
                cols = np.concatenate([s, self.dW[t], self.dW[c]])
                vals = np.concatenate([np.ones(n), -sign * np.ones(n), sign * np.ones(n)])
                live = cols >= 0
                self.prog.add_rows(r[live], cols[live], vals[live], sign * d, np.full(n, INF),
                                   name=f"abs{'+' if sign > 0 else '-'}[{t},{c}]")
            self.abs[(t, c)] = s
        return self.abs[(t, c)]

    def add(self, hl, hu, t: int, c: int, margin: float) -> None:
        """The row making the changed layer rank ``t`` above ``c`` by ``margin`` for every
        feature vector in ``[hl, hu]``."""
        hl, hu = np.asarray(hl, dtype=np.float64), np.asarray(hu, dtype=np.float64)
        mid, rad = 0.5 * (hl + hu), 0.5 * (hu - hl)
        s = self._abs(t, c)
        cols = np.concatenate([self.dW[t], self.dW[c], s, [self.db[t], self.db[c]]])
        vals = np.concatenate([mid, -mid, -rad, [1.0, -1.0]])
        live = (vals != 0) & (cols >= 0)
        rhs = margin - (self.b[t] - self.b[c]) - float((self.W[t] - self.W[c]) @ mid)
        self.prog.add_rows(np.zeros(int(live.sum()), dtype=np.int64), cols[live], vals[live], [rhs], [INF],
                           name=f"margin[{t},{c}]")
        self.rows += 1


def add_area_rows(prog: Program, dW, db, W, b, hl, hu, labels, margin: float, bound: float) -> int:
    """An area row (:class:`AreaRowBuilder`) for every box ``[hl[i], hu[i]]`` and every class
    other than ``labels[i]``. Returns the number of margin rows."""
    hl, hu = np.atleast_2d(hl), np.atleast_2d(hu)
    rows = AreaRowBuilder(prog, dW, db, W, b, bound)
    for bi in range(hl.shape[0]):
        t = int(labels[bi])
        for c in range(W.shape[0]):
            if c != t:
                rows.add(hl[bi], hu[bi], t, c, margin)
    return rows.rows


def margins(W, b, hl, hu, label: int) -> np.ndarray:
    """(B, m): the smallest margin of ``label`` over class ``c`` over every feature vector of box
    ``[hl[i], hu[i]]`` under the layer ``(W, b)``, in float64 from the bounds (``+inf`` at
    ``c = label``)."""
    A = W[label][None, :] - W                                        # (m, n)
    lo = np.minimum(hl[:, None, :] * A[None], hu[:, None, :] * A[None]).sum(-1) + (b[label] - b)[None]
    lo[:, label] = np.inf
    return lo


def proven_margin(W, b, hl, hu, labels) -> float:
    """The smallest margin of ``labels[i]`` over every feature vector of ``[hl[i], hu[i]]`` under
    the layer ``(W, b)``, in float64 from the bounds (not from any solver)."""
    hl, hu = np.atleast_2d(hl), np.atleast_2d(hu)
    return float(min(margins(W, b, hl[i:i + 1], hu[i:i + 1], int(labels[i])).min() for i in range(hl.shape[0])))

def area_repair(network, lower, upper, labels, *, margin: float = 1e-3, norm: str = "linf",
                bounds: str = "crown", bound: Optional[float] = None, time_limit: Optional[float] = None,
                backend: str = "highs", features=None) -> RepairResult:
    """The smallest change (L∞ or L1) of the last Affine layer under which every input of every
    box ``[lower[b], upper[b]]`` gets label ``labels[b]`` by ``margin`` on the IR (see the module).

    ``repaired``: the change is correct on every box by construction (IR semantics; the check on
    the float32 export is the verifier's job, and ``extra['min_margin_lower_bound']`` is the
    smallest proven margin). ``unknown``/``AREA_TOO_CONSERVATIVE``: no change works for these
    feature bounds. ``bound`` limits the change (default ``1000 * max(1, max|W|)``).
    ``features=(hl, hu)``: sound feature bounds per box already at hand (e.g. reused between
    rounds, since a last-layer change leaves them as they are); they must enclose the features of
    the boxes, which is the caller's guarantee.
    """
    t0 = time.perf_counter()
    net = as_network(network)
    last = net.layers[-1]
    if not isinstance(last, Affine):
        raise RepairInputError("area repair changes the last layer, which must be Affine")
    if norm not in ("linf", "l1"):
        raise RepairInputError(f"norm must be 'linf' or 'l1', got {norm!r}")
    lo, hi = _boxes(net, lower, upper)
    lab = np.asarray(labels)
    if lab.shape != (lo.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
        raise RepairInputError(f"labels must be {lo.shape[0]} integers, one per box")
    K = net.n_outputs
    if np.any((lab < 0) | (lab >= K)):
        raise RepairInputError(f"label out of range 0..{K - 1}")
    W, b = last.dense_W(), last.b
    m, n = W.shape
    bound = LARGE_BOUND * max(1.0, float(np.abs(W).max(initial=0.0))) if bound is None else float(bound)
    if features is None:
        hl, hu = feature_bounds(net, lo, hi, bounds)
    else:
        hl, hu = (np.atleast_2d(np.asarray(f, dtype=np.float64)) for f in features)
        if hl.shape != (lo.shape[0], W.shape[1]) or hu.shape != hl.shape or np.any(hl > hu):
            raise RepairInputError(f"features must be (lower, upper) of shape ({lo.shape[0]}, {W.shape[1]}) "
                                   "with lower <= upper")

    prog = Program(name="area_repair")
    dW = prog.add_vars(m * n, -bound, bound, name="dW").reshape(m, n)
    db = prog.add_vars(m, -bound, bound, name="db")
    rows = add_area_rows(prog, dW, db, W, b, hl, hu, lab, margin, bound)
    v = np.concatenate([dW.reshape(-1), db])
    if norm == "linf":
        tt = prog.add_vars(1, 0.0, bound, name="max_change")
        ti = np.full(v.size, tt[0])
    else:
        tt = prog.add_vars(v.size, 0.0, bound, name="abs_change")
        ti = tt
    k = v.size
    r = np.repeat(np.arange(2 * k), 2)
    cols = np.stack([np.repeat(ti, 2), np.repeat(v, 2)], 1).reshape(-1)
    vals = np.stack([np.ones(2 * k), np.tile([-1.0, 1.0], k)], 1).reshape(-1)
    prog.add_rows(r, cols, vals, np.zeros(2 * k), np.full(2 * k, INF), name="norm")
    prog.set_objective(tt, np.ones(tt.size), "min")
    opts = {"solver": "ipm"} if backend == "highs" else {}
    sol = make_backend(prog, backend, **opts).solve(time_limit=time_limit)
    stage = StageInfo(f"min {norm} over {lo.shape[0]} boxes", sol.status.value, sol.objective, sol.bound, sol.time, 1)
    base = dict(original=net, layer=len(net.layers) - 1, stages=[stage], extra={"boxes": int(lo.shape[0]),
                                                                                "rows": rows})
    if sol.status is Status.INFEASIBLE:
        return RepairResult(UNKNOWN, RepairReason.AREA_TOO_CONSERVATIVE, time=time.perf_counter() - t0,
                            message=f"no change within {bound:g} works for the {bounds} feature bounds; "
                                    "split the boxes or use tighter bounds", **base)
    if sol.x is None:
        return RepairResult(UNKNOWN, RepairReason.TIME_LIMIT if sol.status is Status.TIME_LIMIT
                            else RepairReason.SOLVER_FAILED, time=time.perf_counter() - t0, message=sol.message,
                            **base)
    DW, DB = sol.x[dW], sol.x[db]
    repaired = Network(tuple(net.layers[:-1]) + (Affine(W + DW, b + DB),), net.input_shape, name=net.name)
    # the proven margin of the repaired layer, recomputed in float64 from the bounds (not the solver's word)
    worst = proven_margin(W + DW, b + DB, hl, hu, lab)
    base["extra"]["min_margin_lower_bound"] = worst
    norms = {"linf": float(max(np.abs(DW).max(), np.abs(DB).max())), "l1": float(np.abs(DW).sum() + np.abs(DB).sum())}
    if worst <= 0:
        return RepairResult(UNKNOWN, RepairReason.SOLVER_FAILED, dW=DW, db=DB, norms=norms,
                            time=time.perf_counter() - t0,
                            message=f"the solver's change leaves a margin lower bound of {worst:.3g}", **base)
    return RepairResult(REPAIRED, RepairReason.AREA_PROVED, network=repaired, dW=DW, db=DB, norms=norms,
                        optimal=sol.status is Status.OPTIMAL, lower_bound=sol.bound, time=time.perf_counter() - t0,
                        **base)


__all__ = ["area_repair", "feature_bounds", "AreaRowBuilder", "add_area_rows", "margins", "proven_margin"]
