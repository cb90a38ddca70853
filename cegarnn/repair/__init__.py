"""Repair: change a network so that it provably meets a specification (see docs/REPAIR.md).

* :func:`finetune` — the smallest change of one layer that makes a finite set of inputs meet
  their output rows (:mod:`.constraints`), lexicographic objectives, lazy sigmoid refinement;
* :func:`nnrepair` — constraint-based repair after fault localisation, one expert per class
  (:mod:`.experts` combines them);
* :func:`area_repair` — one LP whose last-layer change is correct on whole input boxes;
* :func:`repair_spec` — verify → repair → re-verify on generative specifications;
* :func:`patch_repair` — REASSURE-style patches on the inputs' linear regions (ReLU networks),
  local by construction, each region proved by the verifier on the exported ONNX.

:func:`finetune` returns a :class:`RepairResult`, :func:`nnrepair` an :class:`ExpertsResult` (one
:class:`RepairResult` per expert); both have ``status``, ``reason``, ``to_dict()`` and
``save_onnx(path)``. :data:`REPAIRS` lists the algorithms by name.
"""
from .area import area_repair
from .check import ConstraintCheck, check_constraints, float32_outputs, predictions
from .constraints import OutputConstraints, RepairInputError, beats, concat, ensure, implant, linear
from .experts import STRATEGIES, ExpertsResult
from .finetune import finetune
from .nnrepair import nnrepair
from .patch import PatchRegion, PatchResult, patch_repair
from .registry import REPAIRS, RepairAlgorithm, get_repair
from .spec_loop import SpecRepairResult, Stop, repair_spec
from .result import INFEASIBLE, REPAIRED, UNKNOWN, RepairReason, RepairResult, RepairStatus

__all__ = ["finetune", "nnrepair", "area_repair", "repair_spec", "patch_repair", "PatchResult", "PatchRegion",
           "SpecRepairResult", "ExpertsResult", "STRATEGIES",
           "REPAIRS", "RepairAlgorithm", "get_repair", "OutputConstraints", "RepairInputError", "ensure", "implant",
           "beats", "linear", "concat",
           "ConstraintCheck", "check_constraints", "float32_outputs", "predictions", "RepairResult",
           "RepairStatus", "RepairReason", "REPAIRED", "INFEASIBLE", "UNKNOWN"]
