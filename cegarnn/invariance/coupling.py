"""Valid rows linking two copies of one network on a pair of inputs (x, y): the mean-value cone.

For every neuron of an activation layer with pre-activations ``z_x, z_y`` and outputs ``h_x, h_y``,
the mean-value theorem gives ``h_x - h_y = λ (z_x - z_y)`` with ``λ`` between the smallest and the
largest slope ``a <= λ <= b`` of the activation on the neuron's bounds ``[l, u]`` (ReLU: ``a = b =
1`` stable active, ``0`` stable inactive, ``[0, 1]`` unstable; sigmoid/tanh: ``f'`` at the ends and
at 0 if inside). So ``δh = h_x - h_y`` lies in the cone between ``a δz`` and ``b δz``, on the side
of the sign of ``δz = z_x - z_y``. With a sign binary ``σ`` (1: ``δz >= 0``) and the difference
bounds ``D_lo <= δz <= D_hi`` (:func:`difference_bounds`), six rows express it exactly::

    δz >= D_lo (1 - σ)                         δz <= D_hi σ
    δh >= a δz + (b - a) D_lo (1 - σ)          δh <= a δz + (b - a) D_hi σ
    δh <= b δz - (b - a) D_lo (1 - σ)          δh >= b δz - (b - a) D_hi σ

(``σ = 1``: ``0 <= δz``, ``a δz <= δh <= b δz``; ``σ = 0``: the mirror image). A neuron whose sign
of ``δz`` is fixed by the bounds gets the two cone rows without a binary. Every real pair meets
these rows (with ``σ`` the sign of ``δz``), so adding them to a program that contains every real
pair keeps it an over-approximation: a bound proved with them holds for the real networks.

Why: the copies' own big-M rows let each copy use its relaxation independently, and the dual
bound of ``max ||x - y||`` subject to ``f(x) = f(y)`` hardly moves. Once the signs ``σ`` are fixed
the rows say ``f(x) - f(y) = J̄ (x - y)`` for a Jacobian ``J̄`` with slopes in ``[a, b]``; for a
residual block ``x + g(x)`` with ``Lip(g) < 1`` that forces ``x = y``, so branching on ``σ``
alone closes the proof. Measured on random contractive blocks: see docs/INVARIANCE.md.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..abstraction.sigmoid import get_activation
from ..encoding import INF, NetworkEncoding, Program
from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh

#: relative and absolute outward widening of propagated difference bounds (float64 rounding)
_RTOL, _ATOL = 1e-9, 1e-12


def _affine_diff(layer: Affine, lo: np.ndarray, hi: np.ndarray):
    W = layer.W
    if sp.issparse(W):
        Wp, Wn = W.maximum(0), W.minimum(0)
        A = abs(W)
    else:
        Wp, Wn, A = np.maximum(W, 0), np.minimum(W, 0), np.abs(W)
    l = np.asarray(Wp @ lo + Wn @ hi).reshape(-1)
    u = np.asarray(Wp @ hi + Wn @ lo).reshape(-1)
    pad = _RTOL * np.asarray(A @ np.maximum(np.abs(lo), np.abs(hi))).reshape(-1) + _ATOL
    return l - pad, u + pad


def slopes(layer, l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)``: the smallest and largest slope of the activation on ``[l, u]`` per neuron."""
    if isinstance(layer, ReLU):
        return (l >= 0).astype(np.float64), (u > 0).astype(np.float64)
    act = get_activation(layer)
    a = np.minimum(act.df(l), act.df(u))
    b = act.df(np.clip(0.0, l, u))
    return np.maximum(a * (1 - 1e-12) - 1e-15, 0.0), b * (1 + 1e-12) + 1e-15


def difference_bounds(network: Network, bounds, dlo0, dhi0) -> tuple[list, list]:
    """Bounds on ``v_x - v_y`` for every value index of two copies whose inputs differ by
    ``[dlo0, dhi0]`` and whose values lie in ``bounds``: affine layers cancel the bias
    (``δv' = W δv``), activations scale by a slope in ``[a, b]``; every value intersected with
    ``[l - u, u - l]`` of the copies' bounds. Rounded outward."""
    lo = [np.asarray(dlo0, dtype=np.float64)]
    hi = [np.asarray(dhi0, dtype=np.float64)]
    for i, layer in enumerate(network.layers):
        l, u = np.asarray(bounds.lower[i + 1]), np.asarray(bounds.upper[i + 1])
        if isinstance(layer, Affine):
            dl, dh = _affine_diff(layer, lo[i], hi[i])
        else:
            a, b = slopes(layer, np.asarray(bounds.lower[i]), np.asarray(bounds.upper[i]))
            dl = np.minimum(a * lo[i], b * lo[i])
            dh = np.maximum(a * hi[i], b * hi[i])
        lo.append(np.maximum(dl, l - u))
        hi.append(np.minimum(dh, u - l))
    return lo, hi


