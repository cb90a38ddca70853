"""The CEGAR verifier and its baselines.

Flow for one problem (``method='cegar'``)::

    attack (samples + PGD) ──► falsified
    work queue of input boxes ──► batched CROWN bounds ──► closed (proved) | centre check
        undecided box ──► abstraction (sigmoid: one segment, ReLU exact) ──► LP/MILP per disjunct
            margin > tol proved        ──► box closed
            candidate confirmed        ──► falsified
            candidate spurious         ──► refine: split sigmoid segments at its pre-activations
                                           (incremental, same live solver) or split the box along
                                           the dimension that matters most for the candidate

Baselines share every part: ``crown`` (bounds only), ``bab-crown`` (input splitting with bounds
only), ``lp`` (one abstraction solve, no refinement), ``milp-fixed`` (k uniform segments up front,
no refinement); ``marabou`` hands the box to the Marabou SMT solver (:mod:`.marabou`).
Every method answers ``verified`` only from a proof, ``falsified`` only with a
counterexample confirmed on the IR and the original model, else ``unknown`` with the reason.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ..bounds import compute_bounds
from ..bounds.box import LayerBounds
from ..bounds.rounding import output_padding
from ..encoding import BigMError
from ..encoding.program import Program
from ..network.ir import Affine, Network, Sigmoid, Tanh, sigmoid
from ..solvers.base import Status, make_backend
from ..specs.problem import Problem
from .attack import pgd_attack, random_attack
from . import marabou
from .confirm import confirm, first_confirmed
from .result import FALSIFIED, UNKNOWN, VERIFIED, Result, Stats

log = logging.getLogger("cegarnn.verify")

METHODS = ("cegar", "lp", "milp-fixed", "crown", "bab-crown", "marabou")
POLICIES = ("auto", "input", "segments")


@dataclass(frozen=True)
class Options:
    """Verifier options (plain values; Hydra configs map onto these)."""

    time_limit: float = 60.0
    bounds: str = "auto"             # interval | crown | alpha-crown | lp | auto (crown when splitting the
                                     # input, alpha-crown for the one root box of the segments policy)
    backend: str = "highs"
    policy: str = "auto"             # auto: input splitting when n_free <= max_split_dims, else segments
    max_split_dims: int = 16
    top_k: int = 20                  # sigmoid neurons refined per round
    max_rounds: int = 2              # input policy: segment-refinement rounds on a box before splitting it
    fixed_segments: int = 4          # for milp-fixed
    tol: float = 1e-6                # a margin counts as proved only if > tol
    max_iterations: int = 1_000_000  # boxes processed + refinement rounds
    batch_size: int = 64             # boxes bounded per CROWN call
    solver_min_depth: int = -1       # input policy: LP/MILP only on boxes at depth >= this (-1: twice the number of free inputs)
    solver_time_share: float = 0.1   # input policy: solver time stays <= this share of the elapsed time, the call in progress included (share scaled by (1 + boxes it closed) / (1 + boxes it tried))
    solve_time_cap: float = 2.0      # input policy: seconds per solver call on one box (then split it)
    relu_exact_max: int = 40         # input policy: exact ReLUs (binaries) only if a box has <= this many unstable
    attack: bool = True
    threads: int = 1                 # torch and BLAS threads during the run (more slowed CROWN 8x on a busy 2-core machine)
    attack_restarts: int = 8
    attack_steps: int = 40
    seed: int = 0
    debug: bool = False              # assert the progress guarantee after every refinement


class _Timeout(Exception):
    pass


@dataclass
class _Ctx:
    problem: Problem
    opts: Options
    start: float
    stats: Stats
    spec_net: Network                # network with the unsafe rows appended: outputs C_all y - d_all
    groups: list                     # row indices of each disjunct
    sig_layers: list                 # indices of sigmoid/tanh layers
    policy: str = "input"            # resolved refinement policy: 'input' or 'segments'
    torch_spec: Optional[torch.nn.Module] = None
    exec_net: Optional[Network] = None   # problem.network with layers aligned to spec_net's (for the padding)
    C: Optional[np.ndarray] = None       # stacked unsafe rows

    def remaining(self) -> float:
        return self.opts.time_limit - (time.perf_counter() - self.start)

    def check_time(self):
        if self.remaining() <= 0:
            raise _Timeout()


# --------------------------------------------------------------------------- bounds helpers
def _bounds(ctx: _Ctx, lo: np.ndarray, hi: np.ndarray, method: Optional[str] = None) -> LayerBounds:
    t = time.perf_counter()
    method = method or ctx.opts.bounds
    if method == "auto":
        method = "crown" if ctx.policy == "input" else "alpha-crown"
    b = compute_bounds(ctx.spec_net, lo, hi, method=method)
    ctx.stats.time_bounds += time.perf_counter() - t
    ctx.stats.boxes_bounded += lo.shape[0] if lo.ndim == 2 else 1
    return b


def _padding(ctx: _Ctx, bounds: LayerBounds) -> np.ndarray:
    """Per stacked unsafe row (and per box of a batch): how far ``C_i y`` of the model as executed
    (float32 unless the problem says otherwise) can be from the float64 IR's on the box; a proof
    needs every row's lower bound above it (plus ``tol``). See :func:`output_padding`."""
    t = time.perf_counter()
    pad = output_padding(ctx.exec_net, ctx.C, bounds.lower, bounds.upper,
                         ctx.problem.precision)
    ctx.stats.time_bounds += time.perf_counter() - t
    return pad


