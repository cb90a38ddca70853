"""Confirmation of counterexamples on the real network: nothing is 'falsified' without it."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..specs.problem import Problem
from .result import Counterexample


def confirm(problem: Problem, z, found_by: str = "") -> Optional[Counterexample]:
    """Return a :class:`Counterexample` iff ``z`` (clipped into the box) reaches the unsafe region
    on the float64 IR **and** on the original model (when the problem has a reference), else None.
    """
    z = np.clip(np.asarray(z, dtype=np.float64).reshape(-1), problem.lower, problem.upper)
    if not np.all(np.isfinite(z)):
        return None
    y = problem.network.forward(z)
    j = problem.unsafe.violated_disjunct(y)
    if j is None:
        return None
    m_ir = float(problem.unsafe.disjunct_margins(y)[j])
    y_ref, m_ref, ok_ref = None, None, None
    if problem.reference is not None:
        y_ref = np.asarray(problem.reference(z[None, :]), dtype=np.float64).reshape(-1)
        m_ref = float(problem.unsafe.disjunct_margins(y_ref)[j])
        ok_ref = bool(m_ref <= 0.0)
        if not ok_ref:
            return None
    full = problem.full_input(z)[0] if problem.full_input is not None else z
    return Counterexample(free_input=z.tolist(), full_input=np.asarray(full).reshape(-1).tolist(),
                          output_ir=y.tolist(), output_reference=None if y_ref is None else y_ref.tolist(),
                          margin_ir=m_ir, margin_reference=m_ref, disjunct=int(j), confirmed_ir=True,
                          confirmed_reference=ok_ref, found_by=found_by)


def first_confirmed(problem: Problem, zs: np.ndarray, found_by: str) -> Optional[Counterexample]:
    """Check a batch: IR margins first (vectorised), then confirm the most violating candidates."""
    zs = np.clip(np.atleast_2d(zs), problem.lower, problem.upper)
    margins = problem.unsafe.margin(problem.network.forward(zs))
    for i in np.argsort(margins)[:5]:
        if margins[i] > 0:
            break
        cex = confirm(problem, zs[i], found_by)
        if cex is not None:
            return cex
    return None
