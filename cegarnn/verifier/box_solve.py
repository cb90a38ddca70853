"""One input box decided by an LP/MILP abstraction: the live abstraction (:class:`BoxAbstraction`)
and the per-box loop (:func:`solve_box`) — minimise each open disjunct's margin, confirm a
candidate, refine sigmoid segments at a spurious one — ending in a :class:`BoxOutcome`."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..bounds.box import LayerBounds
from ..encoding import BigMError, Program, encode_network
from ..network.ir import ReLU, Sigmoid, sigmoid
from ..solvers import Status, make_backend
from .confirm import confirm
from .context import RunContext, TimeLimit
from .result import Counterexample, Reason


class BoxKind(enum.Enum):
    CLOSED = "closed"          # every disjunct excluded on the box (proved)
    SPLIT = "split"            # not decided here: split the box (guided by a candidate if there is one)
    UNKNOWN = "unknown"        # cannot be decided by this abstraction (``reason``)
    FALSIFIED = "falsified"    # a confirmed counterexample


@dataclass(frozen=True)
class BoxOutcome:
    kind: BoxKind
    counterexample: Optional[Counterexample] = None   # FALSIFIED
    candidate: Optional[np.ndarray] = None            # SPLIT (or UNKNOWN without refinement): the spurious
                                                      # candidate (None: none found)
    disjunct: Optional[int] = None                    # ... the candidate's disjunct
    reason: str = ""                                  # UNKNOWN
    values: Optional[list] = None                     # UNKNOWN without refinement: the spurious
                                                      # candidate's values per layer (for a neuron split)


class BoxAbstraction:
    """The LP/MILP abstraction of the spec network on one input box, kept live in one backend.

    Sigmoid/tanh neurons start with ``segments`` uniform segments each (1 = pure LP envelope),
    ReLUs are exact (big-M from the box's bounds). ``refine`` adds breakpoints incrementally.
    """

    def __init__(self, ctx: RunContext, bounds: LayerBounds, segments: Optional[int] = None, relu: str = "exact"):
        with ctx.timed("encode"):
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

    def solve(self, j: int, cap: Optional[float] = None, need: Optional[float] = None):
        """Minimise the margin of disjunct j (at most ``cap`` seconds); the search may stop once the
        bound exceeds ``need`` (default ``tol``: what a proof needs).
        Returns (solution, proved lower bound on the margin or None, decoded values or None)."""
        ctx = self.ctx
        ctx.check_time()
        need = ctx.opts.tol if need is None else need
        self.program.set_objective([self.t_vars[j]], [1.0], "min")
        limit = ctx.remaining() if cap is None else min(ctx.remaining(), cap)
        with ctx.timed("solver"):
            sol = self.solver.solve(time_limit=max(limit, 0.01), target=-ctx.opts.tol, cutoff=need)
        ctx.stats.solver_calls += 1
        ctx.stats.max_binaries = max(ctx.stats.max_binaries, self.program.n_integer)
        bound = None
        # INFEASIBLE is never a proof here: the abstraction contains the network's own values at
        # every point of the (non-empty) box, so the solver can only say it from numerical trouble
        # (seen: big-M values of 1e7 in a MILP, and an LP whose true point met every row to 1e-9).
        # It is left without a bound and without a solution: the box is split or stays unknown.
        if sol.status == Status.OPTIMAL and sol.bound is not None:
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


def solve_box(ctx: RunContext, depth: int, bounds: LayerBounds, refine: bool, segments: Optional[int] = None,
              box_time: Optional[float] = None, relu: Optional[str] = None,
              policy: Optional[str] = None) -> BoxOutcome:
    """Decide the box (at ``depth`` in the split tree) with the abstraction. With ``refine``, a
    spurious candidate refines sigmoid segments or asks for a split; under the input policy the
    solver gets at most ``box_time`` seconds in all (then SPLIT). ``relu``: 'exact' | 'triangle'
    (default: exact, triangle under the input policy beyond ``relu_exact_max`` unstable ReLUs).
    ``policy``: the refinement policy to follow (default ``ctx.policy``; ``'segments'`` refines
    sigmoid segments until the budget is spent). Raises :class:`TimeLimit`."""
    box_end = None if box_time is None else time.perf_counter() + box_time
    pad = ctx.padding(bounds)
    open_j = ctx.open_disjuncts(bounds, pad)
    if not open_j:
        return BoxOutcome(BoxKind.CLOSED)
    need = {j: ctx.opts.tol + float(np.max(pad[g])) for j, g in enumerate(ctx.groups)}
    policy = ctx.policy if policy is None else policy
    input_mode = refine and policy == "input"
    if relu is None:
        relu = "triangle" if input_mode and bounds.unstable_relus(ctx.spec_net) > ctx.opts.relu_exact_max \
            else "exact"
    try:
        abst = BoxAbstraction(ctx, bounds, segments, relu)
    except BigMError as exc:              # bounds too large for a meaningful big-M encoding
        return BoxOutcome(BoxKind.UNKNOWN, reason=f"encoding: {exc}")
    for j in open_j:
        outcome = _decide_disjunct(ctx, abst, depth, j, need[j], refine, box_end, policy)
        if outcome is not None:
            return outcome
    return BoxOutcome(BoxKind.CLOSED)


def _decide_disjunct(ctx: RunContext, abst: BoxAbstraction, depth: int, j: int, need: float, refine: bool,
                     box_end: Optional[float], policy: str) -> Optional[BoxOutcome]:
    """Minimise disjunct ``j``'s margin until it is excluded (None) or an outcome ends the box."""
    input_mode = refine and policy == "input"
    trajectory = ctx.stats.trajectory
    rounds = 0
    while True:
        cap = ctx.opts.solve_time_cap if input_mode else None
        if box_end is not None:
            cap = min(cap if cap is not None else np.inf, box_end - time.perf_counter())
            if cap <= 0.01:
                trajectory.append({"box_depth": depth, "disjunct": j, "move": "input-split",
                                   "reason": "solver budget spent"})
                return BoxOutcome(BoxKind.SPLIT)
        sol, bound, values = abst.solve(j, cap, need)
        ctx.stats.iterations += 1
        if bound is not None and bound > need:
            return None                                # disjunct j excluded on this box
        if values is None:
            if input_mode and sol.status == Status.TIME_LIMIT:
                trajectory.append({"box_depth": depth, "disjunct": j, "move": "input-split",
                                   "reason": "solver time cap"})
                return BoxOutcome(BoxKind.SPLIT)
            if sol.status == Status.TIME_LIMIT or ctx.remaining() <= 0:
                raise TimeLimit()
            return BoxOutcome(BoxKind.UNKNOWN, reason=f"solver returned {sol.status.value} without a solution")
        z = values[0]
        with ctx.timed("checks"):
            cex = confirm(ctx.problem, z, "solver")
        if cex is not None:
            return BoxOutcome(BoxKind.FALSIFIED, counterexample=cex)
        if not refine:
            return BoxOutcome(BoxKind.UNKNOWN, candidate=z, disjunct=j, reason=Reason.SPURIOUS_NO_REFINEMENT,
                              values=values)
        gaps = abst.sigmoid_gaps(values)
        entry = {"box_depth": depth, "disjunct": j, "candidate_margin": float(sol.objective or 0.0)}
        if ctx.opts.debug and rounds > 0:
            abst.check_progress(values)
        sig_dominant = bool(gaps) and gaps[0][0] >= abst.relu_gap(values)
        if gaps and (policy == "segments" or (rounds < ctx.opts.max_rounds and sig_dominant)):
            chosen = abst.refine(gaps, ctx.opts.top_k)
            entry.update(move="segments", neurons=len(chosen), max_gap=gaps[0][0])
            trajectory.append(entry)
            rounds += 1
            if ctx.stats.iterations >= ctx.opts.max_iterations:
                return BoxOutcome(BoxKind.UNKNOWN, reason=Reason.ITERATION_LIMIT)
            continue
        entry.update(move="input-split")
        trajectory.append(entry)
        return BoxOutcome(BoxKind.SPLIT, candidate=z, disjunct=j)
