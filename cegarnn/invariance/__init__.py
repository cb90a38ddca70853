"""Two copies of a network in one program: certified invertibility, pseudo-invertibility, the
certified radius, and network matching (docs/INVARIANCE.md).

* :func:`invertibility`, :func:`pseudo_invertibility` (:mod:`.invertibility`): max ``||x - y||``
  over a ball with ``f(x) = f(y)`` (or within ``tau``; ``y`` the centre for the pseudo version);
* :func:`certified_radius` (:mod:`.radius`): grow, then bisect, the ball's radius;
* :func:`matching`, :func:`max_difference` (:mod:`.matching`): two networks over one box;
* :data:`PROBLEMS` (:mod:`.registry`): the questions by name, used by the CLI and Hydra;
* results (:mod:`.result`): :class:`InvarianceResult`, :class:`RadiusResult` with an
  :class:`InvarianceStatus` (proved / refuted / unknown) and an :class:`InvarianceReason`;
* building blocks: :mod:`.core` (the solve-check-refine loop), :mod:`.objective` (norm
  maximisation), :mod:`.coupling` (rows linking two copies), :mod:`.check` (confirmation),
  :mod:`.blocks` (residual blocks with known answers).
"""
from .inputs import InvarianceInputError, InvarianceOptions
from .invertibility import invertibility, pseudo_invertibility
from .matching import matching, max_difference
from .radius import certified_radius
from .registry import PROBLEMS, InvarianceProblem, get_problem, run_problem
from .result import (PROVED, REFUTED, UNKNOWN, InvarianceReason, InvarianceResult, InvarianceStats,
                     InvarianceStatus, RadiusResult, RadiusStep, Witness)

__all__ = ["InvarianceInputError", "InvarianceOptions", "InvarianceProblem", "InvarianceReason",
           "InvarianceResult", "InvarianceStats", "InvarianceStatus", "PROBLEMS", "PROVED", "REFUTED",
           "RadiusResult", "RadiusStep", "UNKNOWN", "Witness", "certified_radius", "get_problem", "invertibility",
           "matching", "max_difference", "pseudo_invertibility", "run_problem"]
