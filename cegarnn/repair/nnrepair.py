"""nnrepair: constraint-based repair after fault localisation, one expert per class.

After NNrepair (Usman, Gopinath, Sun, Noller, Păsăreanu, CAV 2021). Given *failing* inputs
(misclassified, with their true labels) and *passing* inputs (correctly classified):

1. **Fault localisation.** For the failing inputs of class ``c`` let ``L(x) = y_w(x) - y_c(x)``
   with ``w`` the highest wrong output of the original network, and ``g = dL/dz`` its gradient
   with respect to the outputs ``z`` of the chosen Affine layer (back-propagated through the
   layers after it at ``x``; ReLU: the active pattern; sigmoid/tanh: their derivative). With
   ``h`` the layer's input, weight ``W_jk`` gets the score

   * ``rank='gradient'`` (default): ``sum_x |g_j(x) h_k(x)| = sum_x |dL/dW_jk|`` — how much a
     unit change of the weight moves the failing margins (the weights a bounded change can use
     best);
   * ``rank='contribution'``: ``|W_jk| sum_x |g_j(x) h_k(x)|`` — activation x weight x gradient,
     the first-order share of ``W_jk`` in the wrong decision.

   The ``k`` weights with the highest (non-zero) score are kept; the bias is frozen.
2. **One expert per class** ``c`` (``per_class=True``; else one expert, key -1, for all failing
   inputs): a MILP over those ``k`` weight changes ``|dW| <= bound``
   (:func:`~cegarnn.encoding.weights.encode_weight_layer`, layers after the chosen one exact
   for ReLU), one binary ``b_n`` per failing input of class ``c``: ``b_n = 1`` forces input n's
   label ``c`` with ``margin`` (``y_j - y_c <= -margin - s`` for ``j != c``, big-M from the
   change's box), and every passing input keeps its label (hard rows, ``y_j - y_label <= -s``).
   ``s`` is a slack for float32 execution (:func:`~.finetune.float32_slack`; for a passing input
   at most half its current gap, so that no change is always feasible). Objective: maximise
   ``sum b_n``; ``tie_break='linf'`` (default) also subtracts ``max |dW| / (2 bound)``
   (``'l1'``: ``sum |dW| / (2 k bound)``), less than one input, so the smallest change among the
   maximisers wins. HiGHS, within ``time_limit`` (shared by the experts), starting from the
   no-change point as incumbent. Passing inputs whose rows hold for every change in the box
   (interval bounds) are not encoded.
3. **Check.** Every expert is exported to float32 ONNX and run by onnxruntime
   (:mod:`.check`): ``fixed`` = the failing inputs that meet their rows there, whatever the MILP
   said; every passing input must keep its label there. A claimed input that fails, or a lost
   passing input, makes its rows' slack 4x larger and the MILP is solved again (``max_retries``);
   an expert that still loses a passing input is not ``repaired`` and is not combined.

The experts are combined at inference by the strategies of :mod:`.experts`, which says what each
guarantees.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ..encoding.errors import BigMError
from ..encoding.program import INF, Program
from ..encoding.weights import encode_weight_layer
from ..bounds.interval import interval_bounds
from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh
from ..solvers import Status, make_backend
from .check import ConstraintCheck, float32_outputs
from .constraints import RepairInputError, _labels, ensure
from .experts import ALL_CLASSES, DEFAULT_STRATEGY, STRATEGIES, ExpertsResult, check_strategy, combine
from .finetune import affine_layer_index, as_inputs, as_network, float32_slack
from .result import INFEASIBLE, REPAIRED, UNKNOWN, RepairReason, RepairResult, StageInfo

RANKS = ("gradient", "contribution")
TIE_BREAKS = (None, "l1", "linf")


# --------------------------------------------------------------------------- fault localisation
def margin_gradient(net: Network, li: int, X: np.ndarray, labels: np.ndarray):
    """``(g, H)``: the gradient (N, out) of ``y_wrong - y_label`` (the highest wrong output) with
    respect to the outputs of layer ``li`` (an Affine layer), and that layer's inputs (N, in)."""
    vals = net.forward_all(X)
    Y = vals[-1].copy()
    N = X.shape[0]
    rows = np.arange(N)
    Y[rows, labels] = -np.inf
    g = np.zeros_like(vals[-1])
    g[rows, Y.argmax(1)] += 1.0
    g[rows, labels] -= 1.0
    for i in range(len(net.layers) - 1, li, -1):
        layer = net.layers[i]
        if isinstance(layer, Affine):
            g = np.asarray(layer.W.T @ g.T).T
        elif isinstance(layer, ReLU):
            g = g * (vals[i] > 0)
        elif isinstance(layer, Sigmoid):
            g = g * vals[i + 1] * (1.0 - vals[i + 1])
        elif isinstance(layer, Tanh):
            g = g * (1.0 - vals[i + 1] ** 2)
    return g, vals[li]


