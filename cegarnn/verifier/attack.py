"""Cheap falsification: random samples and projected gradient descent on the property margin.

Both run on the float64 IR in numpy (gradients by :meth:`Network.vjp`), so the
attack that starts every run needs no torch; candidates are confirmed by :mod:`.confirm`."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..specs.problem import Problem
from .confirm import first_confirmed
from .result import Counterexample


def margin_cotangent(problem: Problem, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample unsafe margin (min over disjuncts of max over rows of ``C y - d``) of outputs
    ``y`` (B, m), and its gradient with respect to ``y`` (B, m): the row attaining the max of the
    disjunct attaining the min (first one on ties)."""
    per_disjunct, rows = [], []
    for C, d in problem.unsafe.disjuncts:
        s = y @ np.asarray(C, dtype=np.float64).T - d                    # (B, rows)
        k = np.argmax(s, axis=1)
        per_disjunct.append(s[np.arange(len(s)), k])
        rows.append(np.asarray(C, dtype=np.float64)[k])                   # (B, m)
    m_all = np.stack(per_disjunct, axis=1)                                # (B, disjuncts)
    j = np.argmin(m_all, axis=1)
    cot = np.stack(rows, axis=1)[np.arange(len(y)), j]
    return m_all[np.arange(len(y)), j], cot


def random_attack(problem: Problem, n: int = 256, seed: int = 0) -> Optional[Counterexample]:
    """Uniform samples in the box plus its corners' centre; confirmed hit or None."""
    rng = np.random.default_rng(seed)
    lo, hi = problem.lower, problem.upper
    zs = lo + (hi - lo) * rng.random((n, lo.shape[0]))
    zs = np.vstack([(lo + hi) / 2, zs])
    return first_confirmed(problem, zs, "sampling")


def pgd_attack(problem: Problem, restarts: int = 8, steps: int = 40, seed: int = 0) -> Optional[Counterexample]:
    """Sign-gradient PGD minimising the margin inside the box, on the float64 IR."""
    lo, hi = problem.lower, problem.upper
    width = hi - lo
    if float(width.max()) == 0.0:
        return None
    rng = np.random.default_rng([seed, 1])          # a stream apart from random_attack's
    z = lo + width * rng.random((restarts, lo.shape[0]))
    net = problem.network
    best_z, best_m = None, None
    step = width / 4
    for t in range(steps):
        y, back = net.vjp(z)
        m, cot = margin_cotangent(problem, y)
        grad = back(cot)
        if best_m is None:
            best_m, best_z = m.copy(), z.copy()
        better = m < best_m
        best_m = np.where(better, m, best_m)
        best_z[better] = z[better]
        z = np.clip(z - step * np.sign(grad), lo, hi)
        if t % 10 == 9:
            step = step / 2
    m, _ = margin_cotangent(problem, net.forward(z))
    better = m < best_m
    best_z[better] = z[better]
    return first_confirmed(problem, best_z, "pgd")