def _disjunct_lower(ctx: _Ctx, bounds: LayerBounds) -> np.ndarray:
    """Lower bounds on each disjunct's margin, minus the execution padding where it matters
    (computed only for boxes whose unpadded bounds would exclude every disjunct): (B, n_disj)."""
    row_lower = bounds.lower[-1]
    single = row_lower.ndim == 1
    rl = row_lower[None] if single else row_lower
    lb = ctx.problem.unsafe.disjunct_lower_bounds(rl)
    close = np.all(lb > ctx.opts.tol, axis=-1)
    if np.any(close):
        idx = np.flatnonzero(close)
        sub = LayerBounds([np.atleast_2d(v)[idx] for v in bounds.lower],
                          [np.atleast_2d(v)[idx] for v in bounds.upper], bounds.method)
        lb[idx] = ctx.problem.unsafe.disjunct_lower_bounds(rl[idx] - _padding(ctx, sub))
    return lb[0] if single else lb


def _proved(ctx: _Ctx, bounds: LayerBounds) -> np.ndarray:
    """True (per box) where the bounds exclude every disjunct by more than ``tol`` plus the padding."""
    return np.all(_disjunct_lower(ctx, bounds) > ctx.opts.tol, axis=-1)


def _open_disjuncts(ctx: _Ctx, bounds: LayerBounds) -> list[int]:
    """Disjuncts not yet excluded by the bounds (padded), most promising (lowest bound) first."""
    lb = ctx.problem.unsafe.disjunct_lower_bounds(bounds.lower[-1] - _padding(ctx, bounds))
    return [int(j) for j in np.argsort(lb, kind="stable") if lb[j] <= ctx.opts.tol]


