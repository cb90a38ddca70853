"""Fine-tuning with guarantees on a finite set of inputs: the smallest change of one layer.

:func:`finetune` finds ``dW, db`` for one Affine layer such that every given input meets its
output rows (:mod:`.constraints`) on the changed network, minimising the L∞ or L1 norm of the
change, then (lexicographically) a second objective among the minimisers:

* ``tie_break='l1'``: the smallest L1 change at the optimal L∞ (or the other way round);
* ``tie_break='keep'``: the *keep* inputs (e.g. training images with their labels) — the fewest
  violated (``keep_mode='count'``, one binary each) or the smallest summed violation
  (``keep_mode='hinge'``, an LP). ``keep_mode='hard'`` makes them constraints of every stage.

How (the encoder's :func:`~cegarnn.encoding.weights.encode_weight_layer`): the changed layer's
outputs are linear in the change for each fixed input; the layers after it are encoded exactly
(ReLU, big-M from the change's box) or over-approximated (sigmoid/tanh segments). A last-layer
change is therefore an LP; an earlier one a MILP. A candidate is checked on the real network; a
spurious one (sigmoid/tanh abstraction) refines the segments of the neurons whose abstraction
error let it through, at the candidate's pre-activations, and the program is solved again — the
verifier's CEGAR step. An infeasible over-approximation proves that no change within the box
exists.

Every row carries a slack for float32 execution: the program asks ``C y <= d - s`` (see
:func:`float32_slack`: measured on the float32 export by default, or a rigorous rounding bound);
the result is then checked on the float32 ONNX export (:func:`~.check.check_constraints`); rows
that fail there get more slack and the program is solved again (``max_float32_retries``). Only a
network that meets every row on the export is ``repaired``.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ..bounds.rounding import output_padding
from ..encoding.errors import BigMError
from ..encoding.program import INF, Program
from ..encoding.weights import WeightEncoding, encode_weight_layer
from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh
from ..solvers import Status, make_backend
from .check import check_constraints, float32_outputs
from .constraints import OutputConstraints, RepairInputError, ensure
from .result import INFEASIBLE, REPAIRED, UNKNOWN, RepairReason, RepairResult, StageInfo

NORMS = ("linf", "l1")
TIE_BREAKS = (None, "l1", "linf", "keep")
KEEP_MODES = ("hard", "hinge", "count")


# --------------------------------------------------------------------------- inputs
def as_network(network) -> Network:
    """A :class:`Network` from an IR network, a torch module, or an ONNX/torch file path."""
    if isinstance(network, Network):
        return network
    from ..network import load_network
    try:
        return load_network(network)
    except Exception as exc:            # noqa: BLE001 - re-raised with the input named
        raise RepairInputError(f"cannot read the network {network!r}: {exc}") from exc


def affine_layer_index(network: Network, layer: int) -> int:
    """Index in ``network.layers`` of Affine layer number ``layer`` (0 = the first Affine layer,
    -1 = the last, as with a list), or :class:`RepairInputError`."""
    affine = [i for i, l in enumerate(network.layers) if isinstance(l, Affine)]
    try:
        k = int(layer)
    except (TypeError, ValueError):
        raise RepairInputError(f"layer must be an integer, got {layer!r}") from None
    if not -len(affine) <= k < len(affine):
        raise RepairInputError(f"layer {layer} out of range: the network has {len(affine)} Affine layers "
                               f"(0..{len(affine) - 1}, or -1 for the last)")
    return affine[k]


def as_inputs(network: Network, inputs, what: str = "inputs") -> np.ndarray:
    """``inputs`` as a finite float64 (N, n_in) array (each input flat or in ``input_shape``)."""
    X = np.asarray(inputs, dtype=np.float64)
    if X.size == 0:
        raise RepairInputError(f"{what}: the set of inputs is empty: nothing to repair")
    shape = tuple(network.input_shape)
    if X.shape[1:] == shape or (X.ndim == 2 and X.shape[1] == network.n_inputs):
        X = X.reshape(X.shape[0], -1)
    elif X.shape == shape or (X.ndim == 1 and X.size == network.n_inputs):
        X = X.reshape(1, -1)
    else:
        raise RepairInputError(f"{what} have shape {X.shape}; the network takes {shape} "
                               f"(or {network.n_inputs} flat values) per input")
    if not np.all(np.isfinite(X)):
        raise RepairInputError(f"{what} must be finite")
    return X


def _as_constraints(network: Network, spec, n: int) -> OutputConstraints:
    cons = spec if isinstance(spec, OutputConstraints) else ensure(spec, network.n_outputs)
    if cons.n_inputs != n:
        raise RepairInputError(f"{n} inputs but constraints for {cons.n_inputs}")
    if cons.n_outputs != network.n_outputs:
        raise RepairInputError(f"the constraints have {cons.n_outputs} outputs, the network {network.n_outputs}")
    return cons


SLACK_MODES = ("measured", "rigorous")
#: default change box of a last-layer / phase-keeping change: this many times max(1, max |W|)
LARGE_BOUND = 1e3


def float32_slack(network: Network, X: np.ndarray, cons: OutputConstraints, factor: float = 2.0,
                  mode: str = "rigorous") -> np.ndarray:
    """(N, K) slack per row for float32 execution, summed over the outputs with ``|C|``:
    ``'rigorous'``: ``factor`` times a rigorous bound on ``|ŷ - y|`` per output at each input
    (``bounds.rounding.output_padding`` on the point); ``'measured'``: ``4 * factor`` times the
    difference of the network's float32 ONNX export and the IR there. Both at least 1e-7 times
    the size of the outputs (1e-6 when measured)."""
    vals = network.forward_all(X)
    if mode == "rigorous":
        pad = output_padding(network, np.eye(network.n_outputs), vals, vals)      # (N, n_out)
        floor_rel = 1e-7
    else:
        pad = 4.0 * np.abs(float32_outputs(network, X) - vals[-1])
        floor_rel = 1e-6
    floor = floor_rel * np.maximum(1.0, np.abs(vals[-1]).max(axis=1, keepdims=True))
    return factor * np.einsum("nkj,nj->nk", np.abs(cons.C), pad) + floor


def _le_rows(prog: Program, C, cols, d, name: str) -> np.ndarray:
    """Rows ``C @ x[cols] <= d``."""
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    return prog.add_dense_rows(C, cols, np.full(d.shape[0], -INF), d, name=name)


# --------------------------------------------------------------------------- the search
class _Search:
    """The program of one fine-tuning run and its CEGAR solve loop."""

    def __init__(self, net: Network, li: int, X, cons: OutputConstraints, slack, *, bound, mask,
                 train_bias, segments, relu, backend, solver_options, deadline, top_k, max_refinements, keep, keep_mode,
                 keep_margin, verbose):
        self.net, self.li, self.X, self.cons = net, li, X, cons
        self.backend, self.deadline, self.top_k = backend, deadline, int(top_k)
        self.max_refinements, self.verbose = int(max_refinements), verbose
        self.refinements = 0
        self.solver_calls = 0
        self.prog = Program(name="finetune")
        self.we: WeightEncoding = encode_weight_layer(self.prog, net, li, X, delta=bound, weight_mask=mask,
                                                      train_bias=train_bias, segments=segments, relu=relu)
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
        slack = np.concatenate([self.keep_cons.subset(np.arange(i, min(i + chunk, Xk.shape[0]))).slack(
            candidate.forward(Xk[i:i + chunk])) for i in range(0, Xk.shape[0], chunk)])
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
            if not bad:
                if self.keep is not None and self.keep_mode == "hard" and \
                        self.add_violated_keep_rows(self.we.apply(sol.x)) > 0:
                    info.keep_rounds += 1
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


def _norm_objective(we: WeightEncoding, norm: str) -> np.ndarray:
    return we.add_change_objective(norm)


def finetune(network, inputs, spec, *, layer: int = -1, norm: str = "linf", tie_break: Optional[str] = None,
             keep=None, keep_mode: str = "hard", keep_margin: float = 0.0, mask=None, train_bias: bool = True,
             bound: Optional[float] = None, relu: str = "exact", segments=None, backend: str = "highs",
             solver_options: Optional[dict] = None, time_limit: Optional[float] = None,
             max_refinements: int = 50, top_k: int = 4,
             slack_factor: float = 2.0, slack_mode: str = "measured", max_float32_retries: int = 3,
             verbose: bool = False) -> RepairResult:
    """The smallest change of one layer that makes every input meet its rows (see the module).

    Parameters
    ----------
    network : Network, torch module, or path (ONNX/torch)
    inputs : array (N, ...)
        The inputs (flat or in the network's input shape).
    spec : OutputConstraints or int labels (N,)
        What each input must meet (:mod:`.constraints`); plain labels mean :func:`ensure` with
        margin 1e-3.
    layer : int
        Which Affine layer changes: 0 the first, -1 (default) the last.
    norm : 'linf' or 'l1'
        The first-stage objective.
    tie_break : None, 'l1', 'linf' or 'keep'
        The second-stage objective among first-stage optima (kept within 1e-7 relative).
    keep : (inputs, labels), optional
        Inputs whose labels must not change: constraints (``keep_mode='hard'``) or the second
        objective (``'hinge'``: least summed violation, LP; ``'count'``: fewest violated, MILP).
    mask : bool (out, in), optional
        Which weights may change; ``train_bias=False`` freezes the bias.
    bound : float, optional
        ``|dW|, |db| <= bound`` (``inf`` allowed). Default: ``1000 * max(1, max |W|)`` for the
        last layer and with ``relu='pattern'`` (so that an LP's infeasibility can be certified
        from the solver's ray); ``max |W|`` of the layer for an earlier one with exact ReLUs (the
        big-M of the layers after it need a small box). ``infeasible`` means: no change within
        this box.
    relu : 'exact' or 'pattern'
        How ReLUs after the changed layer are encoded: exactly (big-M, a MILP: the minimum over
        the whole box, and ``infeasible`` is a proof), or kept in their phase at each input (an
        LP: fast, every solution exact, but the minimum only over changes that flip no phase,
        and infeasibility proves nothing, so it is ``unknown``).
    segments : int or dict, optional
        Initial sigmoid/tanh segments after the changed layer (refined lazily).
    solver_options : dict, optional
        Passed to the backend. Default for HiGHS: its interior point method (with crossover) when
        the program is an LP, which is far faster on these dense programs; give ``{}`` for
        HiGHS' own choice.
    slack_mode, slack_factor, max_float32_retries
        The float32 slack of each row (:func:`float32_slack`): ``'measured'`` (default: 8x the
        export's observed rounding at the input) or ``'rigorous'`` (2x a rigorous bound, which
        can be far larger), and how often failing rows get more slack and are solved again.
    time_limit : float, optional
        Seconds for the whole run (``unknown`` with reason ``time limit`` when spent).

    Returns
    -------
    RepairResult
        ``repaired`` only when every row holds on the float32 ONNX export; ``infeasible`` with
        the kind of proof in ``reason``; else ``unknown``.
    """
    t_start = time.perf_counter()
    net = as_network(network)
    if norm not in NORMS:
        raise RepairInputError(f"norm must be one of {NORMS}, got {norm!r}")
    if tie_break not in TIE_BREAKS:
        raise RepairInputError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
    if relu not in ("exact", "pattern"):
        raise RepairInputError(f"relu must be 'exact' or 'pattern', got {relu!r}")
    if keep_mode not in KEEP_MODES:
        raise RepairInputError(f"keep_mode must be one of {KEEP_MODES}, got {keep_mode!r}")
    li = affine_layer_index(net, layer)
    X = as_inputs(net, inputs)
    cons = _as_constraints(net, spec, X.shape[0])
    W = net.layers[li].dense_W()
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != W.shape:
            raise RepairInputError(f"mask has shape {mask.shape}, layer {layer}'s weight {W.shape}")
    if keep is not None:
        if not (isinstance(keep, (tuple, list)) and len(keep) == 2):
            raise RepairInputError("keep must be a pair (inputs, labels)")
        Xk = as_inputs(net, keep[0], "keep inputs")
        yk = np.asarray(keep[1])
        if yk.shape != (Xk.shape[0],):
            raise RepairInputError(f"{Xk.shape[0]} keep inputs but {yk.shape} keep labels")
        keep = (Xk, yk)
        ensure(yk, net.n_outputs)           # validates the labels
    if tie_break == "keep" and (keep is None or keep_mode == "hard"):
        raise RepairInputError("tie_break='keep' needs keep=(inputs, labels) with keep_mode 'hinge' or 'count'")
    if keep is not None and keep_mode != "hard" and tie_break != "keep":
        raise RepairInputError(f"keep_mode={keep_mode!r} is a second-stage objective: pass tie_break='keep'")
    if tie_break == norm:
        tie_break = None
    last = li == len(net.layers) - 1 or all(isinstance(l, Affine) for l in net.layers[li + 1:])
    if bound is None:
        # finite even where no big-M needs it: a Farkas certificate from a solver's (slightly
        # inexact) ray needs every column bounded (see docs/REPAIR.md)
        wmax = float(np.abs(W).max(initial=0.0))
        bound = LARGE_BOUND * max(1.0, wmax) if last or relu == "pattern" else wmax
    bound = float(bound)
    if not bound > 0:
        raise RepairInputError(f"bound must be > 0, got {bound!r}")
    deadline = None if time_limit is None else t_start + float(time_limit)

    base = dict(status=UNKNOWN, original=net, layer=li)
    # already met? (no change needed)
    chk0 = check_constraints(net, X, cons)
    if chk0.all_met and (keep is None or keep_mode != "hard" or bool(np.all(
            check_constraints(net, keep[0], ensure(keep[1], net.n_outputs, keep_margin)).met))):
        m, n_in = W.shape
        return RepairResult(REPAIRED, RepairReason.ALREADY_MET, net, network=net, layer=li,
                            dW=np.zeros((m, n_in)), db=np.zeros(m), norms={"linf": 0.0, "l1": 0.0}, optimal=True,
                            lower_bound=0.0, check=chk0, time=time.perf_counter() - t_start)

    if slack_mode not in SLACK_MODES:
        raise RepairInputError(f"slack_mode must be one of {SLACK_MODES}, got {slack_mode!r}")
    slack = float32_slack(net, X, cons, slack_factor, slack_mode)
    try:
        search = _Search(net, li, X, cons, slack, bound=bound, mask=mask, train_bias=train_bias,
                         segments=segments, relu=relu, backend=backend, solver_options=solver_options, deadline=deadline, top_k=top_k,
                         max_refinements=max_refinements, keep=keep, keep_mode=keep_mode,
                         keep_margin=keep_margin, verbose=verbose)
    except BigMError as exc:
        return RepairResult(reason=RepairReason.ENCODING, message=str(exc), time=time.perf_counter() - t_start,
                            **base)
    we, prog = search.we, search.prog
    stages = []

    def done(st, reason, message="", **kw):
        return RepairResult(status=st, reason=reason, original=net, layer=li, stages=stages,
                            time=time.perf_counter() - t_start, refinements=search.refinements,
                            message=message, **kw)

    t1 = _norm_objective(we, norm)
    second_cols = None
    cap_row = None
    for attempt in range(max_float32_retries + 1):
        # stage 1: the smallest change
        if attempt:
            prog.set_objective(t1, np.ones(len(t1)), "min")
        status, sol, info = search.solve(f"min {norm}" + (f" (float32 retry {attempt})" if attempt else ""))
        stages.append(info)
        if status == "infeasible" and search.pattern:
            return done(UNKNOWN, RepairReason.PATTERN_INFEASIBLE,
                        "no change keeping every ReLU phase meets the rows; try relu='exact'")
        if status == "infeasible":
            if not search.exact:
                reason = RepairReason.ABSTRACTION_INFEASIBLE
            elif prog.n_integer == 0:
                reason = RepairReason.LP_FARKAS
            else:
                reason = RepairReason.MILP_INFEASIBLE
            return done(INFEASIBLE, reason, f"no change with |dW|, |db| <= {bound:g} meets every row "
                                            f"(with the float32 slack of at most {float(np.max(search.slack)):.3g})")
        if status != "ok":
            return done(UNKNOWN, _why(status), sol.message if sol is not None else "")
        first = float(sol.objective)
        lower = sol.bound if sol.status is Status.OPTIMAL and sol.bound is not None and np.isfinite(sol.bound) \
            else None
        optimal = lower is not None

        # stage 2: the tie-break among first-stage optima
        if tie_break is not None:
            cap = first * (1 + 1e-7) + 1e-9
            if cap_row is not None:
                prog.deactivate_rows(cap_row)
            cap_row = prog.add_rows(np.zeros(len(t1), dtype=np.int64), t1, np.ones(len(t1)), -INF, cap,
                                    name="stage1_cap")
            if second_cols is None:
                second_cols = (search.keep_objective(cap) if tie_break == "keep"
                               else _norm_objective(we, tie_break))
            prog.set_objective(second_cols, np.ones(len(second_cols)), "min")
            status2, sol2, info2 = search.solve(f"tie-break {tie_break}")
            stages.append(info2)
            if status2 == "ok":
                sol = sol2
            # otherwise the first-stage solution stands (it is a valid change); the stage says why

        dW, db = we.decode(sol.x)
        repaired = we.apply(sol.x)
        chk = check_constraints(repaired, X, cons)
        if chk.all_met or attempt == max_float32_retries:
            break
        # rounding of the float32 export broke some row: ask those inputs for more slack
        search.widen_slack(np.flatnonzero(~chk.met), chk.slack)
    norms = {"linf": float(max(np.abs(dW).max(initial=0.0), np.abs(db).max(initial=0.0))),
             "l1": float(np.abs(dW).sum() + np.abs(db).sum())}
    extra = {"first_stage_objective": first, "solver_calls": search.solver_calls,
             "n_binaries": int(prog.n_integer), "slack_max": float(np.max(search.slack)),
             "float32_retries": attempt}
    if keep is not None:
        kc = check_constraints(repaired, keep[0], ensure(keep[1], net.n_outputs, keep_margin))
        extra["keep_rows_added"] = search.keep_rows
        extra["keep_met"] = kc.n_met
        extra["keep_total"] = int(kc.met.size)
    kw = dict(dW=dW, db=db, norms=norms, optimal=optimal, lower_bound=lower, check=chk, extra=extra)
    if not chk.all_met:
        return done(UNKNOWN, RepairReason.FLOAT32_CHECK_FAILED,
                    f"{chk.met.size - chk.n_met} inputs fail on the float32 export", **kw)
    return done(REPAIRED, RepairReason.CHECKED, network=repaired, **kw)


def _why(status: str) -> RepairReason:
    return {"time": RepairReason.TIME_LIMIT, "refinement": RepairReason.REFINEMENT_LIMIT}.get(
        status, RepairReason.SOLVER_FAILED)


__all__ = ["finetune", "as_network", "as_inputs", "affine_layer_index", "float32_slack", "NORMS", "TIE_BREAKS",
           "KEEP_MODES"]
