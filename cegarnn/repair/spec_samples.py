"""Extra training points for :func:`~.spec_loop.repair_spec`: latent points where the current
classifier is wrong or nearly so, found by projected sign-gradient descent on the property margin.

The verifier returns one counterexample per problem and round; a change that fixes exactly that
image usually leaves a neighbour wrong, and the next round finds it. Points of low margin spread
over the latent box (several restarts) teach the change more per round. They are real inputs
``G(x, z)`` with the problem's label, so constraining them is always right; they prove nothing —
the final verdicts stay the verifier's.
"""
from __future__ import annotations

import numpy as np

from ..specs.problem import Problem
from ..verifier.attack import margin_cotangent


def low_margin_points(problem: Problem, n: int = 8, below: float = 0.05, steps: int = 20,
                      seed: int = 0) -> np.ndarray:
    """Up to ``n`` free-input points of ``problem``'s box (``(k, n_free)``, ``k <= n``) whose
    unsafe margin (< 0: a counterexample on the float64 IR) is below ``below`` after ``steps``
    steps of sign-gradient descent from ``n`` uniform starts; the lowest margins first."""
    if n <= 0:
        return np.zeros((0, problem.lower.shape[0]))
    lo, hi = problem.lower, problem.upper
    width = hi - lo
    rng = np.random.default_rng(seed)
    z = lo + width * rng.random((n, lo.shape[0]))
    step = width / 4
    net = problem.network
    for t in range(steps):
        y, back = net.vjp(z)
        _, cot = margin_cotangent(problem, y)
        z = np.clip(z - step * np.sign(back(cot)), lo, hi)
        if t % 5 == 4:
            step = step / 2
    m, _ = margin_cotangent(problem, net.forward(z))
    order = np.argsort(m, kind="stable")
    return z[order[m[order] < below]]


__all__ = ["low_margin_points"]
