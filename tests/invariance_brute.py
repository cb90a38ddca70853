"""Ground truth for the invariance tests on tiny networks (2-4 inputs), independent of cegarnn's
bounds, encoder and solvers: a batched forward pass, interval arithmetic of our own (centre-radius,
widened outward), dense sampling for lower bounds on a maximum, and exhaustive interval splitting
(branch and bound over boxes, or over pairs of boxes) for upper bounds."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cegarnn.network import Affine, ReLU, Sigmoid, Tanh


def _layers(net):
    out = []
    for layer in net.layers:
        if isinstance(layer, Affine):
            W = layer.W.toarray() if sp.issparse(layer.W) else np.asarray(layer.W)
            out.append(("affine", W, np.asarray(layer.b)))
        elif isinstance(layer, ReLU):
            out.append(("relu",))
        elif isinstance(layer, Sigmoid):
            out.append(("sigmoid",))
        elif isinstance(layer, Tanh):
            out.append(("tanh",))
    return out


def _act(kind, v):
    if kind == "relu":
        return np.maximum(v, 0.0)
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-v))
    return np.tanh(v)


def forward(net, X) -> np.ndarray:
    """Outputs for a batch (B, n)."""
    v = np.atleast_2d(np.asarray(X, dtype=np.float64))
    for L in _layers(net):
        v = v @ L[1].T + L[2] if L[0] == "affine" else _act(L[0], v)
    return v


def interval(net, lo, hi):
    """Sound output bounds for a batch of boxes (B, n): centre-radius arithmetic, widened by
    1e-12 relative + 1e-12 absolute per layer (float64 rounding)."""
    lo, hi = np.atleast_2d(lo).astype(np.float64), np.atleast_2d(hi).astype(np.float64)
    for L in _layers(net):
        if L[0] == "affine":
            W, b = L[1], L[2]
            c, r = (lo + hi) / 2, (hi - lo) / 2
            m, rad = c @ W.T + b, r @ np.abs(W).T
            pad = 1e-12 * (np.abs(c) @ np.abs(W).T + rad + np.abs(b)) + 1e-12
            lo, hi = m - rad - pad, m + rad + pad
        else:
            lo, hi = _act(L[0], lo), _act(L[0], hi)
    return lo, hi


def sample_ball(lo, hi, n, seed=0) -> np.ndarray:
    """``n`` uniform points of the box plus a 9^d grid (d <= 3; 3^d for d <= 6), or ``n`` random
    vertices of the box for larger d."""
    rng = np.random.default_rng(seed)
    d = lo.shape[0]
    pts = [lo + (hi - lo) * rng.random((n, d))]
    if d <= 6:
        k = 9 if d <= 3 else 3
        pts.append(np.stack(np.meshgrid(*[np.linspace(lo[j], hi[j], k) for j in range(d)]), -1).reshape(-1, d))
    else:
        pts.append(np.where(rng.random((n, d)) < 0.5, lo, hi))
    return np.concatenate(pts)


def _pair_max(A, B, fa, fb, tau, value, chunk=512):
    """max value(a, b) over sampled pairs with ||fa - fb||∞ <= tau; (value, a, b)."""
    best = (-np.inf, None, None)
    for s in range(0, A.shape[0], chunk):
        close = np.max(np.abs(fa[s:s + chunk, None, :] - fb[None, :, :]), axis=2) <= tau
        if not close.any():
            continue
        v = np.where(close, value(A[s:s + chunk, None, :], B[None, :, :]), -np.inf)
        i, j = np.unravel_index(np.argmax(v), v.shape)
        if v[i, j] > best[0]:
            best = (float(v[i, j]), A[s + i], B[j])
    return best


def linf(a, b):
    return np.max(np.abs(a - b), axis=-1)


def l1(a, b):
    return np.sum(np.abs(a - b), axis=-1)


def sampled_invertibility(net, lo, hi, tau, norm=linf, n=1500, center=None):
    """Lower bound on max ||x - y|| with ||f(x) - f(y)||∞ <= tau (y = centre if given)."""
    X = sample_ball(lo, hi, n)
    fx = forward(net, X)
    if center is None:
        return _pair_max(X, X, fx, fx, tau, norm)[0]
    c = np.asarray(center)[None]
    return _pair_max(X, c, fx, forward(net, c), tau, norm)[0]


def _split(lo, hi):
    """Both halves of every box along its widest side."""
    k = np.argmax(hi - lo, axis=1)
    mid = (lo[np.arange(len(lo)), k] + hi[np.arange(len(lo)), k]) / 2
    hi1, lo2 = hi.copy(), lo.copy()
    hi1[np.arange(len(lo)), k] = mid
    lo2[np.arange(len(lo)), k] = mid
    return np.concatenate([lo, lo2]), np.concatenate([hi1, hi])


def pair_upper_bound(f_con, lo, hi, tau, objective, lower=0.0, iters=14, cap=60_000, center=None):
    """Upper bound on ``max objective(Bx, By)`` over pairs x, y of the box (y = centre if given)
    with ``||f_con(x) - f_con(y)||∞ <= tau``, by splitting pairs of boxes: a pair whose output
    intervals are more than ``tau`` apart in some output is excluded; ``objective(lx, hx, ly, hy)``
    bounds the objective on a pair of boxes; pairs that cannot beat ``lower`` are dropped."""
    xl, xh = lo[None].copy(), hi[None].copy()
    yl, yh = (xl.copy(), xh.copy()) if center is None else (np.asarray(center)[None], np.asarray(center)[None])
    ub = np.inf
    for it in range(iters + 1):
        a_lo, a_hi = interval(f_con, xl, xh)
        b_lo, b_hi = interval(f_con, yl, yh)
        sep = np.any((a_lo - b_hi > tau) | (b_lo - a_hi > tau), axis=1)
        obj = objective(xl, xh, yl, yh)
        keep = ~sep & (obj > lower)
        xl, xh, yl, yh, obj = xl[keep], xh[keep], yl[keep], yh[keep], obj[keep]
        ub = float(max(lower, np.max(obj, initial=-np.inf)))
        if it == iters or len(xl) == 0 or 4 * len(xl) > cap:
            break
        n = len(xl)
        if center is None:
            xl2, xh2 = _split(xl, xh)
            yl2, yh2 = _split(yl, yh)
            ix = np.repeat(np.arange(2 * n).reshape(2, n).T, 2, axis=1).reshape(-1)
            iy = np.tile(np.arange(2 * n).reshape(2, n).T, (1, 2)).reshape(-1)
            xl, xh, yl, yh = xl2[ix], xh2[ix], yl2[iy], yh2[iy]
        else:
            xl, xh = _split(xl, xh)
            yl, yh = np.repeat(yl, 2, 0), np.repeat(yh, 2, 0)
    return ub


def box_distance(norm="linf"):
    """Largest ||x - y|| over x in [lx, hx], y in [ly, hy]."""
    def f(lx, hx, ly, hy):
        d = np.maximum(np.abs(hx - ly), np.abs(hy - lx))
        return d.max(axis=1) if norm == "linf" else d.sum(axis=1)
    return f


def output_distance(net):
    """Largest ||net(x) - net(y)||∞ over x, y in two boxes (interval arithmetic)."""
    def f(lx, hx, ly, hy):
        al, ah = interval(net, lx, hx)
        bl, bh = interval(net, ly, hy)
        return np.maximum(ah - bl, bh - al).max(axis=1)
    return f


def difference_bounds(f1, f2, lo, hi, lower=0.0, iters=18, cap=100_000):
    """(sampled lower bound, upper bound by splitting) of max ||f1(x) - f2(x)||∞ over the box."""
    X = sample_ball(lo, hi, 4000)
    lb = float(np.max(np.abs(forward(f1, X) - forward(f2, X))))
    bl, bh = lo[None].copy(), hi[None].copy()
    ub = np.inf
    for it in range(iters + 1):
        l1_, h1 = interval(f1, bl, bh)
        l2, h2 = interval(f2, bl, bh)
        obj = np.maximum(h1 - l2, h2 - l1_).max(axis=1)
        keep = obj > max(lb, lower)
        bl, bh, obj = bl[keep], bh[keep], obj[keep]
        ub = float(max(lb, np.max(obj, initial=-np.inf)))
        if len(bl) == 0 or 2 * len(bl) > cap:
            break
        bl, bh = _split(bl, bh)
    return lb, ub
