"""The independent check of a repair: the network exported to float32 ONNX, run by onnxruntime.

A constraint met only by the float64 IR is not met: the model a user deploys runs in float32.
:func:`float32_outputs` runs the exported graph (the same bytes :meth:`RepairResult.save_onnx`
writes); :func:`check_constraints` evaluates every row on those outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..network.ir import Network
from .constraints import OutputConstraints


def onnx_session(network: Network):
    """An onnxruntime session of ``network`` exported to float32 ONNX with a dynamic batch."""
    import onnxruntime as ort

    from ..network.onnx_io import save_onnx

    model = save_onnx(network, None, dtype=np.float32, batch="N")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def float32_outputs(network: Network, inputs, chunk: int = 4096, session=None) -> np.ndarray:
    """Outputs (N, n_out) of the float32 ONNX export of ``network`` on ``inputs`` (onnxruntime),
    returned as float64 arrays of the float32 values."""
    sess = onnx_session(network) if session is None else session
    X = np.asarray(inputs, dtype=np.float32).reshape((-1,) + tuple(network.input_shape))
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: X[i:i + chunk]})[0] for i in range(0, X.shape[0], chunk)]
    return np.concatenate(outs).astype(np.float64) if outs else np.zeros((0, network.n_outputs))


def predictions(network: Network, inputs, session=None) -> np.ndarray:
    """Argmax labels of the float32 export on ``inputs``."""
    return float32_outputs(network, inputs, session=session).argmax(1)


@dataclass
class ConstraintCheck:
    """Every row checked on the float32 export (onnxruntime) and on the float64 IR.

    ``met``: (N,) all rows of input n hold on the float32 model; ``slack``: (N, K) ``d - C y`` there;
    ``met_float64``: (N,) the same on the IR; ``min_slack``: the smallest float32 slack.
    """

    met: np.ndarray
    slack: np.ndarray
    met_float64: np.ndarray

    @property
    def all_met(self) -> bool:
        return bool(np.all(self.met))

    @property
    def n_met(self) -> int:
        return int(np.sum(self.met))

    @property
    def min_slack(self) -> float:
        return float(self.slack.min()) if self.slack.size else float("inf")

    def to_dict(self) -> dict:
        return {"n_inputs": int(self.met.size), "n_met_float32": self.n_met,
                "n_met_float64": int(np.sum(self.met_float64)), "min_slack_float32": self.min_slack}


def check_constraints(network: Network, inputs, constraints: OutputConstraints, session=None) -> ConstraintCheck:
    """Check ``constraints`` on the float32 ONNX export of ``network`` and on the IR."""
    X = np.asarray(inputs, dtype=np.float64).reshape(constraints.n_inputs, -1)
    y32 = float32_outputs(network, X, session=session)
    slack = constraints.slack(y32)
    met64 = constraints.met(network.forward(X))
    return ConstraintCheck(np.all(slack >= 0.0, axis=1), slack, met64)


__all__ = ["ConstraintCheck", "check_constraints", "float32_outputs", "onnx_session", "predictions"]