def localise(net: Network, li: int, X: np.ndarray, labels: np.ndarray, k: int, rank: str = "gradient"):
    """``(mask, scores)``: the ``k`` weights of layer ``li`` with the highest score (see the
    module docstring; zero scores are never kept) as a bool (out, in) mask, and all scores."""
    g, H = margin_gradient(net, li, X, labels)
    scores = np.abs(g).T @ np.abs(H)
    if rank == "contribution":
        scores = scores * np.abs(net.layers[li].dense_W())
    flat = scores.reshape(-1)
    top = np.argsort(-flat, kind="stable")[:int(k)]
    top = top[flat[top] > 0]
    mask = np.zeros(flat.shape, dtype=bool)
    mask[top] = True
    return mask.reshape(scores.shape), scores


def _redundant(net: Network, li: int, X: np.ndarray, C: np.ndarray, d: np.ndarray, mask, bound: float):
    """(N,) bool: every row ``C[n] y <= d[n]`` holds for every change in the box (interval
    bounds of the network after layer ``li``)."""
    layer = net.layers[li]
    H = net.forward_all(X)[li]
    z = np.asarray(layer.W @ H.T).T + layer.b
    rad = bound * (np.abs(H) @ mask.T.astype(np.float64))
    rad = rad * (1 + 1e-12) + 1e-12 * np.abs(z)
    lo, hi = z - rad, z + rad
    rest = net.layers[li + 1:]
    if rest:
        bb = interval_bounds(Network(tuple(rest), (lo.shape[1],)), lo, hi)
        lo, hi = bb.lower[-1], bb.upper[-1]
    top = np.einsum("nkj,nj->nk", np.maximum(C, 0), hi) + np.einsum("nkj,nj->nk", np.minimum(C, 0), lo)
    return np.all(top < d, axis=1)


# --------------------------------------------------------------------------- one expert
def _strictly_first(Y: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) bool: the label's output is strictly larger than every other output."""
    rows = np.arange(Y.shape[0])
    others = np.where(np.arange(Y.shape[1]) == labels[:, None], -np.inf, Y)
    return Y[rows, labels] > others.max(1)


def _remaining(deadline) -> Optional[float]:
    return None if deadline is None else max(deadline - time.perf_counter(), 0.01)


def _solve(prog: Program, backend: str, change_cols: np.ndarray, deadline):
    """Solve the expert's MILP. With HiGHS, first the same program with the change fixed at 0
    (every ReLU fixed: presolve solves it) and that point given to HiGHS as the starting
    incumbent: without it HiGHS may spend the whole time limit without a feasible point when
    the big-M of the box are large."""
    solver = make_backend(prog, backend)
    if backend == "highs" and change_cols.size:
        lo, hi = prog.col_lo[change_cols].copy(), prog.col_hi[change_cols].copy()
        prog.set_col_bounds(change_cols, 0.0, 0.0)
        start = solver.solve(time_limit=_remaining(deadline))
        prog.set_col_bounds(change_cols, lo, hi)
        if start.x is not None:
            import highspy
            solver.sync()
            hs = highspy.HighsSolution()
            hs.col_value = np.asarray(start.x, dtype=np.float64).tolist()
            hs.value_valid = True
            solver.highs.setSolution(hs)
    return solver.solve(time_limit=_remaining(deadline))


