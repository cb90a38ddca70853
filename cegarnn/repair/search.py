"""The program of one fine-tuning run and its solve loop (:func:`~.finetune.finetune`): the
CEGAR step for sigmoid/tanh segments, lazily added keep inputs, and float32 slack per row."""
from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np

from ..encoding.program import INF, Program
from ..encoding.weights import WeightEncoding, encode_weight_layer
from ..network.ir import Network, Sigmoid, Tanh
from ..solvers import Status, make_backend
from .constraints import OutputConstraints, RepairInputError, ensure
from .inputs import float32_slack
from .result import StageInfo


def _le_rows(prog: Program, C, cols, d, name: str) -> np.ndarray:
    """Rows ``C @ x[cols] <= d``."""
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    return prog.add_dense_rows(C, cols, np.full(d.shape[0], -INF), d, name=name)


class FinetuneSearch:
    """The program of one fine-tuning run and its CEGAR solve loop."""

    def __init__(self, net: Network, li: int, X, cons: OutputConstraints, slack, *, bound, mask,
                 train_bias, segments, relu, backend, solver_options, deadline, top_k, max_refinements, keep, keep_mode,
                 keep_margin, verbose, lazy_rows=None):
        self.net, self.li, self.X, self.cons = net, li, X, cons
        self.backend, self.deadline, self.top_k = backend, deadline, int(top_k)
        self.max_refinements, self.verbose = int(max_refinements), verbose
        self.refinements = 0
        self.solver_calls = 0
        self.lazy_rows = lazy_rows          # (prog, encoding, x) -> rows added; x None: the initial rows
        self.prog = Program(name="finetune")
        self.we: WeightEncoding = encode_weight_layer(self.prog, net, li, X, delta=bound, weight_mask=mask,
                                                      train_bias=train_bias, segments=segments, relu=relu)
        if lazy_rows is not None:
            lazy_rows(self.prog, self.we, None)
        self.slack = np.array(slack, dtype=np.float64)
        self.rows = []
        for n in range(X.shape[0]):
            live = np.any(cons.C[n] != 0, axis=1)
            r = _le_rows(self.prog, cons.C[n][live], self.we.outputs[n], (cons.d[n] - self.slack[n])[live],
                         f"req[{n}]")
            self.rows.append((r, live))
        self.keep = keep
        self.keep_mode = keep_mode
        self.keep_margin = float(keep_margin)
        self.keep_cons = None
        self.keep_first = X.shape[0]
        if keep is not None:
            Xk, yk = keep
            self.keep_cons = ensure(yk, net.n_outputs, self.keep_margin, kind="keep")
        self.keep_added: dict = {}          # keep input -> its output columns (hard mode, added lazily)
        self.keep_rows = 0
        self.keep_hidden = None             # keep inputs' values at the changed layer's input
        has_sshape = any(isinstance(l, (Sigmoid, Tanh)) for l in net.layers[li + 1:])
        extra = dict(solver_options or {})
        if backend == "highs" and solver_options is None and self.prog.n_integer == 0 and keep_mode != "count":
            # measured: HiGHS' interior point method (with crossover) is 10-35x faster than its
            # dual simplex on these dense LPs (watermark with 528 keep rows: 2.7 s vs 93 s)
            extra["solver"] = "ipm"
        self.solver_options = extra
        self.fresh = False
        self.solver = make_backend(self.prog, backend, **extra)
        self.exact = not has_sshape and relu == "exact"
        self.pattern = relu == "pattern"

    # ---------------------------------------------------------------- keep inputs
    def add_violated_keep_rows(self, candidate: Network, chunk: int = 8192) -> int:
        """Hard keep inputs, lazily: the rows of keep inputs the candidate violates (on the
        float64 IR) become constraints, with the float32 slack of their input. Returns how many
        rows were added (0: the candidate keeps every keep input)."""
        Xk = self.keep[0]
        if self.keep_hidden is None:
            # the layers before the changed one never change: their values are computed once
            self.keep_hidden = np.concatenate([self.net.forward_all(Xk[i:i + chunk])[self.li]
                                               for i in range(0, Xk.shape[0], chunk)])
        after = Network(tuple(candidate.layers[self.li:]), (self.keep_hidden.shape[1],))
        H = self.keep_hidden
        slack = np.concatenate([self.keep_cons.subset(np.arange(i, min(i + chunk, H.shape[0]))).slack(
            after.forward(H[i:i + chunk])) for i in range(0, H.shape[0], chunk)])
        viol = slack < 0.0
        rows_of = {int(n): np.flatnonzero(viol[n]) for n in np.flatnonzero(np.any(viol, axis=1))}
        if not rows_of:
            return 0
        new = np.array(sorted(n for n in rows_of if n not in self.keep_added), dtype=np.int64)
        if new.size:
            out = self.we.add_inputs(Xk[new])
            for p, n in enumerate(new):
                self.keep_added[int(n)] = out[p]
        sub = np.array(sorted(rows_of), dtype=np.int64)
        pads = float32_slack(self.net, Xk[sub], self.keep_cons.subset(sub), 2.0, "measured")
        added = 0
        for p, n in enumerate(sub):
            k = rows_of[int(n)]
            _le_rows(self.prog, self.keep_cons.C[n][k], self.keep_added[int(n)], self.keep_cons.d[n][k] - pads[p][k],
                     f"keep[{n}]")
            added += k.size
        self.keep_rows += added
        return added

    def keep_objective(self, delta) -> np.ndarray:
        """Add the soft keep inputs (stage 2): hinge variables (LP) or one binary each (count);
        returns the objective columns (to minimise)."""
        Xk = self.keep[0]
        out = self.we.add_inputs(Xk, delta=delta)
        C, d = self.keep_cons.C, self.keep_cons.d
        N, K = C.shape[:2]
        if self.keep_mode == "hinge":
            s = self.prog.add_vars(N, 0.0, INF, name="keep_violation")
            for n in range(N):
                # C y - s <= d
                _le_rows(self.prog, np.hstack([C[n], -np.ones((K, 1))]), np.append(out[n], s[n]), d[n],
                         f"keep_hinge[{n}]")
            return s
        # count: b_n = 1 lets input n be violated; C y - M b <= d with M from the rows' range
        lo = self.prog.col_lo
        hi = self.prog.col_hi
        b = self.prog.add_binaries(N, name="keep_lost")
        for n in range(N):
            ylo, yhi = lo[out[n]], hi[out[n]]
            top = np.maximum(C[n], 0) @ yhi + np.minimum(C[n], 0) @ ylo - d[n]
            if not np.all(np.isfinite(top)):
                raise RepairInputError("keep_mode='count' needs a bounded change (give bound=...)")
            M = np.maximum(top, 0.0) + 1e-6
            _le_rows(self.prog, np.hstack([C[n], -M[:, None]]), np.append(out[n], b[n]), d[n],
                     f"keep_count[{n}]")
        return b

    # ---------------------------------------------------------------- solving
    def log(self, msg: str) -> None:
        if self.verbose:
            print(f"[finetune] {msg}", file=sys.stderr, flush=True)

    def remaining(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - time.perf_counter()

    def solve(self, name: str) -> tuple:
        """Solve until a candidate meets every row on the real float64 network (with half its
        slack), refining sigmoid/tanh segments at spurious candidates. Returns
        ``(status, solution, stage_info)`` with status 'ok', 'infeasible', 'time', 'refinement',
        'failed'."""
        t0 = time.perf_counter()
        info = StageInfo(name, "")
        while True:
            rem = self.remaining()
            if rem is not None and rem <= 0:
                info.status, info.time = "time limit", time.perf_counter() - t0
                return "time", None, info
            sol = self.solver.solve(time_limit=rem)
            self.solver_calls += 1
            info.solver_calls += 1
            if sol.status is Status.NUMERICAL_ERROR and not self.fresh:
                # seen: HiGHS' dual ray of a truly infeasible LP (rows added to a live model) did
                # not certify it; a fresh model without presolve gives one that does
                opts = dict(self.solver_options)
                if self.backend == "highs":
                    opts["presolve"] = False         # a ray found by presolve may be no ray of the LP
                self.solver = make_backend(self.prog, self.backend, **opts)
                self.fresh = True
                continue
            self.fresh = False
            info.status = sol.status.value
            if sol.status is Status.INFEASIBLE:
                info.time = time.perf_counter() - t0
                return "infeasible", sol, info
            if sol.x is None:
                info.time = time.perf_counter() - t0
                return ("time" if sol.status is Status.TIME_LIMIT else "failed"), sol, info
            info.objective, info.bound = sol.objective, sol.bound
            bad = self.spurious(sol.x)
            self.log(f"{name}: solve {info.solver_calls} {sol.status.value} objective {sol.objective:.6g} "
                     f"({sol.time:.2f} s, {self.prog.n_rows} rows); {len(bad)} spurious inputs")
            if not bad:
                if self.keep is not None and self.keep_mode == "hard" and \
                        self.add_violated_keep_rows(self.we.apply(sol.x)) > 0:
                    info.keep_rounds += 1
                    self.log(f"{name}: keep round {info.keep_rounds}: {self.keep_rows} keep rows so far "
                             f"({len(self.keep_added)} keep inputs)")
                    continue
                if self.lazy_rows is not None and self.lazy_rows(self.prog, self.we, sol.x) > 0:
                    info.lazy_rounds += 1
                    self.log(f"{name}: lazy round {info.lazy_rounds}: {self.prog.n_rows} rows")
                    continue
                info.time = time.perf_counter() - t0
                return "ok", sol, info
            if self.refinements >= self.max_refinements or not self.refine(sol.x, bad):
                info.time = time.perf_counter() - t0
                return "refinement", sol, info

    def spurious(self, x) -> list:
        """Inputs whose rows the candidate does not meet on the real (float64) network with at
        least half their slack."""
        net = self.we.apply(x)
        Y = net.forward(self.X)
        slack = self.cons.slack(Y)
        return [int(n) for n in np.flatnonzero(np.any(slack < 0.5 * self.slack, axis=1))]

    def widen_slack(self, inputs, float32_slack_now) -> None:
        """More slack for ``inputs`` whose rows failed on the float32 export: at least four times
        the old slack and twice the violation plus the old slack."""
        for n in inputs:
            viol = np.maximum(-float32_slack_now[n], 0.0)
            self.slack[n] = np.maximum(4.0 * self.slack[n], self.slack[n] + 2.0 * viol)
            r, live = self.rows[n]
            self.prog.set_row_bounds(r, -INF, (self.cons.d[n] - self.slack[n])[live])

    def refine(self, x, bad) -> bool:
        """Split the sigmoid/tanh segments with the largest abstraction error of each spurious
        input at the candidate's pre-activations; where there is none (ReLU-only: solver
        tolerances), double that input's slack. Returns whether anything changed."""
        changed = False
        self.refinements += 1
        for n in bad:
            enc = self.we.encodings[n]
            items = []
            if enc is not None and enc.sshape:
                values = [x[v] for v in enc.value_vars]
                gaps = []
                for layer, err in enc.activation_errors(values).items():
                    for j in np.flatnonzero(np.abs(err) > 1e-9):
                        gaps.append((float(abs(err[j])), layer, int(j), float(values[layer][j])))
                gaps.sort(reverse=True)
                items = [(layer, j, t) for _, layer, j, t in gaps[:self.top_k]]
            if items and enc.refine_many(items) > 0:
                changed = True
                continue
            # no abstraction error to remove: tighten this input's rows (solver tolerance)
            self.slack[n] *= 4.0
            r, live = self.rows[n]
            self.prog.set_row_bounds(r, -INF, (self.cons.d[n] - self.slack[n])[live])
            changed = True
        return changed


__all__ = ["FinetuneSearch"]
