"""Proofs for a patch repair: the label on each input's region box, by cegarnn's own verifier,
on the exported float32 ONNX model re-loaded from the file (the model as it is executed)."""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..network.ir import Network

#: verifier options unless the caller says otherwise: plain CROWN (all ReLUs of a box inside a
#: linear region are stable, so alpha-CROWN's optimisation gains nothing and cost 20 s a box on MNIST)
PROOF_DEFAULTS = {"bounds": "crown"}


@dataclass
class Proof:
    """The verifier's answer for one input: the box ``[x - radius, x + radius] ∩ domain``,
    ``verdict`` ('verified' only when the verifier proved it; 'not run' when no time was left),
    its ``reason`` and the wall ``time`` (seconds)."""

    input: int
    radius: float
    verdict: str
    reason: str
    time: float

    @property
    def proved(self) -> bool:
        return self.verdict == "verified"


def prove_boxes(network: Network, X: np.ndarray, labels, radii, lo: np.ndarray, hi: np.ndarray, *,
                method: str = "crown", time_limit: float = 60.0, deadline: Optional[float] = None,
                onnx_path=None, options: Optional[dict] = None) -> list[Proof]:
    """Save ``network`` as float32 ONNX (to ``onnx_path``, or a temporary file), load it back with
    :func:`~cegarnn.network.onnx_io.load_onnx`, and ask :func:`cegarnn.verifier.verify` (``method``,
    ``options`` over :data:`PROOF_DEFAULTS`) whether input ``i`` keeps ``labels[i]`` on its box of
    radius ``radii[i]`` clipped to ``[lo, hi]``; onnxruntime on the file is the reference that
    every counterexample must fool. Each call gets ``time_limit`` seconds, less if ``deadline``
    (``time.perf_counter()``) is nearer; none left: 'not run'."""
    from ..network.onnx_io import load_onnx, save_onnx
    from ..network.reference import onnx_reference
    from ..specs.problem import classification_problem
    from ..verifier import verify

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(onnx_path) if onnx_path is not None else Path(tmp) / "patched.onnx"
        save_onnx(network, path, dtype=np.float32)
        executed = load_onnx(path)
        reference = onnx_reference(str(path))
        proofs = []
        for i, (x, label, r) in enumerate(zip(X, labels, radii)):
            budget = time_limit if deadline is None else min(time_limit, deadline - time.perf_counter())
            if budget <= 0.05:
                proofs.append(Proof(i, float(r), "not run", "time limit of the repair", 0.0))
                continue
            t0 = time.perf_counter()
            problem = classification_problem(executed, x, int(label), float(r), clip=(lo, hi), reference=reference,
                                             name=f"patch input {i}")
            res = verify(problem, method=method, time_limit=budget, **{**PROOF_DEFAULTS, **(options or {})})
            proofs.append(Proof(i, float(r), str(res.status.value), str(res.reason), time.perf_counter() - t0))
    return proofs


__all__ = ["Proof", "prove_boxes"]
