"""Solver backends for :class:`~cegarnn.encoding.program.Program` (HiGHS default, PuLP second).

* :mod:`.base` — the :class:`Backend` protocol, :class:`Status`, :class:`Solution` and the safe
  LP bound helpers; it knows no implementation;
* :mod:`.registry` — :func:`make_backend` and the :data:`BACKENDS` registry (name -> entry);
* :mod:`.highs`, :mod:`.pulp_backend` — the implementations, imported (with highspy / pulp) when
  a backend is made or named: ``from cegarnn.solvers import HighsBackend`` works too.
"""
from .base import Backend, Solution, SolverError, Status
from .registry import BACKENDS, available_backends, make_backend, unavailable_reason

__all__ = ["BACKENDS", "Backend", "Solution", "SolverError", "Status", "available_backends", "make_backend",
           "unavailable_reason", "HighsBackend", "PulpBackend"]


def __getattr__(name):
    if name == "HighsBackend":
        from .highs import HighsBackend
        return HighsBackend
    if name == "PulpBackend":
        from .pulp_backend import PulpBackend
        return PulpBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
