"""Solver backends for :class:`~cegarnn.encoding.program.Program` (HiGHS default, PuLP second).

* :mod:`.base` — the :class:`Backend` protocol, :class:`Status`, :class:`Solution` and the safe
  LP bound helpers; it knows no implementation;
* :mod:`.registry` — :func:`make_backend` and the :data:`BACKENDS` registry (name -> entry);
* :mod:`.highs`, :mod:`.pulp_backend` — the implementations.
"""
from .base import Backend, Solution, SolverError, Status
from .highs import HighsBackend
from .pulp_backend import PulpBackend
from .registry import BACKENDS, available_backends, make_backend, unavailable_reason

__all__ = ["BACKENDS", "Backend", "Solution", "SolverError", "Status", "available_backends", "make_backend",
           "unavailable_reason", "HighsBackend", "PulpBackend"]
