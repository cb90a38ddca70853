"""A rigorous bound on how far a network *as executed* (weights rounded to float32, float32
arithmetic) can be from the float64 IR, carried layer by layer.

Why: proofs must cover the model that is run (onnxruntime runs an ONNX network in float32, and
VNN-COMP checks counterexamples there), and CROWN runs on a float32 copy of the network. Both
differ from the float64 IR by errors that later layers multiply: weights that are not float32-exact
(float64 torch models, folded BatchNorm, ``fix_inputs``), rounding in every sum, and cancellation.

The bound (standard forward error analysis; Higham, *Accuracy and Stability of Numerical
Algorithms*, §3.1). Let ``v_k`` be a value of the float64 IR in real arithmetic, ``v̂_k`` the same
value in the executed model, ``M_k = max(|l_k|, |u_k|)`` from sound bounds on ``v_k``, and
``e_k >= |v̂_k - v_k|``. With ``e_0 = 0`` (the executed model is given a point of the box):

* affine ``y = W x + b`` with ``Ŵ = fl(W)``, ``b̂ = fl(b)`` and ``n`` summed terms: the computed
  sum is within ``γ_{n+1} (|Ŵ| |x̂| + |b̂|)`` of ``Ŵ x̂ + b̂`` for any summation order, with or without
  FMA (``γ_m = m u / (1 - m u)``, ``u`` the unit roundoff), so
  ``e' = |Ŵ| e + |Ŵ - W| M + |b̂ - b| + γ_{n+1+s} (|Ŵ| (M + e) + |b̂| + F) + u F``
  where ``F`` is the magnitude of terms folded into the bias by ``fix_inputs``
  (``Affine.folded``), which the executed model still sums, and ``s = SLACK_OPS`` covers the few
  element-wise operations an original model may do around a layer the IR has folded (BatchNorm,
  Add/Sub/Mul/Div by constants);
* ReLU: ``e' = e`` (1-Lipschitz and exact in floating point), and ``e' = 0`` where ``u + e <= 0``
  (the executed pre-activation is <= 0 too, so both outputs are exactly 0);
* sigmoid/tanh: ``e' = L e + a`` with ``L`` the largest slope on ``[l - e, u + e]`` and ``a`` the
  implementation error of the float32 function (``ACTIVATION_ABS_ERROR``: measured at most 1.7e-7
  for onnxruntime's sigmoid and 3.3e-7 for its tanh on a 2M-point grid over [-60, 60]; torch's are
  below 1e-7; we allow 1e-6).

The same ``e_k`` covers CROWN's float32 arithmetic on the rounded network: CROWN sums the same
kind of terms in float32 with magnitudes bounded by the same ``M_k``; :mod:`.lirpa` widens every
CROWN bound by it (on top of its relative widening).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh, sigmoid

#: unit roundoff of the executed precision
UNIT_ROUNDOFF = {"float32": 2.0 ** -24, "float64": 2.0 ** -53}
#: absolute error allowed for one float32 (resp. float64) sigmoid/tanh evaluation
ACTIVATION_ABS_ERROR = {"float32": 1e-6, "float64": 1e-15}
#: extra rounded operations allowed per affine layer (folded BatchNorm, constant Add/Mul/Div)
SLACK_OPS = 4


def gamma(m, u: float):
    """``γ_m = m u / (1 - m u)``: relative error bound of a sum/dot product of m terms."""
    m = np.asarray(m, dtype=np.float64)
    if np.any(m * u >= 0.5):
        raise ValueError(f"too many terms ({int(np.max(m))}) for a rounding error bound at u={u}")
    return m * u / (1.0 - m * u)


def _abs(W):
    return abs(W) if sp.issparse(W) else np.abs(W)


def _rounded(a, precision: str):
    dtype = np.float32 if precision == "float32" else np.float64
    if sp.issparse(a):
        r = a.copy()
        r.data = r.data.astype(dtype).astype(np.float64)
        return r
    return np.asarray(a).astype(dtype).astype(np.float64)


def _terms_per_row(layer: Affine) -> np.ndarray:
    """Number of summed products per output (nonzeros of each row; n for a dense layer)."""
    if sp.issparse(layer.W):
        return np.diff(layer.W.tocsr().indptr).astype(np.float64)
    return np.full(layer.out_size, float(layer.in_size))


def _matvec(W, x: np.ndarray) -> np.ndarray:
    """``W @ x`` for x of shape (n,) or (B, n) -> (out,) or (B, out)."""
    return np.asarray(W @ x.T).T


def affine_error(layer: Affine, e: np.ndarray, mag: np.ndarray, precision: str = "float32",
                 include_folded: bool = True) -> np.ndarray:
    """Error bound after an affine layer, given the error ``e`` and magnitude ``mag`` of its input.
    ``include_folded=False``: the layer as given (a folded bias is one constant, as CROWN sees it)."""
    u = UNIT_ROUNDOFF[precision]
    W_hat = _rounded(layer.W, precision)
    b_hat = _rounded(layer.b, precision)
    absW = _abs(W_hat)
    dW = _abs(W_hat - layer.W)
    use_folded = include_folded and layer.folded is not None
    folded = layer.folded if use_folded else 0.0
    n = _terms_per_row(layer) + (layer.folded_terms if use_folded else 0) + 1 + SLACK_OPS
    sums = _matvec(absW, mag + e) + np.abs(b_hat) + folded
    return (_matvec(absW, e) + _matvec(dW, mag) + np.abs(b_hat - layer.b)
            + gamma(n, u) * sums + u * folded)


def _max_slope(layer, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Largest derivative of sigmoid/tanh on [lo, hi] (attained at the point nearest 0)."""
    t = np.clip(0.0, lo, hi)
    if isinstance(layer, Sigmoid):
        s = sigmoid(t)
        return s * (1.0 - s)
    return 1.0 - np.tanh(t) ** 2


