"""The shared loop of every two-copy question: maximise ``t`` in one program, check the candidate on
the real network, refine sigmoid/tanh segments where the candidate is spurious, and decide.

A question is a :class:`Search`: the program (one or more encoded network copies), the pieces
whose maximum is the quantity asked about (:mod:`.objective`: one linear objective per
coordinate and sign of an L∞ norm, or the single column of a joint norm encoding), the copies'
encodings, a ``check`` turning a solver point into a :class:`Candidate` recomputed on the real
network, and an optional ``threshold``.

What :func:`run_search` concludes:

* ``proved`` (threshold given): for every piece, the smallest proved upper bound over its solves
  is ``<= threshold``. Every solve's bound is valid for the real networks: the abstraction contains every
  real value (ReLU exact, sigmoid/tanh envelopes sound), refinement only removes abstract points.
* ``refuted`` (threshold given): a candidate confirmed on the real network with value ``>
  threshold``.
* ``proved`` (no threshold): every piece's proved bound lies within ``gap_tol * max(1, |value|)``
  of the best confirmed witness's value: the maximum is in ``[value, bound]`` (``bound`` the
  largest piece bound).
* otherwise ``unknown`` with the reason; the best bound and value found are still reported.

The bounds are MILP dual bounds relaxed by the backend's scaled margin
(:func:`cegarnn.solvers.base.scaled_margin`): as trustworthy as the solver's branch and bound,
not a rigorous certificate (docs/ARCHITECTURE.md, "What a proof covers").
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..encoding import NetworkEncoding, Program, decode, encode_network
from ..solvers import Status, make_backend
from .check import activation_gaps
from .inputs import InvarianceOptions
from .result import PROVED, REFUTED, UNKNOWN, InvarianceReason, InvarianceResult, InvarianceStats, Witness

R = InvarianceReason
#: solver statuses after which ``Solution.bound`` is a valid (if weak) dual bound
_BOUND_OK = (Status.OPTIMAL, Status.INTERRUPTED, Status.TIME_LIMIT, Status.ITERATION_LIMIT)


@dataclass
class Candidate:
    """A solver point recomputed on the real network: ``value`` (the objective, float64 IR),
    ``confirmed`` (the constraints hold within the stated tolerances on the IR and the reference),
    the ``witness``, and ``why`` it is not confirmed."""

    value: float
    confirmed: bool
    witness: Witness
    why: str = ""


@dataclass
class Search:
    """One maximisation question in one program (see the module docstring): its maximum is the
    largest of the ``pieces`` (:class:`~.objective.Piece`), each maximised in turn."""

    kind: str
    program: Program
    encodings: list
    pieces: list
    check: Callable[[np.ndarray], Candidate]
    threshold: Optional[float]
    initial: Optional[Candidate] = None       # a confirmed candidate found before any solve (sampling)


class Clock:
    """The question's deadline and the stats it fills."""

    def __init__(self, opts: InvarianceOptions, stats: Optional[InvarianceStats] = None):
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + opts.time_limit
        self.stats = stats or InvarianceStats(solver=opts.backend)

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def finish(self) -> InvarianceStats:
        self.stats.wall_time = time.perf_counter() - self.t0
        return self.stats


def encode_copy(program: Program, network, bounds, name: str, input_vars=None) -> NetworkEncoding:
    """One copy of ``network`` in ``program`` (ReLU exact, one sigmoid/tanh segment per neuron)."""
    return encode_network(program, network, bounds, input_vars=input_vars, relu="exact", name=name)


def close_outputs(program: Program, a: NetworkEncoding, b: NetworkEncoding, tau: float, name: str) -> np.ndarray:
    """Rows ``-tau <= f_a - f_b <= tau`` on the two copies' outputs (``tau = 0``: equality)."""
    oa, ob = a.output_vars, b.output_vars
    m = len(oa)
    rows = np.concatenate([np.arange(m), np.arange(m)])
    return program.add_rows(rows, np.concatenate([oa, ob]), np.concatenate([np.ones(m), -np.ones(m)]),
                            np.full(m, -tau), np.full(m, tau), name=name)


def _backend(program: Program, opts: InvarianceOptions):
    extra = {"presolve": opts.presolve, "threads": opts.threads} if opts.backend.split(":")[0] == "highs" else {}
    return make_backend(program, opts.backend, **extra)


def _refine(encodings: list, values: list, top_k: int) -> tuple[int, int]:
    """Breakpoints at the candidate's pre-activations for the ``top_k`` worst neurons of every
    copy; returns (neurons with an abstraction error, neurons re-encoded)."""
    seen = changed = 0
    for enc, vals in zip(encodings, values):
        gaps = activation_gaps(enc, vals)
        seen += len(gaps)
        if gaps:
            changed += enc.refine_many([(layer, n, t) for _, layer, n, t in gaps[:top_k]])
    return seen, changed


@dataclass
class _PieceState:
    bound: float = np.inf            # smallest proved upper bound on the piece's maximum
    closed: bool = False
    reason: Optional[InvarianceReason] = None
    why: str = ""


