"""Interval bound propagation (IBP) in float64: always available, sound, loosest."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh, sigmoid
from .box import LayerBounds, check_box


def _abs(W):
    return abs(W) if sp.issparse(W) else np.abs(W)


def affine_interval(layer: Affine, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact interval image of an affine map on a box (batched on the leading dim), float64."""
    c = (lo + hi) / 2.0
    r = (hi - lo) / 2.0
    mid = np.asarray(layer.W @ c.T).T + layer.b
    rad = np.asarray(_abs(layer.W) @ r.T).T
    return mid - rad, mid + rad


def activation_interval(layer, lo, hi):
    if isinstance(layer, ReLU):
        return np.maximum(lo, 0.0), np.maximum(hi, 0.0)
    if isinstance(layer, Sigmoid):
        return sigmoid(lo), sigmoid(hi)
    if isinstance(layer, Tanh):
        return np.tanh(lo), np.tanh(hi)
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
