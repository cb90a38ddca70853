"""The ``rotated`` policy of ``cegar``: input splitting in the principal directions of the first layer.

The problem is rewritten over rotated inputs (:func:`cegarnn.specs.rotation.rotated_problem`), the
``input`` policy runs on it for :data:`ROTATED_SHARE` of the time left, and its answer is carried back: a proof as it is (the
rotated problem's padding covers the original model), a counterexample only once its point, mapped
into the original box, is confirmed on the original problem. Anything else (a candidate that does
not survive the mapping, a bisection that ends without an answer) hands the rest of the time to the
``neuron`` policy on the original problem. (The rotated box is the bounding box of a zonotope:
where the image of the original box is not a box, bisection may keep splitting near corners that
hold no real point, so it cannot have all the time.)
"""
from __future__ import annotations

import logging
from dataclasses import fields, replace

from ..specs.rotation import rotated_problem
from .branching import branch_and_refine
from .confirm import confirm
from .context import RunContext, TimeLimit
from .neuron_bab import neuron_branch_and_bound
from .result import FALSIFIED, VERIFIED, Reason, Result, Stats

log = logging.getLogger("cegarnn.verifier")

#: share of the time left that the rotated problem gets before the neuron policy takes over
ROTATED_SHARE = 0.5


def rotated_run(ctx: RunContext) -> Result:
    """``cegar`` with ``policy='rotated'`` (module docstring). Sound: ``verified`` from a proof on a
    problem whose box contains the image of the original one, padded for the rotation's rounding;
    ``falsified`` only with a counterexample confirmed on the original problem."""
    ctx.check_time()
    rp = rotated_problem(ctx.problem)
    rot = rp.rotation
    sub = RunContext.create(rp, ctx.method, replace(ctx.opts, policy="input",
                                                    time_limit=ROTATED_SHARE * ctx.remaining()))
    try:
        res = branch_and_refine(sub, use_solver=True, split_allowed=True)
    except TimeLimit:
        res = None
    finally:
        _add_stats(ctx.stats, sub.stats)
    ctx.stats.trajectory.append({"move": "rotated", "rank": rot.rank,
                                 "status": "time limit" if res is None else str(res.status)})
    if res is not None and res.status is VERIFIED:
        return ctx.result(VERIFIED, Reason.PROVED_ROTATED)
    if res is not None and res.status is FALSIFIED and res.counterexample is not None:
        c = res.counterexample
        cex = confirm(ctx.problem, rot.to_original(c.free_input), found_by=f"{c.found_by} (rotated inputs)")
        if cex is not None:
            return ctx.result(FALSIFIED, res.reason, cex)
    ctx.check_time()
    log.info("rotated inputs ended %s; neuron policy for the %.2f s left",
             "at their time share" if res is None else f"{res.status} ({res.reason})", ctx.remaining())
    ctx.policy = "neuron"
    return neuron_branch_and_bound(ctx, guided=True)


def _add_stats(into: Stats, other: Stats) -> None:
    """Add ``other``'s counters and times to ``into`` (the maximum for ``max_binaries``)."""
    for f in fields(Stats):
        a, b = getattr(into, f.name), getattr(other, f.name)
        if f.name == "max_binaries":
            setattr(into, f.name, max(a, b))
        elif f.name not in ("wall_time", "trajectory") and isinstance(a, (int, float)):
            setattr(into, f.name, a + b)