def run_search(search: Search, opts: InvarianceOptions, clock: Clock, settings: dict) -> InvarianceResult:
    """Solve every piece, check candidates, refine, decide (module docstring). The time left is
    shared fairly among the open pieces; pieces stopped by their share get a second pass with
    whatever time is left. Never raises for a solver failure."""
    st = clock.stats
    th = search.threshold
    solver = _backend(search.program, opts)
    states = [_PieceState() for _ in search.pieces]
    best: list = [search.initial if search.initial is not None and search.initial.confirmed else None]

    def done(status, reason, message=""):
        bound = max(p.bound for p in states)
        b = best[0]
        return InvarianceResult(search.kind, status, reason, threshold=th,
                                bound=None if not np.isfinite(bound) else float(bound),
                                value=None if b is None else b.value, witness=None if b is None else b.witness,
                                settings=settings, stats=clock.finish(), message=message)

    if th is not None and best[0] is not None and best[0].value > th:
        return done(REFUTED, R.WITNESS_CONFIRMED)
    for second_pass in (False, True):
        todo = [i for i, p in enumerate(states) if not p.closed and (not second_pass or p.reason == R.TIME_LIMIT)]
        for n_done, i in enumerate(todo):
            share = clock.remaining() / (len(todo) - n_done)
            outcome = _solve_piece(search, solver, i, states[i], best, opts, clock, min(share, clock.remaining()))
            if outcome is REFUTED:
                return done(REFUTED, R.WITNESS_CONFIRMED)
        if all(p.closed for p in states) or clock.remaining() <= 0:
            break
    if all(p.closed for p in states):
        if th is not None:
            return done(PROVED, R.BOUND_AT_MOST_THRESHOLD)
        return done(PROVED, R.MAXIMUM_ENCLOSED)
    open_ = [p for p in states if not p.closed]
    first = open_[0]
    return done(UNKNOWN, first.reason or R.TIME_LIMIT,
                f"{len(open_)} of {len(states)} objective piece(s) open; {first.why}".rstrip("; "))


def _gap(value: float, opts: InvarianceOptions) -> float:
    return opts.gap_tol * max(1.0, abs(value))


def _solve_piece(search: Search, solver, i: int, ps: _PieceState, best: list, opts: InvarianceOptions,
                 clock: Clock, budget: float):
    """Maximise piece ``i`` within ``budget`` seconds: closes it (its bound at most the threshold,
    or within the gap of the best confirmed value), returns ``REFUTED`` for a confirmed witness
    beyond the threshold, or leaves it open with a reason."""
    st = clock.stats
    th = search.threshold
    piece = search.pieces[i]
    search.program.set_objective(piece.cols, piece.coeffs, "max", piece.offset)
    end = time.perf_counter() + budget
    while True:
        left = end - time.perf_counter()
        if left <= 0:
            ps.reason = R.TIME_LIMIT
            return None
        b = best[0]
        cut = th if th is not None else (None if b is None else b.value + 0.5 * _gap(b.value, opts))
        st.binaries = search.program.n_integer
        sol = solver.solve(time_limit=left, target=th, cutoff=cut,
                           mip_gap=1e-6 if th is not None else min(1e-4, opts.gap_tol / 10))
        st.solver_calls += 1
        st.nodes += int(sol.node_count)
        st.time_solver += sol.time
        st.last_solver_status = sol.status.value
        if sol.status in _BOUND_OK and sol.bound is not None and not np.isnan(sol.bound):
            ps.bound = min(ps.bound, float(sol.bound))
        if cut is not None and ps.bound <= cut:
            ps.closed = True
            return None
        if sol.x is None:
            if sol.status == Status.TIME_LIMIT or end - time.perf_counter() <= 0:
                ps.reason = R.TIME_LIMIT
            else:
                ps.reason, ps.why = R.SOLVER_FAILED, f"solver: {sol.status.value} ({sol.message})"
            return None
        t1 = time.perf_counter()
        cand = search.check(sol.x)
        st.time_checks += time.perf_counter() - t1
        if cand.confirmed and (best[0] is None or cand.value > best[0].value):
            best[0] = cand
        b = best[0]
        if th is not None and b is not None and b.value > th:
            return REFUTED
        if th is None and b is not None and sol.status == Status.OPTIMAL and ps.bound - b.value <= _gap(b.value, opts):
            ps.closed = True
            return None
        ps.why = cand.why if not cand.confirmed else (
            f"candidate value {cand.value:.6g} on the real network, solver objective {sol.objective:.6g}")
        if sol.status == Status.TIME_LIMIT or end - time.perf_counter() <= 0:
            ps.reason = R.TIME_LIMIT
            return None
        if st.rounds >= opts.max_rounds:
            ps.reason = R.REFINEMENT_LIMIT
            return None
        values = [decode(sol.x, enc) for enc in search.encodings]
        seen, changed = _refine(search.encodings, values, opts.top_k)
        if seen == 0:
            ps.reason = R.NOT_CONFIRMED
            return None
        if changed == 0:
            ps.reason = R.REFINEMENT_EXHAUSTED
            return None
        st.rounds += 1
        st.breakpoints_added += changed


__all__ = ["Candidate", "Clock", "Search", "close_outputs", "encode_copy", "run_search"]