def activation_error(layer, e: np.ndarray, lo: np.ndarray, hi: np.ndarray, precision: str = "float32"):
    """Error bound after an activation, given the error ``e`` and bounds ``[lo, hi]`` of its input."""
    if isinstance(layer, ReLU):
        return np.where(hi + e <= 0, 0.0, e)      # stays <= 0 when executed too: both outputs exactly 0
    if isinstance(layer, (Sigmoid, Tanh)):
        # slope bound with a tiny outward push so rounding in _max_slope cannot make it smaller
        return _max_slope(layer, lo - e, hi + e) * (1 + 1e-12) * e + ACTIVATION_ABS_ERROR[precision]
    raise TypeError(f"unsupported layer {type(layer).__name__}")


def execution_error(network: Network, lower: list, upper: list, precision: str = "float32",
                    include_folded: bool = True) -> list:
    """``e[k] >= |v̂_k(x) - v_k(x)|`` for every x in the box and every value index k (0 = input),
    where ``v`` is the float64 IR in real arithmetic and ``v̂`` the network with its parameters
    rounded to ``precision`` and evaluated in that precision (any summation order).

    ``lower``/``upper``: sound bounds on every value of the float64 IR (a :class:`LayerBounds`'
    lists, one box ``(size,)`` or a batch ``(B, size)``). See the module docstring for the bound.
    """
    return _errors(network, lower, upper, precision, include_folded)[0]


def _errors(network: Network, lower: list, upper: list, precision: str, include_folded: bool = True,
            n_layers: int | None = None, first_error=None):
    """(total errors e_k, local errors r_k introduced by layer k) for values 0..n_layers;
    ``first_error`` is added to the first layer's (see :func:`output_padding`)."""
    if precision not in UNIT_ROUNDOFF:
        raise ValueError(f"precision must be one of {sorted(UNIT_ROUNDOFF)}, got {precision!r}")
    zero = np.zeros_like(np.asarray(lower[0], dtype=np.float64))
    errors, local = [zero], [zero]
    for i, layer in enumerate(network.layers[:n_layers]):
        lo, hi = np.asarray(lower[i]), np.asarray(upper[i])
        e = errors[-1]
        if isinstance(layer, Affine):
            mag = np.maximum(np.abs(lo), np.abs(hi))
            errors.append(affine_error(layer, e, mag, precision, include_folded))
            local.append(affine_error(layer, np.zeros_like(e), mag + e, precision, include_folded))
        else:
            errors.append(activation_error(layer, e, lo, hi, precision))
            local.append(np.zeros_like(errors[-1]) if isinstance(layer, ReLU)
                         else np.full_like(errors[-1], ACTIVATION_ABS_ERROR[precision]))
        if i == 0 and first_error is not None:
            errors[1] = errors[1] + first_error
            local[1] = local[1] + first_error
    return errors, local


