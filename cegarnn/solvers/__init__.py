"""Solver backends for :class:`~cegarnn.encoding.program.Program` (HiGHS default, PuLP second)."""
from .base import (Backend, Solution, SolverError, Status, available_backends, make_backend,
                   unavailable_reason)
from .highs import HighsBackend
from .pulp_backend import PulpBackend

__all__ = ["Backend", "Solution", "SolverError", "Status", "available_backends", "make_backend",
           "unavailable_reason", "HighsBackend", "PulpBackend"]
