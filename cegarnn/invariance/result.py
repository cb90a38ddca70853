"""Results of the two-copy questions: status and reason enums, the confirmed witness, the stats.

Conventions follow the verifier's :class:`~cegarnn.verifier.result.Result`: a string-valued status
enum, a fixed reason enum, the witness only when it was confirmed on the real network, the solver's
proved bound kept apart from the best value found, and stats of where the time went.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from typing import Optional

import numpy as np


class InvarianceStatus(StrEnum):
    """What a run concluded (string-valued: ``InvarianceStatus.PROVED == "proved"``)."""

    PROVED = "proved"       # the solver's proved bound settles the question (see ``reason``)
    REFUTED = "refuted"     # a witness confirmed on the real network (float64 IR, and the reference)
    UNKNOWN = "unknown"     # anything else; ``reason`` says why


PROVED, REFUTED, UNKNOWN = InvarianceStatus.PROVED, InvarianceStatus.REFUTED, InvarianceStatus.UNKNOWN


class InvarianceReason(StrEnum):
    """The fixed reasons a run gives."""

    BOUND_AT_MOST_THRESHOLD = "the solver's proved bound is at most the threshold"
    WITNESS_CONFIRMED = "a witness beyond the threshold, confirmed on the real network"
    MAXIMUM_ENCLOSED = "maximum enclosed: the solver's proved bound and a confirmed witness within the gap"
    TIME_LIMIT = "time limit"
    REFINEMENT_LIMIT = "refinement limit: the candidate is still spurious"
    REFINEMENT_EXHAUSTED = "spurious candidate and no sigmoid/tanh segment left to refine"
    NOT_CONFIRMED = "the solver's candidate does not hold on the real network (and nothing to refine)"
    SOLVER_FAILED = "the solver gave no usable answer"
    ENCODING = "the problem cannot be encoded (big-M limit)"


@dataclass
class Witness:
    """Inputs confirmed on the real network, with every recomputed number.

    ``x``/``y``: the inputs (``y`` is the centre for pseudo-invertibility, None for a plain
    difference). ``value_ir``: the objective recomputed in float64 on the IR (the input distance,
    or the output difference); ``value_reference``: the same on the reference model (onnxruntime /
    torch), None without one. ``constraint_ir``/``constraint_reference``: ``||f(x) - f(y)||∞`` of
    the constrained network (None when there is no constraint) and ``constraint_limit`` the limit it
    was confirmed against on the IR (``tau + confirm_tol * scale``), ``reference_limit`` on the
    reference. ``outputs``: the IR outputs by name. ``newton_steps``: projection steps applied to
    the solver's point (0: taken as it was). ``found_by``: 'solver' or 'sampling' (a sampled point
    of the box, checked the same way)."""

    x: list
    y: Optional[list]
    value_ir: float
    value_reference: Optional[float] = None
    constraint_ir: Optional[float] = None
    constraint_reference: Optional[float] = None
    constraint_limit: Optional[float] = None
    reference_limit: Optional[float] = None
    outputs: dict = field(default_factory=dict)
    newton_steps: int = 0
    found_by: str = "solver"


@dataclass
class InvarianceStats:
    """Where the time went and how big the search was."""

    wall_time: float = 0.0
    time_bounds: float = 0.0
    time_encode: float = 0.0
    time_solver: float = 0.0
    time_checks: float = 0.0
    solver: str = ""
    solver_calls: int = 0
    nodes: int = 0
    rounds: int = 0                 # refinement rounds (re-solves after a spurious candidate)
    breakpoints_added: int = 0
    binaries: int = 0               # integer columns of the last program solved
    last_solver_status: str = ""


class _Answer:
    """What every answer shares: ``decided`` and its JSON form."""

    @property
    def decided(self) -> bool:
        return self.status in (PROVED, REFUTED)

    def to_dict(self) -> dict:
        return jsonable(asdict(self))

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)


@dataclass
class InvarianceResult(_Answer):
    """The answer to one question of :data:`cegarnn.invariance.PROBLEMS`.

    ``kind``: the problem's name. ``threshold``: the value the maximum is compared with (for the
    invertibility questions the input-distance tolerance ``tol``; None for a plain maximisation).
    ``bound``: a proved upper bound on the maximum (the solver's dual bound relaxed by its margin,
    over the abstraction, so valid for the real network; None when the solver proved none).
    ``value``: the best value confirmed on the real network (a lower bound on the maximum), with its
    ``witness``. ``settings``: the tolerances and options the answer depends on (``tau``, ``tol``,
    ``confirm_tol``, ``reference_tol``, ``norm``, box ...)."""

    kind: str
    status: InvarianceStatus
    reason: InvarianceReason
    threshold: Optional[float] = None
    bound: Optional[float] = None
    value: Optional[float] = None
    witness: Optional[Witness] = None
    settings: dict = field(default_factory=dict)
    stats: InvarianceStats = field(default_factory=InvarianceStats)
    message: str = ""

    def __post_init__(self):
        self.status = InvarianceStatus(self.status)
        self.reason = InvarianceReason(self.reason)

    def summary(self) -> str:
        s = self.stats
        line = f"{self.kind}: {self.status.upper()} ({self.reason.value})"
        if self.threshold is not None:
            line += f"; threshold {self.threshold:.6g}"
        line += f"; proved bound {_fmt(self.bound)}, best confirmed value {_fmt(self.value)}"
        line += (f"; {s.wall_time:.2f} s [{s.solver}, {s.solver_calls} solve(s), {s.nodes} nodes, "
                 f"{s.rounds} refinement round(s), {s.binaries} binaries]")
        if self.message:
            line += f"\n  {self.message}"
        return line


@dataclass
class RadiusStep:
    """One query of the radius search: the radius, the answer, its bound/value and time."""

    radius: float
    status: InvarianceStatus
    reason: InvarianceReason
    bound: Optional[float]
    value: Optional[float]
    time: float


@dataclass
class RadiusResult(_Answer):
    """The certified radius around a centre (:func:`cegarnn.invariance.certified_radius`).

    ``proved_radius``: the largest radius whose ball was certified (0.0 if none); every ball up to
    it is certified too (sub-balls of a certified ball). ``refuted_radius``: the smallest radius
    with a confirmed witness (None if none; every larger ball contains that witness).
    ``unknown_radii``: radii that got no definitive answer. ``status``: ``proved`` when
    ``proved_radius > 0``, ``refuted`` when no radius was certified and one was refuted, else
    ``unknown``. ``witness``: the one at ``refuted_radius``."""

    kind: str
    status: InvarianceStatus
    proved_radius: float
    refuted_radius: Optional[float]
    unknown_radii: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    witness: Optional[Witness] = None
    settings: dict = field(default_factory=dict)
    wall_time: float = 0.0

    def __post_init__(self):
        self.status = InvarianceStatus(self.status)

    def summary(self) -> str:
        ref = "none" if self.refuted_radius is None else f"{self.refuted_radius:.6g}"
        unk = ", ".join(f"{r:.4g}" for r in self.unknown_radii) or "none"
        return (f"{self.kind}: {self.status.upper()}; proved radius {self.proved_radius:.6g}, refuted radius "
                f"{ref}, unknown at {unk}; {len(self.steps)} queries in {self.wall_time:.2f} s")


def _fmt(v) -> str:
    return "none" if v is None else f"{v:.6g}"


def jsonable(o):
    """Plain JSON values (enums as their values, arrays as lists, non-finite floats as strings)."""
    if isinstance(o, Enum):
        return o.value
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, np.generic):
        return jsonable(o.item())
    if isinstance(o, float) and not np.isfinite(o):
        return str(o)
    return o


__all__ = ["InvarianceStatus", "InvarianceReason", "InvarianceResult", "InvarianceStats", "Witness",
           "RadiusResult", "RadiusStep", "PROVED", "REFUTED", "UNKNOWN", "jsonable"]
