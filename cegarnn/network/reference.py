"""The original ONNX model as a float64 function (onnxruntime): what counterexamples are confirmed on."""
from __future__ import annotations

import numpy as np

from ..fileio import read_maybe_gzip
from .ir import NetworkError


def onnx_reference(path, parts=None):
    """A float64 callable ``x_batch -> outputs`` running the ONNX file with onnxruntime.

    Feeds the input in the model's own float type; ``parts`` (from ``load_onnx(...,
    return_input_parts=True)``) splits the flat input between several graph inputs.
    """
    import onnxruntime as ort
    data = read_maybe_gzip(path, "ONNX file", NetworkError)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    feeds_spec = []
    for k, inp in enumerate(inputs):
        dtype = {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(inp.type, np.float32)
        if parts is not None and k < len(parts):
            start, stop = parts[k].start, parts[k].stop
        else:
            start, stop = (0, None) if k == 0 else (None, None)
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        feeds_spec.append((inp.name, dtype, shape, start, stop))

    def run(a):
        a = np.asarray(a, dtype=np.float64)
        a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1)
        outs = []
        for row in a:
            feeds = {}
            for name, dtype, shape, start, stop in feeds_spec:
                if start is None:
                    raise NetworkError(f"{path}: cannot feed graph input {name!r}")
                feeds[name] = row[start:stop].astype(dtype).reshape(shape)
            outs.append(np.asarray(sess.run(None, feeds)[0], dtype=np.float64).reshape(-1))
        return np.stack(outs)
    return run
