"""Branch and refine over input boxes: the box queue, batched bounds, box-centre checks, the
split (dimension chosen by a candidate), and how much time the LP/MILP solver may take."""
from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from .box_solve import BoxKind, BoxOutcome, solve_box
from .confirm import first_confirmed
from .context import RunContext
from .result import FALSIFIED, UNKNOWN, VERIFIED, Reason, Result


@dataclass(order=True)
class Box:
    priority: float
    seq: int
    lo: np.ndarray = field(compare=False)
    hi: np.ndarray = field(compare=False)
    depth: int = field(compare=False, default=0)


def split(box: Box, dim: int, counter) -> list[Box]:
    """The two halves of ``box`` at the midpoint of ``dim``."""
    mid = (box.lo[dim] + box.hi[dim]) / 2
    lo2, hi1 = box.lo.copy(), box.hi.copy()
    hi1[dim] = mid
    lo2[dim] = mid
    return [Box(box.priority, next(counter), box.lo.copy(), hi1, box.depth + 1),
            Box(box.priority, next(counter), lo2, box.hi.copy(), box.depth + 1)]


def margin_gradient(ctx: RunContext, z: np.ndarray, j: int) -> np.ndarray:
    """``|d margin_j / d z|`` at ``z`` (margin_j: the max of disjunct j's rows), shape (n,)."""
    y, back = ctx.spec_net.vjp(np.asarray(z, dtype=np.float64).reshape(1, -1))
    g = np.asarray(ctx.groups[j])
    cot = np.zeros_like(y)
    cot[0, g[int(np.argmax(y[0, g]))]] = 1.0        # d (max of the disjunct's rows) / d y
    return np.abs(back(cot).reshape(-1))


def candidate_split_dim(ctx: RunContext, box: Box, z: np.ndarray, j: int) -> int:
    """Dimension maximising width × |d margin_j / d z| at the candidate."""
    width = box.hi - box.lo
    score = width * margin_gradient(ctx, z, j)
    if not np.any(score > 0):
        score = width
    return int(np.argmax(score))


@dataclass
class SolverShare:
    """Input policy: how many seconds the solver may spend on the next box.

    The solver's time share shrinks while it fails to close boxes (on easy latent boxes CROWN
    bisection closes them ~100x cheaper than one LP), and recovers when it succeeds. And a call may
    only spend what the share has earned so far: solver time stays within share x elapsed, the
    call in progress included (a 1.65 s first call in a 5 s run lost an instance that bisection
    alone proved in 3 s). Each call is also capped at ``cap`` seconds."""

    share: float                 # Options.solver_time_share
    cap: float                   # Options.solve_time_cap
    tried: int = 0
    closed: int = 0

    def budget(self, elapsed: float, solver_time: float) -> float:
        share = self.share * (1 + self.closed) / (1 + self.tried)
        return min(self.cap, share * elapsed - solver_time)

    def record(self, outcome: BoxOutcome):
        self.tried += 1
        self.closed += outcome.kind is BoxKind.CLOSED


def branch_and_refine(ctx: RunContext, use_solver: bool, split_allowed: bool) -> Result:
    """Bound boxes in batches; a box the bounds do not close goes to the solver (``use_solver``,
    deep enough and within the solver's share when splitting) or is split (``split_allowed``).
    Raises :class:`~.context.TimeLimit`."""
    opts, stats, problem = ctx.opts, ctx.stats, ctx.problem
    counter = itertools.count()
    queue: list[Box] = [Box(0.0, next(counter), problem.lower.copy(), problem.upper.copy(), 0)]
    min_depth = opts.solver_min_depth if opts.solver_min_depth >= 0 else 2 * problem.n_free
    solver = SolverShare(opts.solver_time_share, opts.solve_time_cap)
    unknown_reason = None
    while queue:
        ctx.check_time()
        if stats.iterations >= opts.max_iterations:
            return ctx.result(UNKNOWN, Reason.ITERATION_LIMIT)
        n = min(opts.batch_size, len(queue))
        if stats.boxes_bounded:
            # a batch must fit in the time left: one CROWN batch of 64 boxes on the CNN took 2 s,
            # and the time limit is only checked between batches
            per_box = stats.time_bounds / stats.boxes_bounded
            n = max(1, min(n, int(ctx.remaining() / max(per_box, 1e-9))))
        batch = [heapq.heappop(queue) for _ in range(n)]
        lo = np.stack([b.lo for b in batch])
        hi = np.stack([b.hi for b in batch])
        bnds = ctx.bounds(lo, hi)
        disj_lower = ctx.disjunct_lower(bnds)                                 # (B, n_disjuncts)
        proved = np.all(disj_lower > opts.tol, axis=-1)
        stats.boxes_closed_by_bounds += int(proved.sum())
        stats.iterations += len(batch)
        todo = [k for k in range(len(batch)) if not proved[k]]
        if not todo:
            continue
        with ctx.timed("checks"):
            cex = first_confirmed(problem, (lo[todo] + hi[todo]) / 2, "box-centre")
        if cex is not None:
            return ctx.result(FALSIFIED, Reason.BOX_CENTRE_COUNTEREXAMPLE, cex)
        for k in todo:
            box = batch[k]
            worst = float(np.min(disj_lower[k]))
            weakest = int(np.argmin(disj_lower[k]))     # disjunct the bounds are furthest from excluding
            centre = (box.lo + box.hi) / 2
            budget = solver.budget(time.perf_counter() - ctx.start, stats.time_solver)
            if use_solver and (not split_allowed or (box.depth >= min_depth and budget >= 0.05)):
                out = solve_box(ctx, box.depth, bnds.pick(k), refine=True,
                                box_time=budget if split_allowed else None)
                solver.record(out)
                if out.kind is BoxKind.CLOSED:
                    continue
                if out.kind is BoxKind.FALSIFIED:
                    return ctx.result(FALSIFIED, Reason.SOLVER_COUNTEREXAMPLE, out.counterexample)
                if not split_allowed:
                    return ctx.result(UNKNOWN, out.reason if out.kind is BoxKind.UNKNOWN
                                      else Reason.REFINEMENT_EXHAUSTED)
                if out.kind is BoxKind.UNKNOWN:
                    unknown_reason = out.reason
                    dim = int(np.argmax(box.hi - box.lo))
                elif out.candidate is not None:
                    dim = candidate_split_dim(ctx, box, out.candidate, out.disjunct)
                else:
                    dim = candidate_split_dim(ctx, box, centre, weakest)
            elif not split_allowed:
                return ctx.result(UNKNOWN, Reason.SPLITTING_DISABLED)
            else:
                dim = candidate_split_dim(ctx, box, centre, weakest)
            if np.max(box.hi - box.lo) <= 1e-9:
                return ctx.result(UNKNOWN, Reason.BOX_TOO_SMALL + (f"; {unknown_reason}" if unknown_reason else ""))
            stats.boxes_split += 1
            for child in split(box, dim, counter):
                child.priority = worst      # most violated boxes first
                heapq.heappush(queue, child)
    return ctx.result(VERIFIED, Reason.EVERY_SUB_BOX_PROVED if stats.boxes_split else Reason.PROVED)
