"""Repair: change a network so that it provably meets a specification (see docs/REPAIR.md).

* :func:`finetune` — the smallest change of one layer that makes a finite set of inputs meet
  their output rows (:mod:`.constraints`), lexicographic objectives, lazy sigmoid refinement;
* :func:`nnrepair` — constraint-based repair after fault localisation, one expert per class
  (:mod:`.experts` combines them).

Every algorithm returns a :class:`RepairResult`; :data:`REPAIRS` lists them by name.
"""
from .check import ConstraintCheck, check_constraints, float32_outputs, predictions
from .constraints import OutputConstraints, RepairInputError, beats, concat, ensure, implant, linear
from .finetune import finetune
from .registry import REPAIRS, RepairAlgorithm, get_repair
from .result import INFEASIBLE, REPAIRED, UNKNOWN, RepairReason, RepairResult, RepairStatus

__all__ = ["finetune", "REPAIRS", "RepairAlgorithm", "get_repair", "OutputConstraints", "RepairInputError", "ensure", "implant", "beats", "linear", "concat",
           "ConstraintCheck", "check_constraints", "float32_outputs", "predictions", "RepairResult",
           "RepairStatus", "RepairReason", "REPAIRED", "INFEASIBLE", "UNKNOWN"]
