"""Interval bound propagation (IBP) in float64: always available, sound, loosest.

Rounded outward: every bound contains the exact real-number image of the input box despite
float64 rounding. Affine layers: with ``c = (lo + hi) / 2`` and ``r >= max(hi - c, c - lo)``
(rounded up), the exact image lies in ``W c + b ± |W| r``; the computed ``W c + b`` and ``|W| r``
are within ``γ_{n+1} (|W| (|c| + r) + |b|)`` of the exact values for any summation order
(``γ_n = n u / (1 - n u)``, ``u = 2^-53``, ``n`` the number of summed products of an output;
Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1), so that term (with ``γ_{n+3}``,
covering the final additions too) is added to the radius and the results are pushed one ulp
outward. Sigmoid/tanh: monotone, evaluated at the bounds and pushed ``ACTIVATION_ULPS`` ulps
outward (measured: at most 2.2 ulps error for :func:`~cegarnn.network.ir.sigmoid` and 1.2 for
``np.tanh`` against 200-bit values), then clipped to the functions' ranges. ReLU is exact.
The widening is relative ``~ n u`` (1e-13 for n = 784): negligible next to any real bound width.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh, sigmoid
from .box import LayerBounds, check_box


def _abs(W):
    return abs(W) if sp.issparse(W) else np.abs(W)


#: unit roundoff of float64
_U = 2.0 ** -53
#: ulps by which sigmoid/tanh values at the bounds are pushed outward
ACTIVATION_ULPS = 4


def _gamma(n):
    n = np.asarray(n, dtype=np.float64)
    return n * _U / (1.0 - n * _U)


def _terms_per_row(W) -> np.ndarray:
    """Number of summed products of each output (nonzeros of each row of a sparse W)."""
    if sp.issparse(W):
        return np.diff(W.tocsr().indptr).astype(np.float64)
    return np.full(W.shape[0], float(W.shape[1]))


def affine_interval(layer: Affine, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interval image of an affine map on a box (batched on the leading dim), float64, rounded
    outward so that it contains the exact real image (see the module docstring)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    c = (lo + hi) / 2.0
    r = np.nextafter(np.maximum(hi - c, c - lo), np.inf)          # [c - r, c + r] covers [lo, hi]
    r = np.maximum(r, 0.0)
    absW = _abs(layer.W)
    mid = np.asarray(layer.W @ c.T).T + layer.b
    rad = np.asarray(absW @ r.T).T
    mag = np.asarray(absW @ (np.abs(c) + r).T).T + np.abs(layer.b)
    err = _gamma(_terms_per_row(layer.W) + 3) * mag
    rad = rad + err
    return np.nextafter(mid - rad, -np.inf), np.nextafter(mid + rad, np.inf)


def _outward(lo, hi, k: int, floor: float, ceil: float):
    for _ in range(k):
        lo = np.nextafter(lo, -np.inf)
        hi = np.nextafter(hi, np.inf)
    return np.maximum(lo, floor), np.minimum(hi, ceil)


def activation_interval(layer, lo, hi):
    """Interval image of an activation (monotone), rounded outward (see the module docstring)."""
    if isinstance(layer, ReLU):
        return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
    if isinstance(layer, Sigmoid):
        return _outward(sigmoid(lo), sigmoid(hi), ACTIVATION_ULPS, 0.0, 1.0)
    if isinstance(layer, Tanh):
        return _outward(np.tanh(lo), np.tanh(hi), ACTIVATION_ULPS, -1.0, 1.0)
    raise TypeError(f"unsupported layer {type(layer).__name__}")


def propagate(network: Network, lower: list, upper: list, start: int = 0) -> LayerBounds:
    """Fill bounds for values ``start+1..`` by interval arithmetic from value ``start``, keeping any
    tighter bounds already present in ``lower``/``upper`` (lists that may be partly None)."""
    lower = list(lower) + [None] * (len(network.layers) + 1 - len(lower))
    upper = list(upper) + [None] * (len(network.layers) + 1 - len(upper))
    for i, layer in enumerate(network.layers[start:], start):
        if isinstance(layer, Affine):
            lo, hi = affine_interval(layer, lower[i], upper[i])
        else:
            lo, hi = activation_interval(layer, lower[i], upper[i])
        if lower[i + 1] is not None:
            lo = np.maximum(lo, lower[i + 1])
            hi = np.minimum(hi, upper[i + 1])
        lower[i + 1], upper[i + 1] = lo, hi
    return LayerBounds(lower, upper, "interval")


def interval_bounds(network: Network, lower, upper) -> LayerBounds:
    """IBP bounds on every value for an input box or a batch of boxes (B, n)."""
    lo, hi = check_box(lower, upper, network.n_inputs)
    return propagate(network, [lo], [hi])
