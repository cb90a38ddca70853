"""Run a verification method on a problem.

Flow for one problem (``method='cegar'``)::

    attack (samples + PGD) ──► falsified
    work queue of input boxes ──► batched CROWN bounds ──► closed (proved) | centre check
        undecided box ──► abstraction (sigmoid: one segment, ReLU exact) ──► LP/MILP per disjunct
            margin > tol proved        ──► box closed
            candidate confirmed        ──► falsified
            candidate spurious         ──► refine: split sigmoid segments at its pre-activations
                                           (incremental, same live solver) or split the box along
                                           the dimension that matters most for the candidate

Where each part lives: :mod:`.options` (what a run may be asked), :mod:`.context` (the run's
clock, statistics, bounds and execution padding), :mod:`.box_solve` (the abstraction of one box),
:mod:`.branching` (the box queue), :mod:`.methods` (the registry: ``cegar`` and the baselines
``lp``, ``milp-fixed``, ``crown``, ``bab-crown``, ``marabou``). Every method answers ``verified``
only from a proof, ``falsified`` only with a counterexample confirmed on the IR and the original
model, else ``unknown`` with the reason.
"""
from __future__ import annotations

from typing import Optional

from ..specs.problem import Problem
from .attack import pgd_attack, random_attack
from .context import RunContext, TimeLimit
from .methods import DEFAULT_METHOD, METHODS, check_method  # noqa: F401 - METHODS: importable from here too
from .options import Options
from .result import FALSIFIED, UNKNOWN, Reason, Result
from .threads import limit_threads


def run(problem: Problem, method: Optional[str] = None, options: Optional[Options] = None) -> Result:
    """Run one registered method (default :data:`~.methods.DEFAULT_METHOD`) on one problem, after
    the cheap attack every method shares. Raises ``ValueError`` for an unknown method and
    ``RuntimeError`` if the method cannot run here (e.g. maraboupy missing)."""
    opts = options or Options()
    name = DEFAULT_METHOD if method is None else method
    chosen = check_method(name)
    with limit_threads(opts.threads):       # torch's and BLAS's (torch only if the run imports it)
        chosen.require()
        ctx = RunContext.create(problem, name, opts)
        try:
            return _attack(ctx) or chosen.run(ctx)
        except TimeLimit:
            return ctx.result(UNKNOWN, Reason.TIME_LIMIT)


def _attack(ctx: RunContext) -> Optional[Result]:
    """Samples and PGD (unless ``attack=False``): the falsified result of a confirmed hit, or None."""
    opts = ctx.opts
    if opts.attack:
        with ctx.timed("attack"):
            cex = random_attack(ctx.problem, seed=opts.seed) or pgd_attack(
                ctx.problem, restarts=opts.attack_restarts, steps=opts.attack_steps, seed=opts.seed)
        if cex is not None:
            return ctx.result(FALSIFIED, "counterexample found by " + cex.found_by, cex)
    ctx.check_time()
    return None
