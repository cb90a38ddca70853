"""Verifier options: one frozen dataclass that checks itself once, when it is made.

Everything here is independent of the method; which method runs is checked by
:func:`cegarnn.verifier.methods.check_method`. Hydra configs and command-line options map onto
these fields through :meth:`Options.from_mapping`.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Mapping

POLICIES = ("auto", "input", "segments", "neuron", "rotated")
AUTO_BOUNDS = "auto"


class OptionError(TypeError, ValueError):
    """An option the verifier does not have. A ``TypeError`` (as for an unexpected keyword
    argument) and a ``ValueError`` (as for a bad value), so callers may catch either."""


@dataclass(frozen=True)
class Options:
    """Verifier options (plain values; Hydra configs map onto these)."""

    time_limit: float = 60.0
    bounds: str = "auto"             # interval | crown | alpha-crown | ir-crown | ir-alpha-crown | lp | auto.
                                     # crown / alpha-crown: auto_LiRPA; ir-*: ours (cegarnn.bounds.crown).
                                     # auto: our numpy CROWN (no torch) on every box; on the segments
                                     # policy's root box, where it does not prove, intersected with
                                     # auto_LiRPA alpha-CROWN
    backend: str = "highs"
    policy: str = "auto"             # auto: input splitting when n_free <= max_split_dims; above, rotated
                                     # where the first layer sees the box through <= max_split_dims
                                     # directions (input splitting in those directions), else neuron
                                     # (neuron-level CEGAR branching, docs/NEURON_BAB.md); segments:
                                     # one LP/MILP on the whole box, refined at sigmoid segments
    max_split_dims: int = 16
    top_k: int = 20                  # sigmoid neurons refined per round
    max_rounds: int = 2              # input policy: segment-refinement rounds on a box before splitting it
    fixed_segments: int = 4          # for milp-fixed
    tol: float = 1e-6                # a margin counts as proved only if > tol
    max_iterations: int = 1_000_000  # boxes processed + refinement rounds
    batch_size: int = 64             # boxes bounded per CROWN call
    solver_min_depth: int = -1       # input policy: LP/MILP only on boxes at depth >= this (-1: twice the number of free inputs)
    solver_time_share: float = 0.1   # input policy: solver time stays <= this share of the elapsed time, the call in progress included (share scaled by (1 + boxes it closed) / (1 + boxes it tried))
    solve_time_cap: float = 2.0      # input policy: seconds per solver call on one box (then split it)
    relu_exact_max: int = 40         # input policy: exact ReLUs (binaries) only if a box has <= this many unstable
    attack: bool = True
    threads: int = 1                 # torch and BLAS threads during the run (more slowed CROWN 8x on a busy 2-core machine)
    attack_restarts: int = 8
    attack_steps: int = 40
    seed: int = 0
    debug: bool = False              # assert the progress guarantee after every refinement
    trust_unchecked: bool = False    # count an unchecked outside answer as a proof (Marabou's unsat: it was
                                     # wrong on 8 of 302 random instances, experiments/results/bench_soundness.md)

    def __post_init__(self):
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), type(f.default))
        if not self.time_limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}")
        _check_bounds(self.bounds)
        _check_backend(self.backend)
        if self.threads < 1:
            raise ValueError("threads must be >= 1")
        for name, least in (("top_k", 1), ("fixed_segments", 1), ("max_iterations", 1), ("batch_size", 1),
                            ("attack_steps", 1), ("attack_restarts", 0), ("max_rounds", 0),
                            ("max_split_dims", 0), ("relu_exact_max", 0), ("solver_min_depth", -1)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        for name in ("tol", "solver_time_share"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {getattr(self, name)}")
        if not self.solve_time_cap > 0:
            raise ValueError(f"solve_time_cap must be > 0 seconds, got {self.solve_time_cap}")

    @classmethod
    def from_mapping(cls, mapping: Mapping) -> "Options":
        """Options from a mapping of field names (a dict, a Hydra ``DictConfig``, parsed ``-o k=v``).
        Raises :class:`OptionError` (a ``TypeError`` and a ``ValueError``) naming every key that is
        not an option, and ``ValueError`` for a bad value."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(mapping) - set(known))
        if unknown:
            raise OptionError(f"unknown verifier option(s): {', '.join(map(str, unknown))} "
                              f"(options: {', '.join(known)})")
        return cls(**{str(k): v for k, v in mapping.items()})


def _check_type(name: str, value, kind: type) -> None:
    if kind is bool:
        ok = isinstance(value, (bool, _np_bool()))
        what = "true or false"
    elif kind is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        what = "an integer"
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        what = "a number"
    else:
        ok = isinstance(value, kind)
        what = f"a {kind.__name__}"
    if not ok:
        raise ValueError(f"option {name} must be {what}, got {value!r}")


def _np_bool():
    import numpy as np
    return np.bool_


def _check_bounds(name: str) -> None:
    from ..bounds import IR_METHODS, METHODS
    names = (AUTO_BOUNDS, *METHODS, *IR_METHODS)
    if name.strip().lower() not in names:
        raise ValueError(f"unknown bounds {name!r}; choose one of {', '.join(names)}")


def _check_backend(name: str) -> None:
    from ..solvers import BACKENDS
    if name.partition(":")[0] not in BACKENDS:
        usage = ", ".join(entry.usage(key) for key, entry in BACKENDS.items())
        raise ValueError(f"unknown backend {name!r}; choose one of {usage}")
