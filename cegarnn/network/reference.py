"""The original ONNX model as a float64 function (onnxruntime): what counterexamples are confirmed on."""
from __future__ import annotations

import numpy as np

from ..fileio import read_maybe_gzip
from .ir import NetworkError


def onnx_reference(path, parts=None):
    """A float64 callable ``x_batch -> outputs`` running the ONNX file with onnxruntime.

    Feeds the input in the model's own float type; ``parts`` (from ``load_onnx(...,
    return_input_parts=True)``) splits the flat input between several graph inputs.
    onnxruntime is imported and the session made on the first call (a run that never confirms a
    candidate nor checks the conversion does not pay for them).
    """
    session = []            # [(sess, feeds_spec)] once made

    def open_session():
        import onnxruntime as ort
        data = read_maybe_gzip(path, "ONNX file", NetworkError)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        feeds_spec = []
        for k, inp in enumerate(sess.get_inputs()):
            dtype = {"tensor(double)": np.float64, "tensor(float16)": np.float16}.get(inp.type, np.float32)
            if parts is not None and k < len(parts):
                start, stop = parts[k].start, parts[k].stop
            else:
                start, stop = (0, None) if k == 0 else (None, None)
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
            feeds_spec.append((inp.name, dtype, shape, start, stop))
        session.append((sess, feeds_spec))

    def run(a):
        if not session:
            open_session()
        sess, feeds_spec = session[0]
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
    run.onnx_path = str(path)      # marks an onnxruntime reference (see is_onnx_reference)
    return run


# --------------------------------------------------------------------------- conversion check
class ConversionMismatch(NetworkError):
    """The float64 IR and the original model disagree beyond float32 rounding at a point of the
    box: the conversion is wrong, and no proof on the IR may be reported for that model.
    Attributes: ``output`` (index), ``point`` (the free input), ``ir_value``, ``reference_value``,
    ``tolerance``."""

    def __init__(self, output: int, point, ir_value: float, reference_value: float, tolerance: float,
                 what: str = ""):
        self.output = int(output)
        self.point = np.asarray(point, dtype=np.float64)
        self.ir_value, self.reference_value = float(ir_value), float(reference_value)
        self.tolerance = float(tolerance)
        pt = np.array2string(self.point, precision=6, threshold=12, max_line_width=10_000)
        where = f"{what}: " if what else ""
        super().__init__(f"{where}the converted network differs from the original model (onnxruntime) "
                         f"at output {self.output}: IR {self.ir_value!r} vs original {self.reference_value!r} "
                         f"(tolerance {self.tolerance:.3g}) at input {pt}")

    def __reduce__(self):
        return (type(self), (self.output, self.point, self.ir_value, self.reference_value, self.tolerance))


def _magnitude(network, x: np.ndarray) -> np.ndarray:
    """Scale of the float rounding errors of a forward pass at ``x`` (B, n) -> (B, out):
    ``|W| m + |b|`` through affine layers, unchanged through ReLU, ``max(1, m/4)`` through sigmoid
    (output in (0, 1), slope <= 1/4) and ``max(1, m)`` through tanh."""
    from .ir import Affine, ReLU, Sigmoid
    m = np.abs(x)
    for layer in network.layers:
        if isinstance(layer, Affine):
            W = layer.W
            absW = abs(W) if hasattr(W, "tocsr") else np.abs(W)
            m = np.asarray(absW @ m.T).T + np.abs(layer.b)
        elif isinstance(layer, ReLU):
            pass
        elif isinstance(layer, Sigmoid):
            m = np.maximum(1.0, m / 4.0)
        else:
            m = np.maximum(1.0, m)
    return m


def check_points(lower, upper, n: int = 8, seed: int = 0) -> np.ndarray:
    """The points the check uses: the centre, ``n`` corners (all of them when there are at most
    ``n``; the two opposite corners ``lower``/``upper`` always) and ``n`` uniform points
    (``n = 0``: the centre only). Deterministic for a given ``seed``."""
    lo = np.asarray(lower, dtype=np.float64).reshape(-1)
    hi = np.asarray(upper, dtype=np.float64).reshape(-1)
    d = lo.shape[0]
    rng = np.random.default_rng(seed)
    pts = [((lo + hi) / 2.0)[None]]
    if n <= 0:
        return pts[0]
    if d <= 16 and 2 ** d <= n:
        bits = (np.arange(2 ** d)[:, None] >> np.arange(d)[None, :]) & 1
    else:
        bits = np.concatenate([np.zeros((1, d)), np.ones((1, d)),
                               rng.integers(0, 2, size=(max(n - 2, 0), d))]).astype(np.int64)
    pts.append(np.where(bits == 1, hi, lo))
    pts.append(lo + rng.random((n, d)) * (hi - lo))
    return np.concatenate(pts)