def add_twin_coupling(program: Program, network: Network, bounds, ex: NetworkEncoding, ey: NetworkEncoding,
                      dlo0, dhi0, name: str = "twin", signs: bool = True) -> int:
    """Add the difference-bound rows of every activation layer's pre-activation and the cone rows
    of the module docstring for two copies ``ex``, ``ey`` of ``network`` (same ``bounds``); with
    ``signs=False`` only the neurons whose sign of ``δz`` is known get cone rows (no binaries).
    Returns the number of sign binaries added."""
    Dlo, Dhi = difference_bounds(network, bounds, dlo0, dhi0)
    n_bin = 0
    for i, layer in enumerate(network.layers):
        if not isinstance(layer, (ReLU, Sigmoid, Tanh)):
            continue
        zx, zy = ex.value_vars[i], ey.value_vars[i]
        hx, hy = ex.value_vars[i + 1], ey.value_vars[i + 1]
        a, b = slopes(layer, np.asarray(bounds.lower[i]), np.asarray(bounds.upper[i]))
        dl, dh = Dlo[i], Dhi[i]
        n = len(zx)
        ar = np.arange(n)
        # D_lo <= z_x - z_y <= D_hi
        program.add_rows(np.concatenate([ar, ar]), np.concatenate([zx, zy]), np.concatenate([np.ones(n), -np.ones(n)]),
                         dl, dh, name=f"{name}.L{i}.dz")
        cone = np.flatnonzero(b - a > 0)
        pos = cone[dl[cone] >= 0]
        neg = cone[dh[cone] <= 0]
        mixed = cone[(dl[cone] < 0) & (dh[cone] > 0)]
        for idx, lower_slope, upper_slope in ((pos, a, b), (neg, b, a)):
            if idx.size:          # lower_slope δz <= δh <= upper_slope δz
                _cone_rows(program, zx[idx], zy[idx], hx[idx], hy[idx], lower_slope[idx], upper_slope[idx],
                           f"{name}.L{i}.cone")
        if mixed.size and signs:
            sig = program.add_binaries(mixed.size, name=f"{name}.L{i}.sign")
            _signed_rows(program, zx[mixed], zy[mixed], hx[mixed], hy[mixed], sig, a[mixed], b[mixed],
                         dl[mixed], dh[mixed], f"{name}.L{i}.signed")
            n_bin += mixed.size
    return n_bin


def _cone_rows(program, zx, zy, hx, hy, lo_s, hi_s, name) -> None:
    """``lo_s δz <= δh`` and ``δh <= hi_s δz``: rows ``δh - s δz`` >= 0 / <= 0."""
    k = len(zx)
    ar = np.arange(k)
    rows, cols, vals = [], [], []
    for r0, s in ((0, lo_s), (k, hi_s)):
        rows += [ar + r0] * 4
        cols += [hx, hy, zx, zy]
        vals += [np.ones(k), -np.ones(k), -s, s]
    program.add_rows(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals),
                     np.concatenate([np.zeros(k), np.full(k, -INF)]), np.concatenate([np.full(k, INF), np.zeros(k)]),
                     name=name)


def _signed_rows(program, zx, zy, hx, hy, sig, a, b, dl, dh, name) -> None:
    """The six rows of the module docstring, one block of ``6 k`` rows."""
    k = len(zx)
    one = np.ones(k)
    # (coef of δz, coef of δh, coef of σ, lo, hi) per row kind
    kinds = [
        (one, 0 * one, dl, dl, np.full(k, INF)),                          # δz + D_lo σ >= D_lo
        (one, 0 * one, -dh, np.full(k, -INF), 0 * one),                    # δz - D_hi σ <= 0
        (-a, one, (b - a) * dl, (b - a) * dl, np.full(k, INF)),            # δh - a δz + (b-a) D_lo σ >= (b-a) D_lo
        (-a, one, -(b - a) * dh, np.full(k, -INF), 0 * one),               # δh - a δz - (b-a) D_hi σ <= 0
        (-b, one, -(b - a) * dl, np.full(k, -INF), -(b - a) * dl),         # δh - b δz - (b-a) D_lo σ <= -(b-a) D_lo
        (-b, one, (b - a) * dh, 0 * one, np.full(k, INF)),                 # δh - b δz + (b-a) D_hi σ >= 0
    ]
    rows, cols, vals, los, his = [], [], [], [], []
    for r, (cz, ch, cs, lo, hi) in enumerate(kinds):
        base = np.arange(k) + r * k
        rows += [base] * 5
        cols += [zx, zy, hx, hy, sig]
        vals += [cz, -cz, ch, -ch, cs]
        los.append(lo)
        his.append(hi)
    program.add_rows(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), np.concatenate(los),
                     np.concatenate(his), name=name)


__all__ = ["add_twin_coupling", "difference_bounds", "slopes"]