# --------------------------------------------------------------------------- abstraction + solver
class BoxAbstraction:
    """The LP/MILP abstraction of the spec network on one input box, kept live in one backend.

    Sigmoid/tanh neurons start with ``segments`` uniform segments each (1 = pure LP envelope),
    ReLUs are exact (big-M from the box's bounds). ``refine`` adds breakpoints incrementally.
    """

    def __init__(self, ctx: _Ctx, bounds: LayerBounds, segments: Optional[int] = None, relu: str = "exact"):
        from ..encoding.builder import encode_network
        t = time.perf_counter()
        self.ctx = ctx
        self.relu = relu
        self.program = Program(name=ctx.problem.name)
        kw = {} if not segments or segments <= 1 else {"segments": int(segments)}
        self.enc = encode_network(self.program, ctx.spec_net, bounds, relu=relu, **kw)
        out = self.enc.value_vars[-1]
        self.t_vars = []
        for g in ctx.groups:
            tj = self.program.add_vars(1, name="margin")
            k = len(g)
            rows = np.concatenate([np.arange(k), np.arange(k)])
            cols = np.concatenate([out[g], np.repeat(tj, k)])
            vals = np.concatenate([np.ones(k), -np.ones(k)])
            self.program.add_rows(rows, cols, vals, np.full(k, -np.inf), np.zeros(k), name="margin_rows")
            self.t_vars.append(int(tj[0]))
        # HiGHS' MIP presolve ignores the time limit on these models (measured: 13.9 s under a 2 s
        # limit on a demo box, 40 binaries); without it the limit holds and the root LP is as fast.
        # The RENS/RINS heuristics solve sub-MIPs whose presolve ignores it too (measured: 8.9 s of
        # sub-MIP presolve under a 4.5 s limit, shift experiment), so they are off as well.
        extra = {"presolve": False, "mip_heuristic_run_rens": False,
                 "mip_heuristic_run_rins": False} if ctx.opts.backend == "highs" else {}
        self.solver = make_backend(self.program, ctx.opts.backend, **extra)
        self.refined: dict = {}      # (layer, neuron) -> list of breakpoints added by refinement
        ctx.stats.time_encode += time.perf_counter() - t

    def solve(self, j: int, cap: Optional[float] = None, need: Optional[float] = None):
        """Minimise the margin of disjunct j (at most ``cap`` seconds); the search may stop once the
        bound exceeds ``need`` (default ``tol``: what a proof needs).
        Returns (solution, proved lower bound on the margin or None, decoded values or None)."""
        ctx = self.ctx
        ctx.check_time()
        need = ctx.opts.tol if need is None else need
        self.program.set_objective([self.t_vars[j]], [1.0], "min")
        t = time.perf_counter()
        limit = ctx.remaining() if cap is None else min(ctx.remaining(), cap)
        sol = self.solver.solve(time_limit=max(limit, 0.01), target=-ctx.opts.tol, cutoff=need)
        ctx.stats.time_solver += time.perf_counter() - t
        ctx.stats.solver_calls += 1
        ctx.stats.max_binaries = max(ctx.stats.max_binaries, self.program.n_integer)
        bound = None
        if sol.status == Status.INFEASIBLE:
            bound = np.inf
        elif sol.status == Status.OPTIMAL and sol.bound is not None:
            bound = sol.bound
        elif sol.bound is not None and sol.status == Status.INTERRUPTED:
            bound = sol.bound
        values = None
        if sol.x is not None:
            values = [sol.x[v] for v in self.enc.value_vars]
        return sol, bound, values

    def sigmoid_gaps(self, values) -> list[tuple[float, int, int, float]]:
        """(gap, layer, neuron, pre-activation) for every sigmoid/tanh neuron, largest gap first."""
        out = []
        for i in self.ctx.sig_layers:
            x, y = values[i], values[i + 1]
            f = sigmoid(x) if isinstance(self.ctx.spec_net.layers[i], Sigmoid) else np.tanh(x)
            gap = np.abs(y - f)
            for n in np.flatnonzero(gap > 1e-7):
                out.append((float(gap[n]), i, int(n), float(x[n])))
        out.sort(reverse=True)
        return out

    def relu_gap(self, values) -> float:
        """Largest |y - relu(x)| of the candidate (non-zero only under the triangle relaxation)."""
        from ..network.ir import ReLU
        gaps = [np.max(np.abs(values[i + 1] - np.maximum(values[i], 0)), initial=0.0)
                for i in self.ctx.spec_net.activation_indices(ReLU)]
        return float(max(gaps, default=0.0))

    def refine(self, gaps, k: int) -> list:
        chosen = [(i, n, t) for _, i, n, t in gaps[:k]]
        if chosen:
            self.enc.refine_many(chosen)
            for i, n, t in chosen:
                self.refined.setdefault((i, n), []).append(t)
            self.ctx.stats.breakpoints_added += len(chosen)
        return chosen

    def check_progress(self, values):
        """Debug: a refined point can never come back (envelopes are exact at breakpoints)."""
        for (i, n), ts in self.refined.items():
            x, y = values[i][n], values[i + 1][n]
            f = sigmoid(np.array([x]))[0] if isinstance(self.ctx.spec_net.layers[i], Sigmoid) else np.tanh(x)
            for t in ts:
                if abs(x - t) <= 1e-9:
                    assert abs(y - f) <= 1e-5, f"refined point returned: neuron {(i, n)} at {x}: y={y}, f={f}"


@dataclass(order=True)
class _Box:
    priority: float
    seq: int
    lo: np.ndarray = field(compare=False)
    hi: np.ndarray = field(compare=False)
    depth: int = field(compare=False, default=0)


