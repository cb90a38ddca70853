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

from ..encoding.errors import BigMError
from ..encoding.program import INF
from ..network.ir import Affine
from ..solvers import Status
from .check import check_constraints
from .constraints import RepairInputError, ensure
from .inputs import (LARGE_BOUND, SLACK_MODES, affine_layer_index, as_constraints, as_inputs, as_network,
                     float32_slack)
from .result import INFEASIBLE, REPAIRED, UNKNOWN, RepairReason, RepairResult
from .search import FinetuneSearch

NORMS = ("linf", "l1")
TIE_BREAKS = (None, "l1", "linf", "keep")
KEEP_MODES = ("hard", "hinge", "count")


def finetune(network, inputs, spec, *, layer: int = -1, norm: str = "linf", tie_break: Optional[str] = None,
             keep=None, keep_mode: str = "hard", keep_margin: float = 0.0, mask=None, train_bias: bool = True,
             bound: Optional[float] = None, relu: str = "exact", segments=None, backend: str = "highs",
             solver_options: Optional[dict] = None, time_limit: Optional[float] = None,
             max_refinements: int = 50, top_k: int = 4,
             slack_factor: float = 2.0, slack_mode: str = "measured", max_float32_retries: int = 3,
             extra_rows=None, verbose: bool = False) -> RepairResult:
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
    extra_rows : callable, optional
        More requirements on the change variables (``encoding.dW``, ``encoding.db`` of the
        :class:`~cegarnn.encoding.weights.WeightEncoding`), added lazily:
        ``extra_rows(program, encoding, None)`` before the first solve, then
        ``extra_rows(program, encoding, x)`` at every candidate ``x`` that meets everything else;
        it returns how many rows it added (0: the candidate meets them), e.g.
        :class:`~.spec_area.AreaRows`. They bind every stage; the float32 check covers only the
        inputs, so what the extra rows promise is the caller's to verify.
    verbose : bool
        One line per solve and per keep round on stderr (progress of long runs).
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
    cons = as_constraints(net, spec, X.shape[0])
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
    if extra_rows is None and chk0.all_met and (keep is None or keep_mode != "hard" or bool(np.all(
            check_constraints(net, keep[0], ensure(keep[1], net.n_outputs, keep_margin)).met))):
        m, n_in = W.shape
        return RepairResult(REPAIRED, RepairReason.ALREADY_MET, net, network=net, layer=li,
                            dW=np.zeros((m, n_in)), db=np.zeros(m), norms={"linf": 0.0, "l1": 0.0}, optimal=True,
                            lower_bound=0.0, check=chk0, time=time.perf_counter() - t_start)

    if slack_mode not in SLACK_MODES:
        raise RepairInputError(f"slack_mode must be one of {SLACK_MODES}, got {slack_mode!r}")
    slack = float32_slack(net, X, cons, slack_factor, slack_mode)
    try:
        search = FinetuneSearch(net, li, X, cons, slack, bound=bound, mask=mask, train_bias=train_bias,
                         segments=segments, relu=relu, backend=backend, solver_options=solver_options, deadline=deadline, top_k=top_k,
                         max_refinements=max_refinements, keep=keep, keep_mode=keep_mode,
                         keep_margin=keep_margin, verbose=verbose, lazy_rows=extra_rows)
    except BigMError as exc:
        return RepairResult(reason=RepairReason.ENCODING, message=str(exc), time=time.perf_counter() - t_start,
                            **base)
    we, prog = search.we, search.prog
    stages = []

    def done(st, reason, message="", **kw):
        return RepairResult(status=st, reason=reason, original=net, layer=li, stages=stages,
                            time=time.perf_counter() - t_start, refinements=search.refinements,
                            message=message, **kw)

    t1 = we.add_change_objective(norm)
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
                               else we.add_change_objective(tie_break))
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
           "KEEP_MODES", "SLACK_MODES", "LARGE_BOUND"]
