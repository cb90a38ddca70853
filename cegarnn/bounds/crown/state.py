"""The state a bounds call returns besides the layer bounds, and small array helpers."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class BoundState:
    """What a call found besides the layer bounds.

    ``objective_lower`` (B, m): sound lower bounds of ``C_b y`` over subproblem b (None if no
    objective was given). ``infeasible`` (B,): the subproblem's set is empty (its splits contradict
    its bounds); its bounds then mean nothing and any claim about it holds. ``alphas``: the
    optimised alpha-CROWN parameters (torch tensors, leading dim B; pass them, or rows of them via
    :func:`take_alphas`, as ``alpha_init`` of a later call) or None. ``relaxations``: per
    activation layer, the CROWN relaxation ``(kl, cl, ku, cu)`` (numpy, (B, n)) used."""

    objective_lower: Optional[np.ndarray] = None
    infeasible: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    alphas: Optional[dict] = None
    relaxations: dict = field(default_factory=dict)


def take_alphas(alphas: Optional[dict], idx) -> Optional[dict]:
    """Rows ``idx`` of every alpha tensor (e.g. a parent's alphas for its children:
    ``take_alphas(a, np.repeat(np.arange(B), 2))``)."""
    if alphas is None:
        return None
    out = {}
    for key, d in alphas.items():
        out[key] = {n: t[idx] if t.shape[0] > 1 else t for n, t in d.items()}
    return out


def _put(full: np.ndarray, rows, vals) -> np.ndarray:
    out = full.copy()
    out[:, rows] = vals
    return out


def _np(a) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, float):
        return np.asarray(a)
    return a.detach().to("cpu").double().numpy()
