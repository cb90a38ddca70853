"""The invariance questions by name: one function and one line each.

Every entry's ``run(networks, center, radius, domain=None, **options)`` takes a list of networks
(``n_networks`` of them: Networks, ``nn.Module``s or model paths), the centre and radius of an L∞
ball (intersected with the optional ``domain`` box; for ``radius`` the largest radius tried) and the
question's own keyword options; it returns a result with ``status``, ``reason``, ``summary()`` and
``to_dict()``. The CLI (``cegarnn invariance``) and the Hydra entry (``cegarnn-invariance``) reach
every question through :data:`PROBLEMS` only::

    PROBLEMS["myquestion"] = InvarianceProblem(_myquestion, 1, "one line on what it answers")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .inputs import InvarianceInputError, as_model, ball_box


@dataclass(frozen=True)
class InvarianceProblem:
    run: Callable
    n_networks: int
    summary: str


def _box(networks, center, radius, domain):
    n = as_model(networks[0]).network.n_inputs
    _, lo, hi = ball_box(center, radius, n, domain)
    return lo, hi


def _invertibility(networks, center, radius, domain=None, **options):
    from .invertibility import invertibility
    return invertibility(networks[0], center, radius, domain=domain, **options)


def _pseudo(networks, center, radius, domain=None, **options):
    from .invertibility import pseudo_invertibility
    return pseudo_invertibility(networks[0], center, radius, domain=domain, **options)


def _radius(networks, center, radius, domain=None, **options):
    from .radius import certified_radius
    return certified_radius(networks[0], center, r_max=radius, domain=domain, **options)


def _matching(networks, center, radius, domain=None, **options):
    from .matching import matching
    return matching(networks[0], networks[1], *_box(networks, center, radius, domain), **options)


def _max_difference(networks, center, radius, domain=None, **options):
    from .matching import max_difference
    return max_difference(networks[0], networks[1], *_box(networks, center, radius, domain), **options)


PROBLEMS: dict[str, InvarianceProblem] = {
    "invertibility": InvarianceProblem(_invertibility, 1, "max ||x - y|| over x, y in the ball with f(x) = f(y) (or within tau): certified <= tol, or a confirmed pair"),
    "pseudo-invertibility": InvarianceProblem(_pseudo, 1, "the same with y fixed at the centre"),
    "radius": InvarianceProblem(_radius, 1, "largest ball (radius <= the given one) on which (pseudo-)invertibility certifies; proved/refuted/unknown radii"),
    "matching": InvarianceProblem(_matching, 2, "max ||f2(x) - f2(y)|| over the box with f1(x) = f1(y) (or within tau): proved bound and confirmed witness"),
    "max-difference": InvarianceProblem(_max_difference, 2, "max ||f1(x) - f2(x)|| over the box (network vs its pruned/repaired copy): proved bound and confirmed witness"),
}


def get_problem(name: str) -> InvarianceProblem:
    try:
        return PROBLEMS[name]
    except KeyError:
        raise InvarianceInputError(f"unknown invariance problem {name!r}; known: {', '.join(PROBLEMS)}") from None


def run_problem(name: str, networks: list, center, radius, domain=None, **options):
    """Run ``PROBLEMS[name]`` after checking that it got as many networks as it needs."""
    prob = get_problem(name)
    if len(networks) != prob.n_networks:
        raise InvarianceInputError(f"{name} needs {prob.n_networks} network(s), got {len(networks)}")
    return prob.run(list(networks), center, radius, domain, **options)


__all__ = ["PROBLEMS", "InvarianceProblem", "get_problem", "run_problem"]
