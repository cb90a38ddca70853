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


def unsafe_margin(problem: Problem, y):
    """Per-sample unsafe margin of outputs ``y`` (torch, (B, m)): min over the unsafe region's
    disjuncts of max over its rows of ``C y - d`` (< 0: inside the unsafe region)."""
    import torch
    per = [torch.max(y @ torch.as_tensor(C, dtype=y.dtype).T - torch.as_tensor(d, dtype=y.dtype), dim=1).values
           for C, d in problem.unsafe.disjuncts]
    return torch.min(torch.stack(per, dim=1), dim=1).values


def low_margin_points(problem: Problem, n: int = 8, below: float = 0.05, steps: int = 20,
                      seed: int = 0) -> np.ndarray:
    """Up to ``n`` free-input points of ``problem``'s box (``(k, n_free)``, ``k <= n``) whose
    unsafe margin (< 0: a counterexample on the float64 IR) is below ``below`` after ``steps``
    steps of sign-gradient descent from ``n`` uniform starts; the lowest margins first."""
    if n <= 0:
        return np.zeros((0, problem.lower.shape[0]))
    import torch

    from ..network.torch_io import to_torch
    lo, hi = problem.lower, problem.upper
    rng = np.random.default_rng(seed)
    z0 = lo + (hi - lo) * rng.random((n, lo.shape[0]))
    net = to_torch(problem.network)
    tlo, thi = torch.as_tensor(lo), torch.as_tensor(hi)
    z = torch.as_tensor(z0).requires_grad_(True)
    step = (thi - tlo) / 4
    for t in range(steps):
        m = unsafe_margin(problem, net(z))
        (g,) = torch.autograd.grad(m.sum(), z)
        with torch.no_grad():
            z = torch.minimum(torch.maximum(z - step * torch.sign(g), tlo), thi)
        z.requires_grad_(True)
        if t % 5 == 4:
            step = step / 2
    with torch.no_grad():
        zf = z.detach().numpy()
    m = unsafe_margin(problem, torch.as_tensor(problem.network.forward(zf))).numpy()
    order = np.argsort(m, kind="stable")
    return zf[order[m[order] < below]]


__all__ = ["low_margin_points", "unsafe_margin"]