def _derivative_range(layer, lo: np.ndarray, hi: np.ndarray):
    """[dl, du] containing every (generalised) derivative of the activation on [lo, hi]."""
    if isinstance(layer, ReLU):
        return (lo > 0).astype(np.float64), (hi > 0).astype(np.float64)
    f = sigmoid if isinstance(layer, Sigmoid) else np.tanh
    def slope(t):
        s = f(t)
        return s * (1.0 - s) if isinstance(layer, Sigmoid) else 1.0 - s ** 2
    du = _max_slope(layer, lo, hi) * (1 + 1e-12)
    dl = np.minimum(slope(lo), slope(hi)) * (1 - 1e-12)
    return dl, du


def _right_matmul(J: np.ndarray, W) -> np.ndarray:
    """``J @ W`` for J of shape (..., m, out) and W (out, in), W dense or sparse."""
    if sp.issparse(W):
        flat = J.reshape(-1, J.shape[-1])
        return np.asarray((W.T @ flat.T).T).reshape(J.shape[:-1] + (W.shape[1],))
    return J @ W


def output_padding(network: Network, C, lower: list, upper: list, precision: str = "float32",
                   first_error=None) -> np.ndarray:
    """``pad_i >= |C_i ŷ(x) - C_i y(x)|`` over the box: how far each row ``C_i y`` of the executed
    model (see :func:`execution_error`) can be from the IR's. A proof that ``C_i y - d_i > pad_i``
    on the IR therefore covers the executed model.

    Bound: the output error telescopes into the local error ``r_k`` each layer introduces, carried
    to the output by the exact map of the later layers, whose Jacobian ``J_k`` at any point of the
    error-widened bounds ``[l - e, u + e]`` lies in an interval matrix computed backwards from
    ``C`` (signed weights, activation derivatives in ``[dl, du]``; ReLUs stable on the widened
    bounds keep their exact derivative, so cancellation between weights is kept):
    ``pad = sum_k max(|J_k^lo|, |J_k^hi|) r_k``. Much tighter than ``|C| e_out``, which multiplies by
    ``|W|`` at every layer. Only values ``0..len(network.layers)-1`` of ``lower``/``upper`` are read
    (and the output's when the last layer is an activation), so bounds of a network with ``C``
    merged into its last layer do. One box ``(size,)`` or a batch ``(B, size)``.

    ``first_error`` (per output of the first layer): how far the values the bounds describe may be
    from ``network``'s first layer on top of rounding (the bounds come from a rotated copy of it,
    :mod:`cegarnn.specs.rotation`); it is carried to the outputs like a local rounding error.
    """
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    L = len(network.layers)
    n_known = L if isinstance(network.layers[-1], Affine) else L + 1
    lower = [np.asarray(v, dtype=np.float64) for v in lower[:n_known]]
    upper = [np.asarray(v, dtype=np.float64) for v in upper[:n_known]]
    batched = lower[0].ndim == 2
    if not batched:
        lower, upper = [v[None] for v in lower], [v[None] for v in upper]
    errors, local = _errors(network, lower, upper, precision, first_error=first_error)
    B = lower[0].shape[0]
    Jl = np.broadcast_to(C, (B,) + C.shape).copy()
    Ju = Jl.copy()
    pad = np.einsum("brn,bn->br", np.abs(C)[None].repeat(B, 0), local[L])
    for i in range(L - 1, -1, -1):
        layer = network.layers[i]
        if isinstance(layer, Affine):
            # interval matrix times a point matrix in centre-radius form: [c ± r] W = c W ± r |W|
            # (the rounding of c W is at most g |c| |W|, and r |W| has only nonnegative terms)
            g = float(gamma(layer.in_size + 2, UNIT_ROUNDOFF["float64"]))
            Jc = (Jl + Ju) / 2
            Jr = _right_matmul((Ju - Jl) / 2 + g * np.abs(Jc), _abs(layer.W)) * (1 + 2 * g)
            Jc = _right_matmul(Jc, layer.W)
            Jl, Ju = Jc - Jr, Jc + Jr
        else:
            dl, du = _derivative_range(layer, lower[i] - errors[i], upper[i] + errors[i])
            dl, du = dl[:, None, :], du[:, None, :]
            cands = (Jl * dl, Jl * du, Ju * dl, Ju * du)
            Jl, Ju = np.minimum.reduce(cands), np.maximum.reduce(cands)
        if i > 0:
            pad = pad + np.einsum("brn,bn->br", np.maximum(np.abs(Jl), np.abs(Ju)), local[i])
    pad = pad * (1 + 1e-9) + 1e-12          # rounding of this float64 computation itself
    return pad if batched else pad[0]
