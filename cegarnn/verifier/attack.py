"""Cheap falsification: random samples and projected gradient descent on the property margin."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..specs.problem import Problem
from ..network.torch_io import to_torch
from .confirm import first_confirmed
from .result import Counterexample


def _margin_torch(problem: Problem, y: torch.Tensor) -> torch.Tensor:
    """Per-sample unsafe margin (min over disjuncts of max over rows) — differentiable."""
    ms = []
    for C, d in problem.unsafe.disjuncts:
        Ct = torch.as_tensor(C, dtype=y.dtype)
        dt = torch.as_tensor(d, dtype=y.dtype)
        ms.append(torch.max(y @ Ct.T - dt, dim=1).values)
    return torch.min(torch.stack(ms, dim=1), dim=1).values


def random_attack(problem: Problem, n: int = 256, seed: int = 0) -> Optional[Counterexample]:
    """Uniform samples in the box plus its corners' centre; confirmed hit or None."""
    rng = np.random.default_rng(seed)
    lo, hi = problem.lower, problem.upper
    zs = lo + (hi - lo) * rng.random((n, lo.shape[0]))
    zs = np.vstack([(lo + hi) / 2, zs])
    return first_confirmed(problem, zs, "sampling")


def pgd_attack(problem: Problem, restarts: int = 8, steps: int = 40, seed: int = 0,
               model: Optional[torch.nn.Module] = None) -> Optional[Counterexample]:
    """Sign-gradient PGD minimising the margin inside the box (float64 torch copy of the IR)."""
    lo = torch.as_tensor(problem.lower)
    hi = torch.as_tensor(problem.upper)
    width = hi - lo
    if float(width.max()) == 0.0:
        return None
    model = model if model is not None else to_torch(problem.network)
    g = torch.Generator().manual_seed(seed)
    z = lo + width * torch.rand((restarts, lo.shape[0]), generator=g, dtype=torch.float64)
    best_z, best_m = None, None
    step = width / 4
    for t in range(steps):
        z.requires_grad_(True)
        m = _margin_torch(problem, model(z))
        (grad,) = torch.autograd.grad(m.sum(), z)
        with torch.no_grad():
            if best_m is None:
                best_m, best_z = m.detach().clone(), z.detach().clone()
            better = m < best_m
            best_m = torch.where(better, m, best_m)
            best_z[better] = z[better]
            z = torch.clamp(z - step * torch.sign(grad), lo, hi)
            if t % 10 == 9:
                step = step / 2
    with torch.no_grad():
        m = _margin_torch(problem, model(z))
        better = m < best_m
        best_z[better] = z[better]
    return first_confirmed(problem, best_z.numpy(), "pgd")
