"""Confirmation of counterexamples on the real network: nothing is 'falsified' without it."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..specs.problem import Problem
from .result import Counterexample


def _f32(a: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return a.astype(np.float32).astype(np.float64)


def _just_below(u: np.ndarray) -> np.ndarray:
    """The largest float32 value strictly below ``u`` (as float64)."""
    with np.errstate(over="ignore"):
        f = u.astype(np.float32)
    f = np.where(f.astype(np.float64) < u, f, np.nextafter(f, np.float32(-np.inf)))
    return f.astype(np.float64)


def _just_above(l: np.ndarray) -> np.ndarray:
    return -_just_below(-l)


def strictly_inside(problem: Problem, z: np.ndarray) -> Optional[np.ndarray]:
    """``z`` (already in the closed box) with every coordinate that is not strictly inside its
    strict bound — in float64 or once rounded to float32, the precision an ONNX model runs in —
    moved to the nearest float32 value strictly inside; None if that leaves the box (an empty
    strict interval). Without strict bounds ``z`` itself."""
    sl, su = problem.strict_lower, problem.strict_upper
    if sl is None and su is None:
        return z
    lo, hi = problem.lower, problem.upper
    z = z.copy()
    if su is not None:
        bad = su & ~((z < hi) & (_f32(z) < hi))
        z[bad] = _just_below(hi[bad])
    if sl is not None:
        bad = sl & ~((z > lo) & (_f32(z) > lo))
        z[bad] = _just_above(lo[bad])
    ok = (z >= lo) & (z <= hi)
    if su is not None:
        ok &= ~su | ((z < hi) & (_f32(z) < hi))
    if sl is not None:
        ok &= ~sl | ((z > lo) & (_f32(z) > lo))
    return z if bool(np.all(ok)) else None


def confirm(problem: Problem, z, found_by: str = "") -> Optional[Counterexample]:
    """Return a :class:`Counterexample` iff ``z`` (clipped into the box) reaches the unsafe region
    on the float64 IR **and** on the original model (when the problem has a reference), else None.

    Strictness is honoured: a strict output row must hold strictly on both outputs (the same
    disjunct on both), see :meth:`UnsafeRegion.disjunct_holds`; a coordinate on a strict input
    bound is first moved just inside it (:func:`strictly_inside`) and the point is checked there.
    """
    z = np.clip(np.asarray(z, dtype=np.float64).reshape(-1), problem.lower, problem.upper)
    if not np.all(np.isfinite(z)):
        return None
    z = strictly_inside(problem, z)
    if z is None:
        return None
    unsafe = problem.unsafe
    y = problem.network.forward(z)
    holds = unsafe.disjunct_holds(y)
    if not holds.any():
        return None
    m_ir_all = unsafe.disjunct_margins(y)
    y_ref, m_ref, ok_ref = None, None, None
    if problem.reference is not None:
        y_ref = np.asarray(problem.reference(z[None, :]), dtype=np.float64).reshape(-1)
        holds = holds & unsafe.disjunct_holds(y_ref)
        if not holds.any():
            return None
        ok_ref = True
    j = int(np.argmin(np.where(holds, m_ir_all, np.inf)))
    m_ir = float(m_ir_all[j])
    if y_ref is not None:
        m_ref = float(unsafe.disjunct_margins(y_ref)[j])
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