def _solve_expert(net, li, key, idx, Xf, yf, Xp, yp, mask, *, bound, margin, tie_break, backend, deadline,
                  slack_factor, max_retries, t_start) -> RepairResult:
    K = net.n_outputs
    cons = ensure(yf, K, margin)
    s_f = float32_slack(net, Xf, cons, slack_factor)
    Np = 0 if Xp is None else Xp.shape[0]
    if Np:
        pcons = ensure(yp, K, 0.0, kind="keep")
        gap = pcons.slack(net.forward(Xp))
        s_p = np.minimum(float32_slack(net, Xp, pcons, slack_factor), 0.5 * gap)
        need = ~_redundant(net, li, Xp, pcons.C, pcons.d - s_p, mask, bound)
    k_eff = int(mask.sum())
    weights = np.argwhere(mask).tolist()
    stages, retries = [], 0
    base = dict(original=net, layer=li)

    def result(st, reason, message="", **kw):
        extra = {"class": key, "n_failing": int(len(idx)), "failing_indices": idx, "weights": weights,
                 "passing_total": Np, "retries": retries, **kw.pop("extra", {})}
        extra.setdefault("fixed", [])
        extra.setdefault("not_fixed", [int(i) for i in idx if int(i) not in set(extra["fixed"])])
        return RepairResult(st, reason, stages=stages, time=time.perf_counter() - t_start, message=message,
                            extra=extra, **base, **kw)

    while True:
        prog = Program(name=f"nnrepair[{key}]")
        try:
            we = encode_weight_layer(prog, net, li, Xf, delta=bound, weight_mask=mask, train_bias=False,
                                     name="nr")
            b = prog.add_binaries(Xf.shape[0], name="fixed")
            lo, hi = prog.col_lo, prog.col_hi
            for n in range(Xf.shape[0]):
                C, d = cons.C[n], cons.d[n] - s_f[n]
                ylo, yhi = lo[we.outputs[n]], hi[we.outputs[n]]
                M = np.maximum(np.maximum(C, 0) @ yhi + np.minimum(C, 0) @ ylo - d, 0.0) + 1e-6
                # C y + M b <= d + M : b = 1 forces the rows, b = 0 leaves them free
                prog.add_dense_rows(np.hstack([C, M[:, None]]), np.append(we.outputs[n], b[n]),
                                    np.full(M.size, -INF), d + M, name=f"failing[{n}]")
            n_enc = 0
            if Np and np.any(need):
                sel = np.flatnonzero(need)
                out = we.add_inputs(Xp[sel])
                for r, i in enumerate(sel):
                    prog.add_dense_rows(pcons.C[i], out[r], np.full(K - 1, -INF), pcons.d[i] - s_p[i],
                                        name=f"passing[{i}]")
                n_enc = int(sel.size)
        except BigMError as exc:
            return result(UNKNOWN, RepairReason.ENCODING, str(exc))
        if tie_break in ("l1", "linf") and k_eff:
            t = we.add_change_objective(tie_break)
            eps = 0.5 / ((k_eff if tie_break == "l1" else 1) * bound)
            prog.set_objective(np.concatenate([b, t]), np.concatenate([np.ones(b.size), np.full(t.size, -eps)]),
                               "max")
        else:
            prog.set_objective(b, np.ones(b.size), "max")
        t0 = time.perf_counter()
        sol = _solve(prog, backend, we.change_vars(), deadline)
        stages.append(StageInfo(f"max fixed (attempt {retries + 1})", sol.status.value, sol.objective, sol.bound,
                                time.perf_counter() - t0, 1))
        if sol.x is None:
            why = RepairReason.TIME_LIMIT if sol.status is Status.TIME_LIMIT else RepairReason.SOLVER_FAILED
            return result(UNKNOWN, why, sol.message)
        claimed = sol.x[b] > 0.5
        cand = we.apply(sol.x)
        y32 = float32_outputs(cand, Xf)
        slack32 = cons.slack(y32)
        fixed = np.all(slack32 >= 0, axis=1) & (y32.argmax(1) == yf)
        kept = _strictly_first(float32_outputs(cand, Xp), yp) if Np else np.zeros(0, dtype=bool)
        bad_f, bad_p = claimed & ~fixed, ~kept
        time_left = deadline is None or deadline - time.perf_counter() > 0.05
        if (bad_f.any() or bad_p.any()) and retries < max_retries and time_left:
            retries += 1
            s_f[bad_f] *= 4.0
            if Np:
                newly = bad_p & ~need
                need |= newly
                grow = bad_p & ~newly
                s_p[grow] = np.minimum(np.maximum(s_p[grow] * 4.0, 1e-9), 0.9 * gap[grow])
            continue
        break

    dW, db = we.decode(sol.x)
    chk = ConstraintCheck(np.all(slack32 >= 0, axis=1), slack32, cons.met(cand.forward(Xf)))
    optimal = sol.status is Status.OPTIMAL
    n_fixed = int(fixed.sum())
    extra = {"fixed": [int(i) for i in idx[fixed]], "not_fixed": [int(i) for i in idx[~fixed]],
             "claimed": [int(i) for i in idx[claimed]], "passing_kept": int(kept.sum()),
             "passing_encoded": n_enc, "n_binaries": int(prog.n_integer), "solver_status": sol.status.value,
             "fixable_upper_bound": None if sol.bound is None else float(np.floor(sol.bound + 1e-6))}
    kw = dict(dW=dW, db=db, norms={"linf": float(np.abs(dW).max(initial=0.0)), "l1": float(np.abs(dW).sum())},
              optimal=optimal, check=chk, extra=extra)
    if Np and not np.all(kept):
        return result(UNKNOWN, RepairReason.FLOAT32_CHECK_FAILED,
                      f"{int((~kept).sum())} passing inputs lose their label on the float32 export", **kw)
    if n_fixed == 0:
        if claimed.any():
            return result(UNKNOWN, RepairReason.FLOAT32_CHECK_FAILED,
                          "the inputs the MILP fixes fail on the float32 export", **kw)
        if optimal:
            return result(INFEASIBLE, RepairReason.NONE_FIXED, f"none of {len(idx)} failing inputs can be "
                          f"fixed with {k_eff} weights within |dW| <= {bound:g}", **kw)
        why = RepairReason.TIME_LIMIT if sol.status is Status.TIME_LIMIT else RepairReason.SOLVER_FAILED
        return result(UNKNOWN, why, "no failing input fixed", **kw)
    msg = "" if n_fixed == len(idx) else f"{len(idx) - n_fixed} of {len(idx)} failing inputs not fixed"
    if (bad_f := claimed & ~fixed).any():
        msg += f"; {int(bad_f.sum())} fixed by the MILP fail on the float32 export"
    if n_fixed == len(idx):
        reason = RepairReason.ALREADY_MET if not np.any(dW) else RepairReason.CHECKED
    else:
        reason = RepairReason.PARTIAL
    return result(REPAIRED, reason, msg.lstrip("; "), network=cand, **kw)


