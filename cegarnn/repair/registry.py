"""Repair algorithms by name: one function and one line each.

An entry's ``run(network, inputs, labels, keep, **options)`` takes the network (IR), the inputs to
repair with their intended labels, an optional ``keep`` pair ``(inputs, labels)`` of inputs whose
labels must be kept, and the algorithm's own keyword options; it returns a result with a
``status``, a ``reason``, ``to_dict()`` and ``save_onnx(path)``. The CLI (``cegarnn repair``) and
the Hydra experiment reach every algorithm through :data:`REPAIRS` only::

    def _myrepair(network, inputs, labels, keep, **options):
        ...
    REPAIRS["myrepair"] = RepairAlgorithm(_myrepair, "one line on what it guarantees")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .constraints import RepairInputError


@dataclass(frozen=True)
class RepairAlgorithm:
    run: Callable
    summary: str


def _finetune(network, inputs, labels, keep, **options):
    from .constraints import ensure
    from .finetune import finetune
    margin = float(options.pop("margin", 1e-3))
    return finetune(network, inputs, ensure(labels, network.n_outputs, margin), keep=keep, **options)


def _nnrepair(network, inputs, labels, keep, **options):
    from .nnrepair import nnrepair
    return nnrepair(network, (inputs, labels), keep, **options)


def _patch(network, inputs, labels, keep, **options):
    from .patch import patch_repair
    return patch_repair(network, inputs, labels, keep=keep, **options)


REPAIRS: dict[str, RepairAlgorithm] = {
    "finetune": RepairAlgorithm(_finetune, "smallest change of one layer; every input gets its label "
                                           "on the float32 export, or a proof that no change in the box does"),
    "nnrepair": RepairAlgorithm(_nnrepair, "fault localisation, then one expert per class fixing as many of its "
                                           "inputs as k weights can (MILP), every keep input kept on the float32 "
                                           "export; experts combined at inference (naive/average/confidence/votes)"),
    "patch": RepairAlgorithm(_patch, "REASSURE-style patches on the inputs' linear regions (ReLU networks): "
                                     "labels met on the float32 export, the network unchanged away from the "
                                     "regions, each region box proved by the verifier on the exported ONNX"),
}


def get_repair(name: str) -> RepairAlgorithm:
    try:
        return REPAIRS[name]
    except KeyError:
        raise RepairInputError(f"unknown repair algorithm {name!r}; known: {', '.join(sorted(REPAIRS))}") from None


__all__ = ["REPAIRS", "RepairAlgorithm", "get_repair"]
