"""Backend protocol and the exact status vocabulary every backend maps onto.

A backend wraps one :class:`~cegarnn.encoding.program.Program`. ``solve()`` first brings the
solver's model up to date with the program (incremental backends add only what is new), then
solves. Statuses are mapped exactly: only a solver that *proved* optimality or infeasibility may
report ``OPTIMAL``/``INFEASIBLE``; a time limit, an interrupt, an iteration limit or numerical
trouble is reported as such, with the best solution and the proven bound when the solver has them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np


class Status(str, enum.Enum):
    OPTIMAL = "optimal"                  # proven optimal (MIP: within the gap tolerance)
    INFEASIBLE = "infeasible"            # proven infeasible
    UNBOUNDED = "unbounded"              # proven unbounded (or infeasible-or-unbounded)
    TIME_LIMIT = "time_limit"
    ITERATION_LIMIT = "iteration_limit"
    INTERRUPTED = "interrupted"          # stopped on purpose: objective target / bound threshold reached
    NUMERICAL_ERROR = "numerical_error"
    UNKNOWN = "unknown"

    @property
    def proven(self) -> bool:
        return self in (Status.OPTIMAL, Status.INFEASIBLE, Status.UNBOUNDED)


@dataclass
class Solution:
    """Result of one solve, in the program's own objective sense.

    ``x``: best primal point found (None if none); ``objective``: its value;
    ``bound``: proven bound on the optimum (min: lower bound; max: upper bound), or None.
    For an LP solved to optimality ``bound == objective``.
    """

    status: Status
    x: Optional[np.ndarray] = None
    objective: Optional[float] = None
    bound: Optional[float] = None
    time: float = 0.0
    message: str = ""
    node_count: int = 0

    @property
    def has_solution(self) -> bool:
        return self.x is not None


class SolverError(RuntimeError):
    """The backend could not be used (not installed, rejected the model)."""


class Backend(Protocol):
    name: str

    @staticmethod
    def available() -> bool: ...

    def solve(self, time_limit: Optional[float] = None, *, target: Optional[float] = None,
              cutoff: Optional[float] = None, mip_gap: float = 1e-6,
              verbose: bool = False) -> Solution:
        """Sync the program, then solve. "Better" means lower for ``sense='min'``, higher for 'max'.
        ``target``: stop as soon as a feasible point strictly better than ``target`` is known.
        ``cutoff``: stop as soon as the proven bound shows no point better than ``cutoff`` exists.
        An early stop is reported as ``INTERRUPTED`` (with the point / bound), never ``OPTIMAL``."""
        ...


def make_backend(program, backend: str = "highs", **options) -> Backend:
    """Instantiate a backend by name ('highs' default, 'pulp' or 'pulp:<SOLVER>')."""
    name, _, sub = backend.partition(":")
    if name == "highs":
        from .highs import HighsBackend
        return HighsBackend(program, **options)
    if name == "pulp":
        from .pulp_backend import PulpBackend
        if sub:
            options.setdefault("solver", sub)
        return PulpBackend(program, **options)
    raise SolverError(f"unknown backend {backend!r}; choose 'highs' or 'pulp[:SOLVER]'")


def unavailable_reason(backend: str) -> Optional[str]:
    """None if ``backend`` ('highs', 'pulp' or 'pulp:<SOLVER>') can be used, else why not."""
    name, _, sub = backend.partition(":")
    if name == "highs":
        from .highs import HighsBackend
        return None if HighsBackend.available() else "highspy is not installed"
    if name == "pulp":
        from .pulp_backend import PulpBackend, pulp
        if pulp is None:
            return "pulp is not installed"
        solver = sub or "PULP_CBC_CMD"
        return None if PulpBackend.available(solver) else f"PuLP solver {solver} is not available"
    return f"unknown backend {backend!r}"


def available_backends() -> list[str]:
    """Names of the usable backends: 'highs' and 'pulp' (PuLP with its bundled CBC)."""
    return [b for b in ("highs", "pulp") if unavailable_reason(b) is None]
