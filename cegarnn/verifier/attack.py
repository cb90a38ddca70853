"""Cheap falsification: random samples and projected gradient descent on the property margin.

Both run on the float64 IR in numpy (gradients by :meth:`Network.vjp`), so the
attack that starts every run needs no torch; candidates are confirmed by :mod:`.confirm`.

PGD descends two kinds of objective at once, in one batch:

- **untargeted**: the unsafe margin ``min_j max_k (C_j y - d_j)_k`` (the region's margin); its
  gradient follows the disjunct that is currently closest (for a classifier: the runner-up
  class);
- **targeted**: one disjunct's own margin ``max_k (C_j y - d_j)_k``, for every disjunct ``j``
  (when there are at most ``max(restarts, MAX_TARGETS)`` of them).

The untargeted objective alone misses counterexamples of a disjunct that is not the closest one
where the descent starts: its gradient leads towards the runner-up's best region, which may be
safe, while another class wins only far away (in a latent box of 20-40 dimensions, uniform
starts all lie near the centre, so the runner-up is the same for every start).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..specs.problem import Problem
from .confirm import first_confirmed
from .result import Counterexample

#: targeted descent for every disjunct when there are at most max(restarts, MAX_TARGETS) of them
MAX_TARGETS = 10


def _disjunct_margins(problem: Problem, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Margins ``(B, J)`` of every disjunct of outputs ``y`` (B, m) and their gradients
    ``(B, J, m)`` (the row attaining each disjunct's max; first one on ties)."""
    ms, rows = [], []
    for C, d in problem.unsafe.disjuncts:
        C = np.asarray(C, dtype=np.float64)
        s = y @ C.T - d                                                   # (B, rows)
        k = np.argmax(s, axis=1)
        ms.append(s[np.arange(len(s)), k])
        rows.append(C[k])                                                 # (B, m)
    return np.stack(ms, axis=1), np.stack(rows, axis=1)


def margin_cotangent(problem: Problem, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample unsafe margin (min over disjuncts of max over rows of ``C y - d``) of outputs
    ``y`` (B, m), and its gradient with respect to ``y`` (B, m): the row attaining the max of the
    disjunct attaining the min (first one on ties)."""
    m_all, rows = _disjunct_margins(problem, y)
    j = np.argmin(m_all, axis=1)
    i = np.arange(len(y))
    return m_all[i, j], rows[i, j]


def random_attack(problem: Problem, n: int = 256, seed: int = 0) -> Optional[Counterexample]:
    """Uniform samples in the box plus its corners' centre; confirmed hit or None."""
    rng = np.random.default_rng(seed)
    lo, hi = problem.lower, problem.upper
    zs = lo + (hi - lo) * rng.random((n, lo.shape[0]))
    zs = np.vstack([(lo + hi) / 2, zs])
    return first_confirmed(problem, zs, "sampling")


def attack_targets(n_disjuncts: int, restarts: int) -> np.ndarray:
    """The objective of each PGD trajectory: -1 (untargeted) for ``restarts`` of them, then, when
    ``1 < n_disjuncts <= max(restarts, MAX_TARGETS)``, ``max(1, restarts // n_disjuncts)`` per
    disjunct (so at most about twice the untargeted batch)."""
    targets = [-1] * restarts
    if restarts > 0 and 1 < n_disjuncts <= max(restarts, MAX_TARGETS):
        per = max(1, restarts // n_disjuncts)
        targets += [j for j in range(n_disjuncts) for _ in range(per)]
    return np.asarray(targets, dtype=int)


def pgd_attack(problem: Problem, restarts: int = 8, steps: int = 40, seed: int = 0,
               targeted: bool = True) -> Optional[Counterexample]:
    """Sign-gradient PGD inside the box, on the float64 IR: ``restarts`` trajectories descend the
    unsafe margin and, for a region of several disjuncts (unless ``targeted=False``), a few more
    descend each disjunct's own margin (:func:`attack_targets`). All start uniformly in the box,
    take sign steps of a quarter of the box width halved every 10 steps, and run in one batch.
    The best point of every trajectory (by the region's margin) goes to :func:`first_confirmed`."""
    lo, hi = problem.lower, problem.upper
    width = hi - lo
    if float(width.max()) == 0.0:
        return None
    targets = attack_targets(len(problem.unsafe.disjuncts) if targeted else 1, restarts)
    n = len(targets)
    if n == 0:
        return None
    rng = np.random.default_rng([seed, 1])          # a stream apart from random_attack's
    z = lo + width * rng.random((n, lo.shape[0]))   # the first `restarts` rows: as before targeting
    net = problem.network
    idx = np.arange(n)
    best_z, best_m = z.copy(), np.full(n, np.inf)
    step = width / 4

    def objective(y):
        m_all, rows = _disjunct_margins(problem, y)
        j = np.where(targets < 0, np.argmin(m_all, axis=1), targets)
        return m_all.min(axis=1), rows[idx, j]

    for t in range(steps):
        y, back = net.vjp(z)
        m, cot = objective(y)
        better = m < best_m
        best_m = np.where(better, m, best_m)
        best_z[better] = z[better]
        z = np.clip(z - step * np.sign(back(cot)), lo, hi)
        if t % 10 == 9:
            step = step / 2
    m = problem.unsafe.margin(net.forward(z))
    better = m < best_m
    best_z[better] = z[better]
    return first_confirmed(problem, best_z, "pgd")
