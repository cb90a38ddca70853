"""Neuron-level branch and bound on our own batched bounds (issue 15, items 2 and 3).

A subproblem (:class:`~.neuron_split.Sub`) is an input box plus neuron splits: ReLU phases fixed
active/inactive, sigmoid/tanh pre-activations restricted to a segment ``[a, b]``. Batches of
subproblems are bounded by :class:`cegarnn.bounds.crown.BatchBounder` with the spec network's
margin rows as the objective. Per batch::

    bound (CROWN; alpha-CROWN at the root, or everywhere with bounds='alpha-crown', warm-started
           from the parent) ──► infeasible or every disjunct > tol + padding: closed
    box centres and linearisation corners of the open ones ──► confirmed on the real model: falsified
    open, pure ReLU with few unstable neurons ──► LP/MILP (box_solve) within the solver's time share
        (guided, i.e. cegar's policy 'neuron': any network; a spurious LP candidate is kept)
    still open ──► split: input bisection or one neuron (ReLU phase / sigmoid segment at the
                   candidate — the LP's own, when guided), chosen per subproblem by the progress
                   each kind has measured

Soundness: the leaves' sets (box ∩ splits, on the float64 IR's pre-activations) cover the input
box, since each split is a case split ``v <= 0 | v >= 0`` or ``v <= p | v >= p``. A leaf is
closed only when it is infeasible (its set is empty) or every disjunct's lower bound (the best of
its own and its ancestors' bounds, all valid on its set) exceeds ``tol`` plus the execution
padding computed from the leaf's own bounds — valid for every input of the leaf's set, so the
proof covers the executed (float32) model as for the other methods. ``falsified`` only with a
counterexample confirmed by :func:`~.confirm.first_confirmed` / :func:`~.box_solve.solve_box`.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import time

import numpy as np

from ..bounds.box import LayerBounds
from ..bounds.crown import BatchBounder, take_alphas
from ..network.ir import ReLU
from .box_solve import BoxKind, solve_box
from .branching import SolverShare, margin_gradient
from .confirm import first_confirmed
from .context import AUTO_SEGMENTS_ALPHA, RunContext, TimeLimit
from .neuron_split import (Progress, Sub, backward_coefficients, batch_splits, lp_gap_scores, phases,
                           relu_scores, sigmoid_scores, split_input, split_neuron)
from .result import FALSIFIED, UNKNOWN, VERIFIED, Reason, Result

log = logging.getLogger("cegarnn.verifier")

ROOT_ALPHA_ITERATIONS = 20     # alpha-CROWN steps on the root subproblem
ROOT_LIRPA_FACTOR = 10.0       # auto_LiRPA alpha-CROWN on the root too when the time left exceeds this
                               # many times what our root alpha took (it is not interruptible)
ROOT_ALPHA_SHARE = 0.25        # ... started within this share of the time left (then the best so far)
CHILD_ALPHA_ITERATIONS = 5     # ... on children (bounds='alpha-crown'), warm-started from the parent
MAX_QUEUE = 50_000             # open subproblems kept at most (then 'unknown': memory)
SEGMENT_PHASE_MIN_INPUTS = 256  # guided, sigmoid/tanh, more free inputs than this: the root's LP refined
SEGMENT_PHASE_SHARE = 0.5       # at sigmoid segments (the segments policy) for this share of the time left
                                # first (ERAN sigmoid 6x200: it proved 3 the loop did not in 300 s)
SUMMARY = "neuron_bab"         # stats.trajectory[-1]['move'] of a run: its split counts
MIN_WIDTH = 1e-9               # input intervals narrower than this are not bisected


class NeuronBaB:
    """The state of one run of the neuron branch and bound (see the module docstring)."""

    def __init__(self, ctx: RunContext, guided: bool = False):
        self.ctx = ctx
        self.guided = guided                  # cegar: LP candidates on open subproblems guide the split
        self.net = ctx.spec_net
        self.eye = np.eye(self.net.n_outputs)
        chosen = ctx.opts.bounds.strip().lower()      # auto: alpha at the root; alpha-crown: everywhere
        self.mode = chosen if chosen in ("auto", "alpha-crown") else "plain"   # else plain CROWN only
        self.crown = BatchBounder(self.net, backend="numpy", intermediate="unstable")
        self._alpha = None
        self.alpha_failed = False             # alpha-CROWN failed on this network: CROWN only
        self.relu_layers = self.net.activation_indices((ReLU,))
        self.progress = Progress()
        self.solver = SolverShare(ctx.opts.solver_time_share, ctx.opts.solve_time_cap)
        self.counter = itertools.count()
        self.summary = dict(move=SUMMARY, input_splits=0, neuron_splits=0, relu_splits=0,
                            segment_splits=0, closed_by_bounds=0, closed_infeasible=0, closed_by_solver=0,
                            closed_leaves_with_neuron_splits=0, root_alpha=False, root_lirpa_alpha=False, lp_calls=0,
                            lp_guided_splits=0)

    # ----------------------------------------------------------------- bounds
    def alpha_bounder(self) -> BatchBounder:
        if self._alpha is None:
            self._alpha = BatchBounder(self.net, backend="torch", dtype="float64", intermediate="unstable")
        return self._alpha

    def alpha_bounds(self, lo, hi, splits, init, iterations, share: float = 1.0):
        """alpha-CROWN of a batch (warm start ``init`` when it fits, else cold), its steps within
        ``share`` of the time left; None where it fails (then the caller keeps CROWN: a failure
        costs tightness, never soundness)."""
        deadline = time.perf_counter() + share * max(self.ctx.remaining(), 0.0)
        for warm in ((init, None) if init is not None else (None,)):
            try:
                return self.alpha_bounder().bounds(lo, hi, splits, self.eye, alpha=True, iterations=iterations,
                                                   alpha_init=warm, deadline=deadline)
            except (RuntimeError, ValueError, IndexError, KeyError) as exc:
                log.debug("alpha-CROWN failed (%r, warm start: %s)", exc, warm is not None)
        self.alpha_failed = True
        return None

    def lirpa_root(self, b: LayerBounds, root: Sub) -> LayerBounds:
        """``b`` intersected with auto_LiRPA's alpha-CROWN on the root box (what ``bounds='auto'``
        adds on the segments policy's root; tighter than ours on ERAN sigmoid 6x200, where it
        makes the proofs): both are sound on the root box, so is every value's intersection. The
        root's row bounds are kept for its children."""
        ctx = self.ctx
        ref = ctx.bounds(root.lo[None], root.hi[None], AUTO_SEGMENTS_ALPHA)
        self.summary["root_lirpa_alpha"] = ref.method == AUTO_SEGMENTS_ALPHA
        out = LayerBounds([np.maximum(x, y) for x, y in zip(b.lower, ref.lower)],
                          [np.minimum(x, y) for x, y in zip(b.upper, ref.upper)], b.method)
        root.rows_lower = out.lower[-1][0]
        return out

    def bound(self, subs: list, alpha: bool, iterations: int = CHILD_ALPHA_ITERATIONS, share: float = 1.0):
        """(LayerBounds with the margin rows' best lower bounds — this call's or an ancestor's —,
        BoundState, this call's own row bounds (B, rows): what progress is measured on)."""
        ctx = self.ctx
        lo = np.stack([s.lo for s in subs])
        hi = np.stack([s.hi for s in subs])
        splits = batch_splits(subs, self.net.sizes)
        with ctx.timed("bounds"):
            out = self.alpha_bounds(lo, hi, splits, _stack_alphas([s.alpha for s in subs]), iterations, share) \
                if alpha and not self.alpha_failed else None
            b, st = out if out is not None else self.crown.bounds(lo, hi, splits, self.eye)
        ctx.stats.boxes_bounded += len(subs)
        own = np.maximum(b.lower[-1], st.objective_lower)
        rows = own.copy()
        for k, s in enumerate(subs):
            if s.rows_lower is not None:
                rows[k] = np.maximum(rows[k], s.rows_lower)
        lower = list(b.lower[:-1]) + [rows]
        return LayerBounds(lower, list(b.upper), b.method), st, own

    # ----------------------------------------------------------------- the loop
    def run(self) -> Result:
        ctx, opts, stats, problem = self.ctx, self.ctx.opts, self.ctx.stats, self.ctx.problem
        root = Sub(problem.lower.copy(), problem.upper.copy())
        queue: list = []                    # (priority, seq, Sub)
        pending = [root]                    # subproblems to bound next
        first = True
        while pending or queue:
            ctx.check_time()
            if stats.iterations >= opts.max_iterations:
                return self.finish(UNKNOWN, Reason.ITERATION_LIMIT)
            if not pending:
                n = min(opts.batch_size, len(queue))
                if stats.boxes_bounded and stats.time_bounds > 0:
                    per_box = stats.time_bounds / stats.boxes_bounded
                    n = max(1, min(n, int(ctx.remaining() / max(per_box, 1e-9))))
                pending = [heapq.heappop(queue)[2] for _ in range(n)]
            batch, pending = pending, []
            out = self.step(batch, first)
            first = False
            if isinstance(out, Result):
                return out
            for child in out:
                heapq.heappush(queue, (child.priority, next(self.counter), child))
            if len(queue) > MAX_QUEUE:
                return self.finish(UNKNOWN, f"more than {MAX_QUEUE} open subproblems")
        return self.finish(VERIFIED, Reason.EVERY_SUBPROBLEM_PROVED if stats.boxes_split else Reason.PROVED)

    def step(self, batch: list, root: bool):
        """Bound, check and split one batch: a final Result or the children to queue."""
        ctx, stats, problem = self.ctx, self.ctx.stats, self.ctx.problem
        use_alpha = self.mode == "alpha-crown" and not root
        b, st, own = self.bound(batch, use_alpha)
        stats.iterations += len(batch)
        closed = self.closed(b, st)
        if root and not closed[0] and self.mode != "plain":       # alpha-CROWN on the root box
            batch[0].rows_lower = b.lower[-1][0]
            t0 = time.perf_counter()
            b, st, own_alpha = self.bound(batch, True, ROOT_ALPHA_ITERATIONS, ROOT_ALPHA_SHARE)
            self.summary["root_alpha"] = not self.alpha_failed
            closed = self.closed(b, st)
            if self.mode == "alpha-crown":      # children are measured against the bound of their own kind
                own = own_alpha
            if not closed[0] and self.mode == "auto" and ctx.remaining() > ROOT_LIRPA_FACTOR * (time.perf_counter() - t0):
                b = self.lirpa_root(b, batch[0])
                closed = self.closed(b, st)
        if root and not closed[0] and self.guided and ctx.sig_layers \
                and problem.n_free > SEGMENT_PHASE_MIN_INPUTS:
            decided = self.segment_phase(b.pick(0))
            if decided is not None:
                return decided
        raw = problem.unsafe.disjunct_lower_bounds(b.lower[-1])          # (B, n_disj), unpadded
        weakest = raw.min(axis=1)
        own_weakest = problem.unsafe.disjunct_lower_bounds(own).min(axis=1)
        for k, s in enumerate(batch):
            self.progress.record(s.kind, s.parent_lb, float(own_weakest[k]), bool(st.infeasible[k]))
            if closed[k]:
                self.summary["closed_infeasible" if st.infeasible[k] else "closed_by_bounds"] += 1
                self.summary["closed_leaves_with_neuron_splits"] += s.neuron_splits > 0
        stats.boxes_closed_by_bounds += int(closed.sum())
        todo = [k for k in range(len(batch)) if not closed[k]]
        if not todo:
            return []
        lam, cands = self.linearise(b, batch, todo, raw)
        with ctx.timed("checks"):
            centres = np.stack([(batch[k].lo + batch[k].hi) / 2 for k in todo])
            cex = first_confirmed(problem, np.concatenate([centres, cands]), "box-centre")
        if cex is not None:
            return self.finish(FALSIFIED, Reason.BOX_CENTRE_COUNTEREXAMPLE, cex)
        children = []
        for t, k in enumerate(todo):
            ctx.check_time()
            sub = batch[k]
            bk = b.pick(k)
            solved = self.try_solver(sub, bk)
            if isinstance(solved, Result):
                return solved
            if solved is True:
                continue
            rows = bk.lower[-1]
            if st.alphas is not None:
                sub.alpha = take_alphas(st.alphas, [k])
            kids = self.split(sub, bk, {i: v[t] for i, v in lam.items()}, cands[t], st, k,
                              float(own_weakest[k]), rows, solved or None)
            if kids is None:
                return self.finish(UNKNOWN, Reason.BOX_TOO_SMALL)
            for kid in kids:
                kid.priority = float(weakest[k])          # weakest bounds first
            stats.boxes_split += 1
            children += kids
        return children

    def closed(self, b: LayerBounds, st) -> np.ndarray:
        """Per subproblem: infeasible, or every disjunct above tol + the padding of its own bounds."""
        return st.infeasible | np.all(self.ctx.disjunct_lower(b) > self.ctx.opts.tol, axis=-1)

    def linearise(self, b: LayerBounds, batch: list, todo: list, raw: np.ndarray):
        """Backward coefficients of each open subproblem's weakest disjunct's best row, and its
        candidate: the box corner minimising that linearisation."""
        groups = self.ctx.groups
        cot = np.zeros((len(todo), self.net.n_outputs))
        for t, k in enumerate(todo):
            g = np.asarray(groups[int(np.argmin(raw[k]))])
            cot[t, g[int(np.argmax(b.lower[-1][k][g]))]] = 1.0
        lower = [v[todo] for v in b.lower]
        upper = [v[todo] for v in b.upper]
        ph = {i: np.stack([phases(batch[k], i, self.net.sizes[i]) for k in todo]) for i in self.relu_layers}
        lam = backward_coefficients(self.net, lower, upper, cot, ph)
        lo = np.stack([batch[k].lo for k in todo])
        hi = np.stack([batch[k].hi for k in todo])
        cands = np.where(lam[0] > 0, lo, hi)
        return lam, cands

    def try_solver(self, sub: Sub, bk: LayerBounds):
        """LP/MILP (one segment per sigmoid, ReLUs exact) on an open subproblem with few unstable
        ReLUs, within the solver's time share — on pure-ReLU networks only, unless ``guided``:
        True (closed), a falsified Result, the spurious candidate's values per layer (guided: the
        split is chosen at it), or False (not decided here)."""
        ctx = self.ctx
        if not ctx.opts.solver_time_share or not (self.guided or (self.relu_layers and not ctx.sig_layers)):
            return False
        relu = "exact"
        if self.relu_layers and bk.unstable_relus(self.net) > ctx.opts.relu_exact_max:
            if not (self.guided and ctx.sig_layers):
                return False
            relu = "triangle"           # an LP: its candidate guides the sigmoid split
        budget = self.solver.budget(time.perf_counter() - ctx.start, ctx.stats.time_solver)
        if budget < 0.05:
            return False
        try:
            out = solve_box(ctx, sub.depth, bk, refine=False, box_time=budget, relu=relu)
        except TimeLimit:
            if ctx.remaining() <= 0:
                raise
            self.solver.tried += 1
            return False
        self.solver.record(out)
        self.summary["lp_calls"] += 1
        if out.kind is BoxKind.FALSIFIED:
            return self.finish(FALSIFIED, Reason.SOLVER_COUNTEREXAMPLE, out.counterexample)
        if out.kind is BoxKind.CLOSED:
            self.summary["closed_by_solver"] += 1
            self.summary["closed_leaves_with_neuron_splits"] += sub.neuron_splits > 0
            return True
        return out.values if self.guided and out.values is not None else False

    def split(self, sub: Sub, bk: LayerBounds, lam: dict, cand: np.ndarray, st, k: int, lb: float, rows,
              lp_values=None):
        """The children of an open subproblem (None: nothing left to split). With ``lp_values`` (a
        spurious LP candidate's values per layer), a sigmoid is split where that candidate is."""
        width = sub.hi - sub.lo
        can_input = bool(np.any(width > MIN_WIDTH))
        best = self.best_neuron(sub, bk, lam, cand, st, k, lp_values)
        if best is None and lp_values is not None:      # the LP point is exact on every sigmoid
            best, lp_values = self.best_neuron(sub, bk, lam, cand, st, k), None
        kind = self.progress.choose(can_input, best is not None)
        if kind is None:
            return None
        if kind == "input":
            d = self.input_dim(sub, lam[0], rows)
            self.summary["input_splits"] += 1
            return split_input(sub, d, lb, rows)
        layer_kind, i, j, point = best
        self.summary["neuron_splits"] += 1
        self.summary["lp_guided_splits"] += lp_values is not None and layer_kind == "segment"
        self.summary["relu_splits" if layer_kind == "relu" else "segment_splits"] += 1
        return split_neuron(sub, layer_kind, i, j, self.net.sizes[i], point, lb, rows)

    def best_neuron(self, sub: Sub, bk: LayerBounds, lam: dict, cand: np.ndarray, st, k: int, lp_values=None):
        """(kind, layer, neuron, split point) with the highest score, or None. A sigmoid's score is
        ``|lam|`` times its relaxation's width at the candidate — with ``lp_values``, the LP
        candidate's own abstraction error ``|y - f(v)|``, split at its ``v``: both children's
        envelopes are exact there, so that spurious point is cut off (the CEGAR step)."""
        best, best_s = None, 0.0
        values = None
        for i, layer in enumerate(self.net.layers):
            if i not in lam or i == 0:
                continue
            l, u = bk.lower[i], bk.upper[i]
            if isinstance(layer, ReLU):
                s = relu_scores(l, u, lam[i], phases(sub, i, len(l)))
                point = np.zeros_like(s)
                kind = "relu"
            elif lp_values is not None:
                s, point = lp_gap_scores(layer, l, u, lam[i], lp_values[i], lp_values[i + 1])
                kind = "segment"
            else:
                if values is None:
                    values = self.net.forward_all(cand[None])
                r = st.relaxations.get(i)
                relax = None if r is None else tuple(np.asarray(t)[k] for t in r)
                s, point = sigmoid_scores(layer, l, u, lam[i], values[i][0], relax)
                kind = "segment"
            j = int(np.argmax(s))
            if s[j] > best_s:
                best, best_s = (kind, i, j, float(point[j])), float(s[j])
        return best

    def input_dim(self, sub: Sub, lam0: np.ndarray, rows) -> int:
        """The input to bisect: the largest ``width_d * (|lam_0[d]| / max |lam_0| + |g_d| / max |g|)``,
        ``g`` the weakest disjunct's margin gradient at the centre (bisection's own score)."""
        width = np.where(sub.hi - sub.lo > MIN_WIDTH, sub.hi - sub.lo, 0.0)
        j = int(np.argmin(self.ctx.problem.unsafe.disjunct_lower_bounds(np.asarray(rows)[None])[0]))
        # measured on rotation images 5, 10, 26, 28, 35 (8-d) and tests/test_neuron_bab.py: the sum
        # needed fewer subproblems than either part alone (lam alone: 2-10x more on rotation; the
        # gradient alone left a clear tanh case of test_verdicts_agree_with_sampling undecided)
        parts = (np.abs(lam0), margin_gradient(self.ctx, (sub.lo + sub.hi) / 2, j))
        score = width * sum(p / p.max() if p.max() > 0 else p for p in parts)
        return int(np.argmax(score)) if np.any(score > 0) else int(np.argmax(sub.hi - sub.lo))

    def segment_phase(self, b: LayerBounds):
        """The root box's LP refined at sigmoid segments in place (the ``segments`` policy) for
        :data:`SEGMENT_PHASE_SHARE` of the time left: the Result if it decides the property, else
        None (the loop goes on). With hundreds of free inputs input splits do not shrink the
        sigmoids' ranges, and this LP is what closed ERAN instances that splitting did not."""
        ctx = self.ctx
        t0 = time.perf_counter()
        try:
            out = solve_box(ctx, 0, b, refine=True, box_time=SEGMENT_PHASE_SHARE * ctx.remaining(),
                            policy="segments")
        except TimeLimit:                   # an LP stopped at the phase's budget, not the run's
            ctx.check_time()
            out = None
        self.summary["segment_phase_s"] = round(time.perf_counter() - t0, 2)
        if out is not None and out.kind is BoxKind.CLOSED:
            self.summary["closed_by_solver"] += 1
            return self.finish(VERIFIED, Reason.PROVED_BY_SOLVER)
        if out is not None and out.kind is BoxKind.FALSIFIED:
            return self.finish(FALSIFIED, Reason.SOLVER_COUNTEREXAMPLE, out.counterexample)
        return None

    def finish(self, status, reason: str, cex=None) -> Result:
        self.ctx.stats.trajectory.append(dict(self.summary, progress_input=round(self.progress.mean["input"], 4),
                                              progress_neuron=round(self.progress.mean["neuron"], 4)))
        return self.ctx.result(status, reason, cex)


def _stack_alphas(alphas: list):
    """One warm start for a batch from each subproblem's one-row alphas (None unless all have them)."""
    if not alphas or any(a is None for a in alphas):
        return None
    import torch
    try:
        return {key: {n: torch.cat([a[key][n] for a in alphas]) for n in alphas[0][key]} for key in alphas[0]}
    except (KeyError, RuntimeError):
        return None


def neuron_branch_and_bound(ctx: RunContext, guided: bool = False) -> Result:
    """Run the neuron branch and bound (see the module docstring); ``guided``: the LP runs on open
    subproblems of any network within the solver's time share and its spurious candidates choose
    the sigmoid splits (``cegar``'s policy ``neuron``). Raises :class:`~.context.TimeLimit` (after
    recording the run's split counts in ``stats.trajectory``)."""
    bab = NeuronBaB(ctx, guided)
    try:
        return bab.run()
    except TimeLimit:
        bab.finish(UNKNOWN, Reason.TIME_LIMIT)
        raise
