"""Linear regions of a ReLU network ``Affine (ReLU Affine)*`` (the patch repair's geometry).

The activation pattern of an input ``x`` fixes, for every hidden neuron ``j``, a sign ``s_j``
(+1 active: pre-activation ``z_j(x) > 0``; -1 inactive: ``z_j(x) <= 0``). Its linear region is
``{x' in domain : s_j z_j(x') >= 0 for every hidden neuron j}``; on it every pre-activation is
affine, ``z_j(x') = a_j x' + c_j`` (later layers included, since the earlier signs are fixed),
and so is the output ``f(x') = W_r x' + c_r``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..network.ir import Affine, Network, ReLU
from .constraints import RepairInputError


def relu_layers(network: Network) -> list[tuple[np.ndarray, np.ndarray]]:
    """The dense ``(W, b)`` of every Affine layer of ``network`` (consecutive Affine layers
    merged), or :class:`RepairInputError` unless the network is ``Affine (ReLU Affine)*``."""
    net = network.simplified()
    kinds = [type(l).__name__ for l in net.layers]
    bad = [k for k in kinds if k not in ("Affine", "ReLU")]
    if bad:
        raise RepairInputError(f"patch repair needs a ReLU network (Affine and ReLU layers only); "
                               f"this one has {', '.join(sorted(set(bad)))} layers")
    ok = (len(kinds) % 2 == 1 and all(isinstance(l, Affine) for l in net.layers[0::2])
          and all(isinstance(l, ReLU) for l in net.layers[1::2]))
    if not ok:
        raise RepairInputError("patch repair needs layers Affine, ReLU, Affine, ..., Affine (one ReLU between "
                               f"Affine layers, an Affine layer last); got {' -> '.join(kinds)}")
    return [(l.dense_W(), l.b) for l in net.layers[0::2]]


@dataclass(frozen=True)
class RegionMaps:
    """The linear region of one input ``x``.

    ``signs``: (H,) +1/-1 for every hidden neuron, layers concatenated; ``A`` (H, n), ``c`` (H,):
    the pre-activations on the region, ``z = A x' + c`` (None once a caller has dropped them to save
    memory); ``z``: their values at ``x``;
    ``W`` (K, n), ``b`` (K,): the output on the region, ``f = W x' + b``.
    """

    signs: np.ndarray
    A: Optional[np.ndarray]
    c: Optional[np.ndarray]
    z: np.ndarray
    W: np.ndarray
    b: np.ndarray

    @property
    def key(self) -> bytes:
        """Identifies the region: equal for two inputs iff their activation patterns are equal."""
        return np.packbits(self.signs > 0).tobytes()


def region_maps(layers, x: np.ndarray) -> RegionMaps:
    """The activation pattern of ``x`` and the affine maps of its region (float64)."""
    n = x.shape[0]
    M, m = np.eye(n), np.zeros(n)          # the current value as an affine map of x'
    v = x
    signs, As, cs, zs = [], [], [], []
    for W, b in layers[:-1]:
        z = W @ v + b
        A, c = W @ M, W @ m + b
        act = z > 0
        signs.append(np.where(act, 1.0, -1.0))
        As.append(A)
        cs.append(c)
        zs.append(z)
        v = np.where(act, z, 0.0)
        M, m = A * act[:, None], c * act
    W, b = layers[-1]
    cat = (lambda parts, shape: np.concatenate(parts) if parts else np.zeros(shape))
    return RegionMaps(cat(signs, 0), cat(As, (0, n)), cat(cs, 0), cat(zs, 0), W @ M, W @ m + b)


def violation_growth(maps: RegionMaps, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, r: float) -> np.ndarray:
    """``phi_j(r)``: the largest decrease of ``s_j z_j`` over the box ``[x - r, x + r] ∩ [lo, hi]``
    (exact for the affine extension ``a_j x' + c_j``), for every hidden neuron."""
    sa = maps.signs[:, None] * maps.A
    down = np.minimum(r, x - lo)            # room to move each coordinate down / up inside the domain
    up = np.minimum(r, hi - x)
    return np.maximum(sa, 0.0) @ down + np.maximum(-sa, 0.0) @ up


def region_radius(maps: RegionMaps, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, iters: int = 60) -> float:
    """The largest ``r`` (up to bisection) with ``[x - r, x + r] ∩ [lo, hi]`` inside the closed
    region of ``x``: ``phi_j(r) <= s_j z_j(x)`` for every hidden neuron (by induction over the
    layers the affine extensions are the true pre-activations on such a box). Every ``r``
    returned satisfies the condition as computed in float64; the whole domain gives its width."""
    slack = maps.signs * maps.z
    if slack.size == 0:
        return float(np.max(hi - lo))
    top = float(np.max(np.maximum(x - lo, hi - x)))
    if np.all(violation_growth(maps, x, lo, hi, top) <= slack):
        return top
    a, b = 0.0, top
    for _ in range(iters):
        mid = 0.5 * (a + b)
        if np.all(violation_growth(maps, x, lo, hi, mid) <= slack):
            a = mid
        else:
            b = mid
    return a


def box_slack(maps: RegionMaps, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, r: float) -> np.ndarray:
    """Per hidden neuron, a lower bound of ``s_j z_j`` over the box of radius ``r`` (>= 0 when the
    box is inside the region): ``s_j z_j(x) - phi_j(r)``."""
    return maps.signs * maps.z - violation_growth(maps, x, lo, hi, r)


def output_range_gap(maps: RegionMaps, lo_box: np.ndarray, hi_box: np.ndarray, label: int) -> np.ndarray:
    """``max over the box of f_c - f_label`` for every class ``c`` (exact on a box inside the
    region, where ``f`` is affine); the entry of ``label`` is 0."""
    D = maps.W - maps.W[label]
    e = maps.b - maps.b[label]
    return np.maximum(D * lo_box, D * hi_box).sum(axis=1) + e


__all__ = ["relu_layers", "RegionMaps", "region_maps", "region_radius", "violation_growth", "box_slack",
           "output_range_gap"]
