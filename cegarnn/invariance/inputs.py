"""Validated inputs of the two-copy questions: models (with their reference), balls, boxes, options.

Everything here raises :class:`InvarianceInputError` (a ``ValueError``) naming the problem before
any bound or program is built; unsupported layers raise the loader's
:class:`~cegarnn.network.NetworkError` (also a ``ValueError``).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..network.ir import Network

NORMS = ("linf", "l1")
COUPLINGS = ("none", "bounds", "signs")


class InvarianceInputError(ValueError):
    """Bad input to an invariance question: shapes differ, radius <= 0, unknown option ..."""


@dataclass(frozen=True)
class InvarianceOptions:
    """Options shared by every question (validated when made).

    ``time_limit``: seconds for the whole question. ``backend``: 'highs' (default) or
    'pulp[:SOLVER]'. ``bounds``: 'crown', 'interval' or 'lp' (bounds on both copies' values over
    the box: big-M constants and sigmoid segments). ``top_k``: sigmoid/tanh neurons refined per
    copy and round; ``max_rounds``: refinement rounds. ``confirm_tol``: a witness's constraint
    ``||f(x) - f(y)||∞ <= tau`` must hold on the float64 IR within ``confirm_tol * scale``
    (``scale = max(1, largest |output|)``); ``reference_tol``: the same on the reference model
    (ONNX under onnxruntime runs in float32, so it needs more room). ``gap_tol``: a plain maximum
    is enclosed when ``bound - value <= gap_tol * max(1, |bound|)``. ``newton_steps``: projection
    steps that move a solver's point onto the constraint before it is checked. ``presolve``:
    HiGHS presolve (off by default: HiGHS' MIP presolve has been seen to ignore the time limit).
    ``coupling``: rows linking two copies of one network (:mod:`.coupling`; valid cuts): 'none'
    (default), 'bounds' (difference bounds, cones where the sign is known) or 'signs' (also a
    sign binary per open neuron). ``split``: an L∞ maximum is solved as one MILP per coordinate
    and sign instead of one MILP with a binary per coordinate and sign; None (default) lets each
    question choose what measured better (split, except joint for pseudo-invertibility).
    """

    time_limit: float = 60.0
    backend: str = "highs"
    bounds: str = "crown"
    top_k: int = 4
    max_rounds: int = 30
    confirm_tol: float = 1e-8
    reference_tol: float = 1e-4
    gap_tol: float = 1e-3
    newton_steps: int = 8
    presolve: bool = False
    threads: int = 1
    coupling: str = "none"
    split: Optional[bool] = None

    def __post_init__(self):
        from ..bounds import METHODS
        from ..solvers import unavailable_reason
        for name in ("time_limit", "confirm_tol", "reference_tol", "gap_tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise InvarianceInputError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("top_k", "threads"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise InvarianceInputError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("max_rounds", "newton_steps"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise InvarianceInputError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        if self.coupling not in COUPLINGS:
            raise InvarianceInputError(f"coupling must be one of {', '.join(COUPLINGS)}, got {self.coupling!r}")
        if self.split is not None and not isinstance(self.split, bool):
            raise InvarianceInputError(f"split must be true or false, got {self.split!r}")
        if self.bounds not in METHODS:
            raise InvarianceInputError(f"unknown bounds {self.bounds!r}; choose one of {', '.join(METHODS)}")
        why = unavailable_reason(str(self.backend))
        if why is not None:
            raise InvarianceInputError(f"backend {self.backend!r} cannot be used: {why}")

    @classmethod
    def from_options(cls, options: dict) -> tuple["InvarianceOptions", dict]:
        """(options made from the keys that are fields, the remaining keys)."""
        names = {f.name for f in fields(cls)}
        mine = {k: v for k, v in options.items() if k in names}
        return cls(**mine), {k: v for k, v in options.items() if k not in names}


def make_options(options: dict) -> InvarianceOptions:
    """:class:`InvarianceOptions` from keyword options; an unknown key raises naming it."""
    opts, rest = InvarianceOptions.from_options(options)
    if rest:
        raise InvarianceInputError(f"unknown option(s) {', '.join(sorted(rest))}; known: "
                                   f"{', '.join(f.name for f in fields(InvarianceOptions))}")
    return opts


@dataclass(frozen=True)
class Model:
    """A network as the IR plus the original model it came from (None when given as an IR)."""

    network: Network
    reference: Optional[Callable]
    name: str


def as_model(obj, what: str = "network") -> Model:
    """The IR of ``obj`` (a Network, an ``nn.Module``, an ``.onnx``/``.pt`` path) and a float64
    callable of the original model for confirmation (onnxruntime for ONNX, the module itself for
    torch; None for an IR). A ``Model`` is returned as it is."""
    if isinstance(obj, Model):
        return obj
    from ..network import load_network
    from ..specs.problem import model_reference
    if isinstance(obj, Network):
        return Model(obj, None, what)
    if isinstance(obj, (str, Path)) and not Path(obj).is_file():
        raise InvarianceInputError(f"{what} file not found: {obj}")
    net = load_network(obj)
    ref = None
    if isinstance(obj, (str, Path)) and str(obj).lower().endswith((".pt", ".pth")):
        import torch
        ref = model_reference(torch.load(obj, map_location="cpu", weights_only=False))
    else:
        ref = model_reference(str(obj) if isinstance(obj, Path) else obj)
    return Model(net, ref, Path(obj).name if isinstance(obj, (str, Path)) else what)


def _vector(v, n: int, what: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    if a.size != n:
        raise InvarianceInputError(f"{what} has {a.size} values but the network has {n} inputs")
    a = a.reshape(-1)
    if not np.all(np.isfinite(a)):
        raise InvarianceInputError(f"{what} contains NaN or infinite values")
    return a


def check_box(lower, upper, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A finite, non-empty box of ``n`` coordinates."""
    lo, hi = _vector(lower, n, "lower bound"), _vector(upper, n, "upper bound")
    if np.any(lo > hi):
        j = int(np.argmax(lo > hi))
        raise InvarianceInputError(f"empty box: lower bound {lo[j]} > upper bound {hi[j]} at input {j}")
    return lo, hi


def ball_box(center, radius, n: int, domain=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, lo, hi)``: the L∞ ball ``B(c, radius)`` intersected with ``domain`` (a box or None).
    The centre must lie in the domain and ``radius`` must be finite and > 0."""
    c = _vector(center, n, "centre")
    if not (isinstance(radius, (int, float, np.floating, np.integer)) and np.isfinite(radius) and radius > 0):
        raise InvarianceInputError(f"radius must be a finite number > 0, got {radius!r}")
    lo, hi = c - float(radius), c + float(radius)
    if domain is not None:
        dlo, dhi = check_box(domain[0], domain[1], n)
        if np.any(c < dlo) or np.any(c > dhi):
            raise InvarianceInputError("the centre lies outside the domain box")
        lo, hi = np.maximum(lo, dlo), np.minimum(hi, dhi)
    return c, lo, hi


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise InvarianceInputError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def check_nonneg(value, what: str) -> float:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value) and value >= 0):
        raise InvarianceInputError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def same_shapes(m1: Model, m2: Model, outputs: bool = True) -> None:
    """Two networks over the same inputs (and, if ``outputs``, with the same number of outputs)."""
    if m1.network.n_inputs != m2.network.n_inputs:
        raise InvarianceInputError(f"the networks have different inputs: {m1.network.n_inputs} vs "
                                   f"{m2.network.n_inputs}")
    if outputs and m1.network.n_outputs != m2.network.n_outputs:
        raise InvarianceInputError(f"the networks have different outputs: {m1.network.n_outputs} vs "
                                   f"{m2.network.n_outputs}")


__all__ = ["InvarianceInputError", "InvarianceOptions", "Model", "NORMS", "as_model", "ball_box",
           "check_box", "check_nonneg", "check_norm", "make_options", "same_shapes"]