def _candidate_split_dim(ctx: _Ctx, box: _Box, z: np.ndarray, j: int) -> int:
    """Dimension maximising width × |d margin_j / d z| at the candidate."""
    width = box.hi - box.lo
    if ctx.torch_spec is None:
        ctx.torch_spec = ctx.spec_net.to_torch()
    zt = torch.as_tensor(z, dtype=torch.float64).reshape(1, -1).requires_grad_(True)
    g = ctx.groups[j]
    out = ctx.torch_spec(zt)[0, torch.as_tensor(g)]
    (grad,) = torch.autograd.grad(out.max(), zt)
    score = width * np.abs(grad.numpy().reshape(-1))
    if not np.any(score > 0):
        score = width
    return int(np.argmax(score))


def _split(box: _Box, dim: int, counter) -> list[_Box]:
    mid = (box.lo[dim] + box.hi[dim]) / 2
    lo2, hi1 = box.lo.copy(), box.hi.copy()
    hi1[dim] = mid
    lo2[dim] = mid
    return [_Box(box.priority, next(counter), box.lo.copy(), hi1, box.depth + 1),
            _Box(box.priority, next(counter), lo2, box.hi.copy(), box.depth + 1)]


# --------------------------------------------------------------------------- per-box solving
def _solve_box(ctx: _Ctx, box: _Box, bounds: LayerBounds, refine: bool, segments: Optional[int] = None,
               box_time: Optional[float] = None):
    """Decide one box with the abstraction (input policy: in at most ``box_time`` seconds of
    solver calls, else 'split'). Returns ('closed'|'split'|'unknown', payload)."""
    box_end = None if box_time is None else time.perf_counter() + box_time
    open_j = _open_disjuncts(ctx, bounds)
    if not open_j:
        return "closed", None
    pad = _padding(ctx, bounds)
    need = {j: ctx.opts.tol + float(np.max(pad[g])) for j, g in enumerate(ctx.groups)}
    relu = "exact"
    if ctx.policy == "input" and refine and bounds.unstable_relus(ctx.spec_net) > ctx.opts.relu_exact_max:
        relu = "triangle"
    try:
        abst = BoxAbstraction(ctx, bounds, segments, relu)
    except BigMError as exc:              # bounds too large for a meaningful big-M encoding
        return "unknown", f"encoding: {exc}"
    for j in open_j:
        rounds = 0
        while True:
            cap = ctx.opts.solve_time_cap if (refine and ctx.policy == "input") else None
            if box_end is not None:
                cap = min(cap if cap is not None else np.inf, box_end - time.perf_counter())
                if cap <= 0.01:
                    ctx.stats.trajectory.append({"box_depth": box.depth, "disjunct": j, "move": "input-split",
                                                 "reason": "solver budget spent"})
                    return "split", None
            sol, bound, values = abst.solve(j, cap, need[j])
            ctx.stats.iterations += 1
            if bound is not None and bound > need[j]:
                break                                  # disjunct j excluded on this box
            if values is None:
                if refine and ctx.policy == "input" and sol.status == Status.TIME_LIMIT:
                    ctx.stats.trajectory.append({"box_depth": box.depth, "disjunct": j, "move": "input-split",
                                                 "reason": "solver time cap"})
                    return "split", None
                if sol.status == Status.TIME_LIMIT or ctx.remaining() <= 0:
                    raise _Timeout()
                return "unknown", f"solver returned {sol.status.value} without a solution"
            z = values[0]
            t = time.perf_counter()
            cex = confirm(ctx.problem, z, "solver")
            ctx.stats.time_checks += time.perf_counter() - t
            if cex is not None:
                return "falsified", cex
            if not refine:
                return "unknown", "spurious counterexample and no refinement"
            gaps = abst.sigmoid_gaps(values)
            entry = {"box_depth": box.depth, "disjunct": j, "candidate_margin": float(sol.objective or 0.0)}
            if ctx.opts.debug and rounds > 0:
                abst.check_progress(values)
            sig_dominant = bool(gaps) and gaps[0][0] >= abst.relu_gap(values)
            if gaps and (ctx.policy == "segments" or (rounds < ctx.opts.max_rounds and sig_dominant)):
                chosen = abst.refine(gaps, ctx.opts.top_k)
                entry.update(move="segments", neurons=len(chosen), max_gap=gaps[0][0])
                ctx.stats.trajectory.append(entry)
                rounds += 1
                if ctx.stats.iterations >= ctx.opts.max_iterations:
                    return "unknown", "iteration limit"
                continue
            entry.update(move="input-split")
            ctx.stats.trajectory.append(entry)
            return "split", (z, j)
    return "closed", None