# --------------------------------------------------------------------------- the entry point
def _number(value, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RepairInputError(f"{what} must be a number, got {value!r}") from None


def _pair(net, pair, what):
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise RepairInputError(f"{what} must be a pair (inputs, labels)")
    X = as_inputs(net, pair[0], f"{what} inputs")
    y = _labels(pair[1], net.n_outputs, f"{what} labels")
    if y.shape != (X.shape[0],):
        raise RepairInputError(f"{X.shape[0]} {what} inputs but {y.size} {what} labels")
    return X, y


def nnrepair(network, failing, passing, *, layer: int = -1, k: int = 5, bound: Optional[float] = None,
             per_class: bool = True, margin: float = 1e-3, rank: str = "gradient", tie_break: Optional[str] = "linf",
             strategy: str = DEFAULT_STRATEGY, time_limit: Optional[float] = None, backend: str = "highs",
             slack_factor: float = 2.0, max_retries: int = 2) -> ExpertsResult:
    """Repair by experts (see the module docstring).

    Parameters
    ----------
    network : Network, torch module or path
    failing : (inputs, true labels)
        Misclassified inputs to fix (each expert tries those of its class).
    passing : (inputs, labels) or None
        Correctly classified inputs (float32 export) that every expert must keep (hard rows).
    layer : int
        Which Affine layer changes (0 the first, -1 the last).
    k : int
        Weights kept by the fault localisation, per expert.
    bound : float
        ``|dW| <= bound`` (big-M of the MILP); default ``max |W|`` of the layer.
    per_class : bool
        One expert per class of the failing inputs (keys = classes) or one for all (key -1).
    margin : float
        A fixed input's label beats every other output by ``margin`` on the float32 export.
    rank : 'gradient' or 'contribution'
        The fault-localisation score.
    tie_break : 'linf', 'l1' or None
        Among changes fixing the most inputs, prefer the smallest L∞ (default: the change spread
        evenly; it generalised better than L1 in the backdoor benchmark) or L1 change (sparse).
    strategy : 'naive', 'average', 'confidence' or 'votes'
        The default combination (:mod:`.experts`) of the result.
    time_limit : float, optional
        Seconds for all experts (split evenly among the experts still to solve).

    Returns
    -------
    ExpertsResult
    """
    t_start = time.perf_counter()
    net = as_network(network)
    li = affine_layer_index(net, layer)
    Xf, yf = _pair(net, failing, "failing")
    Xp = yp = None
    if passing is not None:
        Xp, yp = _pair(net, passing, "passing")
        Yp = float32_outputs(net, Xp)
        pred = Yp.argmax(1)
        if not np.all(_strictly_first(Yp, yp)):
            bad = np.flatnonzero(~_strictly_first(Yp, yp))
            raise RepairInputError(f"{bad.size} passing inputs are misclassified by the network (first: input "
                                   f"{int(bad[0])}, label {int(yp[bad[0]])}, predicted {int(pred[bad[0]])}); "
                                   "passing inputs must be correctly classified")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise RepairInputError(f"k must be a positive integer, got {k!r}")
    W = net.layers[li].dense_W()
    bound = _number(float(np.abs(W).max()) if bound is None else bound, "bound")
    if not (np.isfinite(bound) and bound > 0):
        raise RepairInputError(f"bound must be finite and > 0 (it is the big-M of the MILP), got {bound!r}")
    margin = _number(margin, "margin")
    if not (np.isfinite(margin) and margin >= 0):
        raise RepairInputError(f"margin must be finite and >= 0, got {margin!r}")
    if rank not in RANKS:
        raise RepairInputError(f"rank must be one of {RANKS}, got {rank!r}")
    if tie_break not in TIE_BREAKS:
        raise RepairInputError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    check_strategy(strategy)
    if time_limit is not None and not _number(time_limit, "time_limit") > 0:
        raise RepairInputError(f"time_limit must be > 0 seconds, got {time_limit!r}")
    deadline = None if time_limit is None else t_start + float(time_limit)

    groups = ({int(c): np.flatnonzero(yf == c) for c in np.unique(yf)} if per_class
              else {ALL_CLASSES: np.arange(yf.size)})
    experts = {}
    for i, (key, idx) in enumerate(groups.items()):
        sub = None
        if deadline is not None:
            sub = time.perf_counter() + max(deadline - time.perf_counter(), 0.0) / (len(groups) - i)
        mask, scores = localise(net, li, Xf[idx], yf[idx], int(k), rank)
        experts[key] = _solve_expert(net, li, key, idx, Xf[idx], yf[idx], Xp, yp, mask, bound=bound, margin=margin,
                                     tie_break=tie_break, backend=backend, deadline=sub, slack_factor=slack_factor,
                                     max_retries=max_retries, t_start=time.perf_counter())
        experts[key].extra["scores"] = [float(scores[j, c]) for j, c in np.argwhere(mask)]

    res = ExpertsResult(UNKNOWN, RepairReason.SOLVER_FAILED, net, experts, strategy, li, int(yf.size),
                        0 if Xp is None else int(Xp.shape[0]))
    res.extra = {"k": int(k), "bound": bound, "margin": margin, "rank": rank, "per_class": bool(per_class),
                 "tie_break": tie_break}
    cache = {}
    lf = res.expert_logits(Xf, cache)
    lp = None if Xp is None else res.expert_logits(Xp, cache)
    for s in STRATEGIES:
        res.combined[s] = {"failing_correct": int(np.sum(combine(*lf, s)[0] == yf)),
                           "passing_kept": 0 if lp is None else int(np.sum(combine(*lp, s)[0] == yp))}
    n_fixed = len(res.fixed)
    if res.networks:
        res.status = REPAIRED
        res.reason = RepairReason.CHECKED if n_fixed == yf.size else RepairReason.PARTIAL
        if n_fixed < yf.size:
            res.message = f"{yf.size - n_fixed} of {yf.size} failing inputs not fixed by their expert"
    elif all(r.status is INFEASIBLE for r in experts.values()):
        res.status, res.reason = INFEASIBLE, RepairReason.NONE_FIXED
    else:
        first = next(r for r in experts.values() if r.status is not INFEASIBLE)
        res.reason, res.message = first.reason, first.message
    res.time = time.perf_counter() - t_start
    return res


__all__ = ["nnrepair", "localise", "margin_gradient", "RANKS"]
