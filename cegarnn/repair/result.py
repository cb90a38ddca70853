"""Repair results: the status, why, the repaired network and the independent float32 check."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Optional

import numpy as np

from ..network.ir import Network
from .check import ConstraintCheck


class RepairStatus(StrEnum):
    """What a repair concluded (string-valued, like :class:`~cegarnn.verifier.result.Verdict`)."""

    REPAIRED = "repaired"        # a changed network; every required row checked on its float32 export
    INFEASIBLE = "infeasible"    # proof that no change within the bounds meets the rows (see ``reason``)
    UNKNOWN = "unknown"          # anything else; ``reason`` and ``message`` say why


REPAIRED, INFEASIBLE, UNKNOWN = RepairStatus.REPAIRED, RepairStatus.INFEASIBLE, RepairStatus.UNKNOWN


class RepairReason(StrEnum):
    """The fixed reasons a repair gives."""

    CHECKED = "every constraint met on the float32 export"
    ALREADY_MET = "every constraint already met: no change"
    LP_FARKAS = "LP infeasible, certified by a Farkas ray"
    MILP_INFEASIBLE = "MILP infeasible (the solver's branch and bound; not a rigorous certificate)"
    ABSTRACTION_INFEASIBLE = "the over-approximating MILP is infeasible (the solver's branch and bound)"
    PATTERN_INFEASIBLE = "no change that keeps every ReLU phase exists (not a proof for other changes)"
    TIME_LIMIT = "time limit"
    REFINEMENT_LIMIT = "refinement limit: the candidate is still spurious"
    FLOAT32_CHECK_FAILED = "a constraint met in float64 fails on the float32 export"
    SOLVER_FAILED = "the solver gave no usable answer"
    ENCODING = "the change cannot be encoded (big-M limit)"
    PARTIAL = "some failing inputs could not be fixed"
    AREA_PROVED = "correct on every box by construction (dualised feature bounds; IR semantics)"
    AREA_TOO_CONSERVATIVE = "no change works for these feature bounds (split the boxes or tighten the bounds)"
    PATCH_PROVED = ("every constraint met on the float32 export, and the verifier proved the label on every "
                    "input's region box of the exported ONNX")
    PATCH_NOT_FOUND = "no patch meets the inputs of a linear region (see message)"
    NONE_FIXED = ("no failing input can be fixed with the localised weights within the bound "
                  "(the MILP's branch and bound; not a rigorous certificate)")


@dataclass
class StageInfo:
    """One solve stage: its objective, the solver status, objective value, proven bound, time."""

    name: str
    status: str
    objective: Optional[float] = None
    bound: Optional[float] = None
    time: float = 0.0
    solver_calls: int = 0
    keep_rounds: int = 0          # rounds that added violated keep rows (hard keep inputs)
    lazy_rounds: int = 0          # rounds that added violated extra rows (finetune(extra_rows=...))


@dataclass
class RepairResult:
    """The outcome of a repair.

    ``network``: the repaired network (same architecture as ``original``; None unless
    ``status == 'repaired'``). ``layer``: the changed layer's index. ``dW``/``db``: the change.
    ``norms``: ``linf``/``l1`` of the change. ``optimal``: the first-stage objective is proved
    minimal (``lower_bound`` is the proved lower bound on it). ``check``: every row on the float32
    export and the IR. ``stages``: per solve stage. ``extra``: algorithm-specific facts.
    """

    status: RepairStatus
    reason: RepairReason
    original: Network
    network: Optional[Network] = None
    layer: Optional[int] = None
    dW: Optional[np.ndarray] = None
    db: Optional[np.ndarray] = None
    norms: dict = field(default_factory=dict)
    optimal: bool = False
    lower_bound: Optional[float] = None
    check: Optional[ConstraintCheck] = None
    stages: list = field(default_factory=list)
    time: float = 0.0
    refinements: int = 0
    message: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def repaired(self) -> bool:
        return self.status is RepairStatus.REPAIRED

    def to_torch(self, dtype=None):
        """The repaired network as a ``torch.nn.Sequential`` (float32 by default)."""
        import torch

        from ..network.torch_io import to_torch
        self._need_network()
        return to_torch(self.network, dtype=torch.float32 if dtype is None else dtype)

    def save_onnx(self, path, dtype=np.float32):
        """Write the repaired network as ONNX (float32 by default; the model the check ran)."""
        from ..network.onnx_io import save_onnx
        self._need_network()
        return save_onnx(self.network, path, dtype=dtype)

    def _need_network(self):
        if self.network is None:
            raise ValueError(f"no repaired network: status {self.status.value} ({self.reason.value})")

    def to_dict(self) -> dict:
        return {
            "status": self.status.value, "reason": self.reason.value, "message": self.message,
            "layer": self.layer, "norms": {k: float(v) for k, v in self.norms.items()},
            "optimal": self.optimal, "lower_bound": self.lower_bound,
            "check": None if self.check is None else self.check.to_dict(),
            "stages": [vars(s) for s in self.stages], "time": self.time, "refinements": self.refinements,
            "extra": _jsonable(self.extra),
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def summary(self) -> str:
        parts = [f"{self.status.value} ({self.reason.value})"]
        if self.norms:
            parts.append(", ".join(f"{k} {v:.6g}" for k, v in self.norms.items()))
        if self.check is not None:
            parts.append(f"{self.check.n_met}/{self.check.met.size} inputs met on float32")
        parts.append(f"{self.time:.2f} s")
        if self.message:
            parts.append(self.message)
        return "; ".join(parts)


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    return o


__all__ = ["RepairStatus", "RepairReason", "RepairResult", "StageInfo", "REPAIRED", "INFEASIBLE", "UNKNOWN"]