# --------------------------------------------------------------------------- main entry
def run(problem: Problem, method: str = "cegar", options: Optional[Options] = None) -> Result:
    """Run one method on one problem; see the module docstring."""
    opts = options or Options()
    if opts.threads < 1:
        raise ValueError("threads must be >= 1")
    from threadpoolctl import threadpool_limits
    old_threads = torch.get_num_threads()
    torch.set_num_threads(opts.threads)
    try:
        with threadpool_limits(limits=opts.threads):   # numpy's BLAS too (10x slower when oversubscribed)
            return _run(problem, method, opts)
    finally:
        torch.set_num_threads(old_threads)


def _run(problem: Problem, method: str, opts: Options) -> Result:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if opts.policy not in POLICIES:
        raise ValueError(f"unknown policy {opts.policy!r}; choose one of {', '.join(POLICIES)}")
    if not opts.time_limit > 0:
        raise ValueError("time_limit must be > 0 seconds")
    if method == "marabou":
        if not marabou.available():
            raise RuntimeError(marabou.INSTALL_HINT)
    start = time.perf_counter()
    stats = Stats()
    C, d, groups = problem.unsafe.stacked
    spec_net = problem.network.with_output_layer(C, -d)
    sig_layers = spec_net.activation_indices((Sigmoid, Tanh))
    policy = opts.policy if opts.policy != "auto" else (
        "input" if problem.n_free <= opts.max_split_dims else "segments")
    exec_net = problem.network.simplified()
    if len(exec_net.layers) != len(spec_net.layers) - (0 if isinstance(exec_net.layers[-1], Affine) else 1):
        raise AssertionError("spec network layers do not align with the problem network's")
    ctx = _Ctx(problem, opts, start, stats, spec_net, groups, sig_layers, policy, exec_net=exec_net, C=C)

    def done(status, reason="", cex=None):
        stats.wall_time = time.perf_counter() - start
        return Result(status, reason, method, cex, stats, problem.name)

    try:
        if opts.attack:
            t = time.perf_counter()
            cex = random_attack(problem, seed=opts.seed) or pgd_attack(
                problem, restarts=opts.attack_restarts, steps=opts.attack_steps, seed=opts.seed)
            stats.time_attack += time.perf_counter() - t
            if cex is not None:
                return done(FALSIFIED, "counterexample found by " + cex.found_by, cex)
        ctx.check_time()
        if method == "marabou":
            if ctx.remaining() < 1.0:       # Marabou's timeout is in whole seconds
                raise _Timeout()
            # Marabou proves on the IR: ask it about the unsafe region grown by the padding of the
            # whole box, so that its proof covers the executed model too
            pad = _padding(ctx, _bounds(ctx, problem.lower, problem.upper, "crown"))
            padded = problem.network.with_output_layer(C, -(d + pad))
            ctx.check_time()
            return marabou.solve(problem, padded, groups, marabou.whole_seconds(ctx.remaining()), stats,
                                 method, start, stop_at=start + opts.time_limit + 0.1)
        if method in ("crown", "lp", "milp-fixed"):
            b = _bounds(ctx, problem.lower, problem.upper)
            if _proved(ctx, b):
                stats.boxes_closed_by_bounds += 1
                return done(VERIFIED, f"proved by {b.method} bounds")
            if method == "crown":
                return done(UNKNOWN, f"{b.method} bounds do not prove the property")
            seg = opts.fixed_segments if method == "milp-fixed" else None
            status, payload = _solve_box(ctx, _Box(0, 0, problem.lower, problem.upper), b, refine=False,
                                         segments=seg)
            if status == "closed":
                return done(VERIFIED, "proved by the solver")
            if status == "falsified":
                return done(FALSIFIED, "solver counterexample confirmed", payload)
            return done(UNKNOWN, payload)
        return _branch_and_refine(ctx, method, done)
    except _Timeout:
        return done(UNKNOWN, "time limit")