def check_against_reference(network, reference, lower, upper, n: int = 8, rtol: float = 1e-4,
                            atol: float = 1e-4, seed: int = 0, what: str = "") -> int:
    """Check the float64 IR ``network`` against the original model ``reference`` (a float64 callable
    ``x_batch -> outputs``, e.g. :func:`onnx_reference`, on the same free inputs) on the box's
    centre, corners and random points (:func:`check_points`); returns the number of points.

    Raises :class:`ConversionMismatch` (a :class:`NetworkError`) at the first output that differs
    by more than ``atol + rtol * max(|y_ref|, |y_ir|, m)``, ``m`` the magnitude of the forward
    pass's sums at that point (:func:`_magnitude`): a float32 tolerance scaled to the values
    (the original runs in float32, the IR in float64; a wrong conversion differs by O(1) relative
    amounts). Shape differences and non-finite values on one side only are mismatches too.
    """
    X = check_points(lower, upper, n, seed)
    ir = np.asarray(network.forward(X), dtype=np.float64).reshape(X.shape[0], -1)
    ref = np.asarray(reference(X), dtype=np.float64).reshape(X.shape[0], -1)
    if ref.shape != ir.shape:
        raise NetworkError(f"{what + ': ' if what else ''}the original model gives {ref.shape[1]} outputs, "
                           f"the converted network {ir.shape[1]}")
    mag = _magnitude(network, X)
    tol = atol + rtol * np.maximum(np.maximum(np.abs(ref), np.abs(ir)), mag)
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(ir - ref) <= tol)
    bad &= ~((ir == ref) | (np.isnan(ir) & np.isnan(ref)))      # equal infinities / both NaN
    if np.any(bad):
        p, k = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise ConversionMismatch(int(k), X[p], ir[p, k], ref[p, k], float(tol[p, k]), what)
    return int(X.shape[0])


def check_problem_reference(problems, n: int = 8, rtol: float = 1e-4, atol: float = 1e-4,
                            full: int = 3, centres: int = 50) -> None:
    """:func:`check_against_reference` for problems (one or a list; those without a reference are
    skipped): each problem's network over its free inputs and box. The first ``full`` problems
    get the whole check (centre, corners, random points); of the others, at most ``centres``
    (spread evenly) are checked at their centre only, so a property with thousands of input
    boxes does not cost thousands of onnxruntime runs per box."""
    if not isinstance(problems, (list, tuple)):
        problems = [problems]
    probs = [p for p in problems if getattr(p, "reference", None) is not None]
    rest = probs[full:]
    if len(rest) > centres:
        rest = [rest[int(i)] for i in np.linspace(0, len(rest) - 1, centres).round()]
    for k, prob in enumerate(probs[:full] + rest):
        what = getattr(prob, "name", "") or ""
        if k < full:
            check_against_reference(prob.network, prob.reference, prob.lower, prob.upper, n=n,
                                    rtol=rtol, atol=atol, what=what)
        else:
            c = (prob.lower + prob.upper) / 2.0
            check_against_reference(prob.network, prob.reference, c, c, n=0, rtol=rtol, atol=atol, what=what)


def is_onnx_reference(ref) -> bool:
    """Whether ``ref`` is a callable made by :func:`onnx_reference`."""
    return getattr(ref, "onnx_path", None) is not None


def check_onnx_problem(problem, *references):
    """Run :func:`check_problem_reference` on ``problem`` when one of ``references`` (default: the
    problem's own reference) runs an ONNX file through onnxruntime; return the problem. The
    problem builders call this, so a problem built from an ONNX model is checked before any proof."""
    refs = references or (getattr(problem, "reference", None),)
    if any(is_onnx_reference(r) for r in refs):
        check_problem_reference(problem)
    return problem
