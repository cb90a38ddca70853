"""Backends by name: ``make_backend(program, 'highs' | 'pulp[:SOLVER]')``.

:data:`BACKENDS` maps a name to a :class:`BackendEntry` that builds the backend and says whether
it can be used. Each entry imports its backend module only when asked, so listing the backends
imports no solver. Adding a backend is one loader function and one line::

    def _mysolver():
        from .mysolver import MySolverBackend      # a class following base.Backend
        return MySolverBackend

    BACKENDS["mysolver"] = BackendEntry(_mysolver)

The class gives ``available(sub)``/``unavailable_reason(sub)`` (``sub``: the part after ``':'``)
and, if it takes a sub-solver, names the constructor option in ``sub_option``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from .base import Backend, SolverError


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend: ``load()`` imports and returns its class."""

    load: Callable[[], type]

    def __call__(self, program, sub: str = "", **options) -> Backend:
        """A backend for ``program``; ``sub`` goes to the class' ``sub_option`` (if any, unless
        that option is given explicitly) and is ignored otherwise."""
        cls = self.load()
        key = getattr(cls, "sub_option", None)
        if sub and key:
            options.setdefault(key, sub)
        return cls(program, **options)

    def unavailable_reason(self, sub: str = "") -> Optional[str]:
        """None if the backend (with sub-solver ``sub``) can be used, else why not."""
        return self.load().unavailable_reason(sub)

    def available(self, sub: str = "") -> bool:
        return self.unavailable_reason(sub) is None

    def usage(self, name: str) -> str:
        """How the backend is named, e.g. ``'pulp[:SOLVER]'``."""
        return f"{name}[:SOLVER]" if getattr(self.load(), "sub_option", None) else name


def _highs():
    from .highs import HighsBackend
    return HighsBackend


def _pulp():
    from .pulp_backend import PulpBackend
    return PulpBackend


#: name -> :class:`BackendEntry`; the first one is the default
BACKENDS: dict[str, BackendEntry] = {
    "highs": BackendEntry(_highs),
    "pulp": BackendEntry(_pulp),
}


def make_backend(program, backend: str = "highs", **options) -> Backend:
    """Instantiate a backend by name ('highs' default, 'pulp' or 'pulp:<SOLVER>')."""
    name, _, sub = backend.partition(":")
    entry = BACKENDS.get(name)
    if entry is None:
        choices = " or ".join(repr(e.usage(n)) for n, e in BACKENDS.items())
        raise SolverError(f"unknown backend {backend!r}; choose {choices}")
    return entry(program, sub, **options)


def unavailable_reason(backend: str) -> Optional[str]:
    """None if ``backend`` ('highs', 'pulp' or 'pulp:<SOLVER>') can be used, else why not."""
    name, _, sub = backend.partition(":")
    entry = BACKENDS.get(name)
    if entry is None:
        return f"unknown backend {backend!r}"
    return entry.unavailable_reason(sub)


def available_backends() -> list[str]:
    """Names of the usable backends: 'highs' and 'pulp' (PuLP with its bundled CBC)."""
    return [name for name in BACKENDS if unavailable_reason(name) is None]


__all__ = ["BACKENDS", "BackendEntry", "available_backends", "make_backend", "unavailable_reason"]