def _branch_and_refine(ctx: _Ctx, method: str, done) -> Result:
    opts, stats, problem = ctx.opts, ctx.stats, ctx.problem
    counter = itertools.count()
    queue: list[_Box] = [_Box(0.0, next(counter), problem.lower.copy(), problem.upper.copy(), 0)]
    use_solver = method == "cegar"
    split_allowed = method == "bab-crown" or ctx.policy == "input"
    unknown_reason = None
    solver_tried = solver_closed = 0
    while queue:
        ctx.check_time()
        if stats.iterations >= opts.max_iterations:
            return done(UNKNOWN, "iteration limit")
        n = min(opts.batch_size, len(queue))
        if stats.boxes_bounded:
            # a batch must fit in the time left: one CROWN batch of 64 boxes on the CNN took 2 s,
            # and the time limit is only checked between batches
            per_box = stats.time_bounds / stats.boxes_bounded
            n = max(1, min(n, int(ctx.remaining() / max(per_box, 1e-9))))
        batch = [heapq.heappop(queue) for _ in range(n)]
        lo = np.stack([b.lo for b in batch])
        hi = np.stack([b.hi for b in batch])
        bnds = _bounds(ctx, lo, hi)
        disj_lower = _disjunct_lower(ctx, bnds)                               # (B, n_disjuncts)
        proved = np.all(disj_lower > opts.tol, axis=-1)
        stats.boxes_closed_by_bounds += int(proved.sum())
        stats.iterations += len(batch)
        todo = [k for k in range(len(batch)) if not proved[k]]
        if not todo:
            continue
        t = time.perf_counter()
        cex = first_confirmed(problem, (lo[todo] + hi[todo]) / 2, "box-centre")
        stats.time_checks += time.perf_counter() - t
        if cex is not None:
            return done(FALSIFIED, "counterexample at a box centre", cex)
        for k in todo:
            box = batch[k]
            worst = float(np.min(disj_lower[k]))
            weakest = int(np.argmin(disj_lower[k]))     # disjunct the bounds are furthest from excluding
            elapsed = time.perf_counter() - ctx.start
            min_depth = opts.solver_min_depth if opts.solver_min_depth >= 0 else 2 * problem.n_free
            # the solver's time share shrinks while it fails to close boxes (on easy latent boxes
            # CROWN bisection closes them ~100x cheaper than one LP), and recovers when it succeeds
            share = opts.solver_time_share * (1 + solver_closed) / (1 + solver_tried)
            # and a call may only spend what the share has earned so far: solver time stays within
            # share x elapsed, the call in progress included (a 1.65 s first call in a 5 s run lost
            # an instance that bisection alone proved in 3 s)
            budget = min(opts.solve_time_cap, share * elapsed - stats.time_solver)
            if use_solver and (not split_allowed or (box.depth >= min_depth and budget >= 0.05)):
                status, payload = _solve_box(ctx, box, bnds.pick(k), refine=True,
                                             box_time=budget if split_allowed else None)
                solver_tried += 1
                if status == "closed":
                    solver_closed += 1
                    continue
                if status == "falsified":
                    return done(FALSIFIED, "solver counterexample confirmed", payload)
                if status == "unknown" and not split_allowed:
                    return done(UNKNOWN, payload)
                if status == "split" and not split_allowed:
                    return done(UNKNOWN, "segment refinement exhausted and input splitting disabled")
                if status == "split" and payload is not None:
                    z, j = payload
                    dim = _candidate_split_dim(ctx, box, z, j)
                elif status == "split":
                    dim = _candidate_split_dim(ctx, box, (box.lo + box.hi) / 2, weakest)
                else:
                    unknown_reason = payload
                    dim = int(np.argmax(box.hi - box.lo))
            else:
                if not split_allowed:
                    return done(UNKNOWN, "bounds do not prove the property and splitting is disabled")
                dim = _candidate_split_dim(ctx, box, (box.lo + box.hi) / 2, weakest)
            if np.max(box.hi - box.lo) <= 1e-9:
                return done(UNKNOWN, "box too small to split further" + (f"; {unknown_reason}" if unknown_reason else ""))
            stats.boxes_split += 1
            for child in _split(box, dim, counter):
                child.priority = worst      # most violated boxes first
                heapq.heappush(queue, child)
    return done(VERIFIED, "every sub-box proved" if stats.boxes_split else "proved")
