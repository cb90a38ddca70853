"""Verification results: what was proved, the confirmed counterexample, and how the time went."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from typing import Optional

import numpy as np


class Verdict(StrEnum):
    """What a run concluded. String-valued: ``Verdict.VERIFIED == "verified"``, and JSON/CSV
    hold the plain strings."""

    VERIFIED = "verified"       # proved (see docs/ARCHITECTURE.md, "What a proof covers")
    FALSIFIED = "falsified"     # a counterexample confirmed on the IR and the original model
    UNKNOWN = "unknown"         # anything else; ``Result.reason`` says why


VERIFIED, FALSIFIED, UNKNOWN = Verdict.VERIFIED, Verdict.FALSIFIED, Verdict.UNKNOWN


class Reason(StrEnum):
    """The fixed reasons a run gives (others carry details, e.g. "proved by crown bounds")."""

    TIME_LIMIT = "time limit"
    ITERATION_LIMIT = "iteration limit"
    PROVED = "proved"
    EVERY_SUB_BOX_PROVED = "every sub-box proved"
    PROVED_ROTATED = "every sub-box of the rotated inputs proved"
    EVERY_SUBPROBLEM_PROVED = "every subproblem (box and neuron splits) proved or infeasible"
    PROVED_BY_SOLVER = "proved by the solver"
    SOLVER_COUNTEREXAMPLE = "solver counterexample confirmed"
    BOX_CENTRE_COUNTEREXAMPLE = "counterexample at a box centre"
    SPURIOUS_NO_REFINEMENT = "spurious counterexample and no refinement"
    REFINEMENT_EXHAUSTED = "segment refinement exhausted and input splitting disabled"
    SPLITTING_DISABLED = "bounds do not prove the property and splitting is disabled"
    BOX_TOO_SMALL = "box too small to split further"


@dataclass
class Counterexample:
    """An input in the box whose output is unsafe on the float64 IR *and* the original model."""

    free_input: list            # the solver-side input (e.g. the latent code z)
    full_input: list            # the original model's input (e.g. [x, z])
    output_ir: list             # float64 IR outputs
    output_reference: Optional[list]  # original model's outputs (None if no reference was given)
    margin_ir: float
    margin_reference: Optional[float]
    disjunct: int               # index of the violated disjunct of the unsafe region
    confirmed_ir: bool = True
    confirmed_reference: Optional[bool] = None
    found_by: str = ""          # 'sampling', 'pgd', 'solver', 'box-centre'


@dataclass
class Stats:
    iterations: int = 0
    boxes_bounded: int = 0
    boxes_closed_by_bounds: int = 0
    boxes_split: int = 0
    solver_calls: int = 0
    breakpoints_added: int = 0
    max_binaries: int = 0
    time_attack: float = 0.0
    time_bounds: float = 0.0
    time_encode: float = 0.0
    time_solver: float = 0.0
    time_checks: float = 0.0
    wall_time: float = 0.0
    trajectory: list = field(default_factory=list)   # per refinement round: dict(margin, move, neurons, ...)


@dataclass
class Result:
    status: Verdict             # compares equal to 'verified' | 'falsified' | 'unknown'
    reason: str = ""            # a Reason or a free-text explanation
    method: str = ""
    counterexample: Optional[Counterexample] = None
    stats: Stats = field(default_factory=Stats)
    problem: str = ""

    def __post_init__(self):
        self.status = Verdict(self.status)

    @property
    def decided(self) -> bool:
        return self.status in (VERIFIED, FALSIFIED)

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def summary(self) -> str:
        s = self.stats
        line = f"{self.problem or 'problem'}: {self.status.upper()}"
        if self.reason:
            line += f" ({self.reason})"
        line += (f" in {s.wall_time:.2f}s [method={self.method}, iterations={s.iterations}, "
                 f"boxes={s.boxes_bounded}, solver calls={s.solver_calls}, breakpoints={s.breakpoints_added}]")
        if self.counterexample is not None:
            c = self.counterexample
            line += f"\n  counterexample (found by {c.found_by}): margin {c.margin_ir:.4g} on the IR"
            if c.margin_reference is not None:
                line += f", {c.margin_reference:.4g} on the original model"
        return line


def _jsonable(o):
    if isinstance(o, Enum):
        return o.value
    if isinstance(o, dict):
        return {k: _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, float) and not np.isfinite(o):
        return str(o)
    return o
