"""The verification methods: one function each, registered in :data:`METHODS`.

A method takes the :class:`~.context.RunContext` of a run (after the shared attack found nothing)
and returns a :class:`~.result.Result`; it may raise :class:`~.context.TimeLimit`. Adding a method
is one function here and one line in :data:`METHODS` (plus its ``conf/verifier/<name>.yaml``).
A method's name appears in code only in this registry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ..bounds.box import LayerBounds
from . import marabou as _marabou
from .box_solve import BoxKind, solve_box
from .branching import branch_and_refine
from .context import RunContext, TimeLimit
from .neuron_bab import neuron_branch_and_bound
from .rotated import rotated_run
from .result import FALSIFIED, UNKNOWN, VERIFIED, Reason, Result


@dataclass(frozen=True)
class Method:
    """A registered method and what it promises."""

    run: Callable[[RunContext], Result]
    sound: bool                   # 'verified' only from a proof that covers the executed model
    complete: bool                # decides every instance given enough time (margins beyond the padding)
    needs: Optional[Callable[[], Optional[str]]] = None   # None if usable, else why not (an install hint)

    @property
    def doc(self) -> str:
        return (self.run.__doc__ or "").strip()

    def missing(self) -> Optional[str]:
        """None if the method can run here, else why not."""
        return None if self.needs is None else self.needs()

    def require(self) -> None:
        """Raise ``RuntimeError`` (with the install hint) if the method cannot run here."""
        why = self.missing()
        if why is not None:
            raise RuntimeError(why)


# --------------------------------------------------------------------------- the methods
def cegar(ctx: RunContext) -> Result:
    """CEGAR: batched bounds on a queue of subproblems, an LP/MILP abstraction (one segment per
    sigmoid, ReLU exact or triangle) on the ones they leave open, refinement at each spurious
    candidate. Policy ``auto``: ``input`` (boxes split along the dimension that matters most for
    the candidate) up to ``max_split_dims`` free inputs, else ``neuron`` (the neuron branch and
    bound with the LP on open subproblems, its spurious candidate choosing the sigmoid segment
    split at its own pre-activation; input or neuron split per subproblem by measured progress;
    docs/NEURON_BAB.md); but ``rotated`` above ``max_split_dims`` free inputs where the first layer
    sees the box through at most ``max_split_dims`` directions (input splitting along them, then
    ``neuron`` for the rest of the time; docs/ROTATED_INPUTS.md). ``segments``: one box, its LP
    refined at sigmoid segments in place.

    Sound. Complete in the limit with input splitting (boxes shrink until bounds or a box centre
    decide them), up to the padding and a smallest box width of 1e-9; so is ``neuron`` (as
    ``neuron-bab``); the segments policy refines until the time or iteration limit. Requires the
    bounds provider and the LP/MILP backend."""
    if ctx.policy == "neuron":
        return neuron_branch_and_bound(ctx, guided=True)
    if ctx.policy == "rotated":
        return rotated_run(ctx)
    return branch_and_refine(ctx, use_solver=True, split_allowed=ctx.policy == "input")


def lp(ctx: RunContext) -> Result:
    """One LP/MILP solve on the whole box after the root bounds: one segment per sigmoid, ReLU
    exact, no refinement (a spurious candidate ends in ``unknown``).

    Sound, not complete. Requires the bounds provider and the LP/MILP backend."""
    return _one_solve(ctx, segments=None)


def milp_fixed(ctx: RunContext) -> Result:
    """As ``lp`` but with ``fixed_segments`` uniform segments per sigmoid up front (a MILP).

    Sound, not complete (a MILP dual bound carries a margin, not a certificate). Requires the
    bounds provider and a MILP backend."""
    return _one_solve(ctx, segments=ctx.opts.fixed_segments)


def crown(ctx: RunContext) -> Result:
    """Bounds (``bounds``, CROWN by default) on the whole box only: ``verified`` or ``unknown``.

    Sound, not complete. Requires the bounds provider (auto_LiRPA for CROWN; falls back to
    interval bounds)."""
    b, proof = _root_bounds(ctx)
    return proof or ctx.result(UNKNOWN, f"{b.method} bounds do not prove the property")


def bab_crown(ctx: RunContext) -> Result:
    """Branch and bound on the input box with bounds only: bisection, box-centre checks, no solver.

    Sound. Complete in the limit (as ``cegar`` with input splitting). Requires the bounds provider."""
    return branch_and_refine(ctx, use_solver=False, split_allowed=True)


def neuron_bab(ctx: RunContext) -> Result:
    """Branch and bound over subproblems (input box + neuron splits: ReLU phases, sigmoid/tanh
    segments split at the candidate's pre-activation) bounded in batches by our own CROWN
    (alpha-CROWN at the root, warm-started alpha-CROWN everywhere with ``bounds=alpha-crown``);
    input or neuron split chosen per subproblem by measured progress; LP/MILP on pure-ReLU leaves
    with few unstable neurons within ``solver_time_share``. docs/NEURON_BAB.md.

    Sound (every leaf infeasible or above tol + its own execution padding). Complete in the limit
    for ReLU networks up to the padding (all ReLUs fixed, then input bisection); with sigmoids as
    input splitting. Requires torch for alpha-CROWN (``bounds=crown`` does without)."""
    return neuron_branch_and_bound(ctx)


def marabou(ctx: RunContext) -> Result:
    """The Marabou SMT solver on the whole box as one query, the unsafe region grown by the
    box's execution padding (from CROWN bounds) so that an ``unsat`` covers the executed model;
    a ``sat`` assignment must pass ``confirm``.

    Not sound: Marabou's ``unsat`` is unchecked (maraboupy 2.0.0 answered ``unsat`` on instances
    with confirmed counterexamples: 8 of 302 random instances, margins down to -3.9), so it is
    ``unknown`` unless ``trust_unchecked=True`` makes it ``verified``. Not complete (with sigmoids
    it only refutes). Requires maraboupy (Linux x86-64, Python <= 3.12); no tanh."""
    if ctx.remaining() < 1.0:       # Marabou's timeout is in whole seconds
        raise TimeLimit()
    problem = ctx.problem
    pad = ctx.padding(ctx.bounds(problem.lower, problem.upper, "crown"))
    padded = problem.network.with_output_layer(ctx.C, -(ctx.d + pad))
    ctx.check_time()
    return _marabou.solve(problem, padded, ctx.groups, _marabou.whole_seconds(ctx.remaining()), ctx.stats,
                          ctx.method, ctx.start, stop_at=ctx.deadline + 0.1,
                          trust_unsat=ctx.opts.trust_unchecked)


def _root_bounds(ctx: RunContext) -> tuple[LayerBounds, Optional[Result]]:
    """Bounds on the whole box, and the ``verified`` result if they prove the property."""
    b = ctx.bounds(ctx.problem.lower, ctx.problem.upper)
    if not ctx.proved(b):
        return b, None
    ctx.stats.boxes_closed_by_bounds += 1
    return b, ctx.result(VERIFIED, f"proved by {b.method} bounds")


def _one_solve(ctx: RunContext, segments: Optional[int]) -> Result:
    b, proof = _root_bounds(ctx)
    if proof is not None:
        return proof
    out = solve_box(ctx, 0, b, refine=False, segments=segments)
    if out.kind is BoxKind.CLOSED:
        return ctx.result(VERIFIED, Reason.PROVED_BY_SOLVER)
    if out.kind is BoxKind.FALSIFIED:
        return ctx.result(FALSIFIED, Reason.SOLVER_COUNTEREXAMPLE, out.counterexample)
    return ctx.result(UNKNOWN, out.reason)


def _maraboupy_missing() -> Optional[str]:
    return None if _marabou.available() else _marabou.INSTALL_HINT


# --------------------------------------------------------------------------- the registry
METHODS: dict[str, Method] = {
    "cegar": Method(cegar, sound=True, complete=True),
    "lp": Method(lp, sound=True, complete=False),
    "milp-fixed": Method(milp_fixed, sound=True, complete=False),
    "crown": Method(crown, sound=True, complete=False),
    "bab-crown": Method(bab_crown, sound=True, complete=True),
    "neuron-bab": Method(neuron_bab, sound=True, complete=True),
    "marabou": Method(marabou, sound=False, complete=False, needs=_maraboupy_missing),
}
DEFAULT_METHOD = "cegar"


def check_method(name: str) -> Method:
    """The registered method ``name``; ``ValueError`` listing :data:`METHODS` if there is none.
    (Whether it can run here: :meth:`Method.missing` / :meth:`Method.require`.)"""
    try:
        return METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None
