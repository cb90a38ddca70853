"""Linear relaxations of ReLU, sigmoid and tanh on pre-activation bounds ``[l, u]``, batched and
written once for numpy and torch (the array namespace ``xp`` is passed in).

For every neuron the relaxation is a pair of lines valid on ``[l, u]``::

    kl * x + cl  <=  f(x)  <=  ku * x + cu        for all x in [l, u]

ReLU (CROWN's choice): stable neurons exact; unstable ``l < 0 < u``: upper the chord
``u (x - l) / (u - l)``, lower ``a x`` with ``a`` in [0, 1] (default 1 if ``u > -l`` else 0, as
auto_LiRPA's CROWN; alpha-CROWN optimises it).

S-shaped ``f = alpha sigmoid(beta x) + gamma`` (sigmoid, tanh; constants from
:func:`cegarnn.abstraction.sigmoid.get_activation`):

* convex segment (``u <= 0``): upper the secant; lower the tangent at ``t = l + p (u - l)``
  (default ``p = 1/2``, the midpoint);
* concave segment (``l >= 0``): mirrored (lower secant, upper tangent at ``t``);
* straddling: upper the tangent at ``d`` in ``[d*, u]`` where ``d* >= 0`` is the tangent point whose
  tangent passes through ``(l, f(l))`` (any ``d >= d*`` is above ``f`` on ``[l, inf)``: the tangent's
  value at ``l`` minus ``f(l)`` increases with ``d >= 0``, and it is above ``f`` on the concave side);
  when no such ``d* <= u`` exists the secant is valid and used. Lower mirrored (``d <= d'*``).
  ``d*`` is found by safeguarded Newton and kept on its sound side.
* segments narrower than :data:`TINY`: the constant lines ``f(l)`` and ``f(u)``.

Every offset is then moved outward by ``eps`` (float rounding of the line's evaluation:
``EPS_ULPS`` units of roundoff times the magnitudes involved, at least :data:`EPS_ABS`), so a line
computed in floating point is a valid bound of the exact function.
"""
from __future__ import annotations

import numpy as np

from ...abstraction.sigmoid import get_activation
from ...network.ir import ReLU, Sigmoid, Tanh

#: segments narrower than this use constant lines
TINY = 1e-9
#: safeguarded Newton steps for tangent points, and the final push to the sound side
NEWTON_STEPS = 12
NUDGE = 1e-9
#: absolute outward shift of every line (covers float64 evaluation of f and of the line)
EPS_ABS = 1e-12
EPS_ULPS = 64


class Ops:
    """The few array operations the relaxations need, for ``numpy`` or ``torch``."""

    def __init__(self, xp):
        self.xp = xp
        self.torch = xp is not np

    def sigmoid(self, x):
        if self.torch:
            return self.xp.sigmoid(x)
        with np.errstate(over="ignore"):
            e = np.exp(-np.abs(x))
            return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    def expm1(self, x):
        return self.xp.expm1(x)

    def clip(self, x, lo, hi):
        return self.xp.minimum(self.xp.maximum(x, lo), hi)

    def unit(self, x) -> float:
        """Unit roundoff of ``x``'s dtype."""
        if self.torch:
            return float(self.xp.finfo(x.dtype).eps) / 2
        return float(np.finfo(x.dtype).eps) / 2


class SShapeFns:
    """``f``, ``f'`` and ``f(x) - f(a)`` (no cancellation) of ``alpha sigmoid(beta x) + gamma``."""

    def __init__(self, layer, ops: Ops):
        act = get_activation(layer)
        self.al, self.be, self.ga, self.ops = act.alpha, act.beta, act.gamma, ops

    def f(self, x):
        return self.al * self.ops.sigmoid(self.be * x) + self.ga

    def df(self, x):
        s = self.ops.sigmoid(self.be * x)
        return self.al * self.be * s * (1 - s)

    def d2f(self, x):
        s = self.ops.sigmoid(self.be * x)
        return self.al * self.be * self.be * s * (1 - s) * (1 - 2 * s)

    def diff(self, x, a):
        """``f(x) - f(a)`` for ``x >= a``."""
        o = self.ops
        return self.al * o.sigmoid(self.be * x) * o.sigmoid(-self.be * a) * (-o.expm1(self.be * (a - x)))


def relu_relax(ops: Ops, l, u, slope=None):
    """``(kl, cl, ku, cu)`` for ReLU on ``[l, u]`` (arrays of the shape of l). ``slope``: lower slope
    of unstable neurons in [0, 1] (default CROWN's adaptive choice); may broadcast to more dims."""
    xp = ops.xp
    act = l >= 0
    unstable = (l < 0) & (u > 0)
    width = xp.where(unstable, u - l, xp.ones_like(u))
    one, zer = 1 + 0 * u, 0 * u
    k = xp.where(unstable, u / width, xp.where(act, one, zer))
    cu = xp.where(unstable, -k * l, 0 * u)
    # rounding of k (u - l): a few ulps of |u|, |l|
    cu = cu + xp.where(unstable, ops.unit(u) * EPS_ULPS * (xp.abs(u) + xp.abs(l)), 0 * u)
    if slope is None:
        slope = xp.where(u > -l, one, zer)
    kl = xp.where(unstable, slope, xp.where(act, one, zer))
    cl = 0 * kl
    return kl, cl, k, cu


def _root(fn, val, dval, lo, hi, tail_up: bool, steps=NEWTON_STEPS):
    """Safeguarded Newton for the root of an increasing ``val`` on ``[lo, hi]`` with
    ``val(lo) < 0 <= val(hi)``: returns ``hi'`` with ``val(hi') >= 0`` (``tail_up``) or ``lo'`` with
    ``val(lo') <= 0``, within ~``NUDGE`` of the root."""
    xp = fn.ops.xp
    d = hi if tail_up else lo
    for _ in range(steps):
        g = val(d)
        lo = xp.where(g < 0, d, lo)
        hi = xp.where(g >= 0, d, hi)
        step = d - g / dval(d)
        ok = (step > lo) & (step < hi)
        d = xp.where(ok, step, 0.5 * (lo + hi))
    # the last iterate is next to the root: push it by NUDGE to the sound side and keep it if it is
    nudged = d + NUDGE * (1 + xp.abs(d)) if tail_up else d - NUDGE * (1 + xp.abs(d))
    g = val(nudged)
    if tail_up:
        return xp.where((g >= 0) & (nudged < hi), nudged, hi)
    return xp.where((g <= 0) & (nudged > lo), nudged, lo)


def tangent_limits(fn: SShapeFns, l, u):
    """For straddling neurons: ``(d_up, d_lo)`` with every tangent at ``d >= d_up`` an upper line
    and every tangent at ``d <= d_lo`` a lower line on ``[l, u]``; ``d_up = +inf`` (resp.
    ``d_lo = -inf``) where the secant is the tight valid line (and for non-straddling neurons).
    Computed on the straddling neurons only; call without gradient."""
    ops = fn.ops
    d_up = 0 * u + float("inf")
    d_lo = 0 * u - float("inf")
    s = (l < 0) & (u > 0) & (u - l >= TINY)
    if not bool(s.any()):
        return d_up, d_lo
    if not ops.torch:
        with np.errstate(all="ignore"):
            return _limits(fn, l, u, s, d_up, d_lo)
    return _limits(fn, l, u, s, d_up, d_lo)


def _limits(fn, l, u, s, d_up, d_lo):
    xp = fn.ops.xp
    ls, us = l[s], u[s]
    zero = 0 * us
    # g(d) = f(d) + f'(d) (l - d) - f(l), increasing on d >= 0: >= 0 <=> tangent at d is above f at l
    g = lambda d: fn.diff(d, ls) - fn.df(d) * (d - ls)  # noqa: E731
    dg = lambda d: -fn.d2f(d) * (d - ls)  # noqa: E731
    need = g(us) > 0
    up = xp.where(need, _root(fn, g, dg, zero, us, True), zero + float("inf"))
    # h(d) = f(d) + f'(d) (u - d) - f(u), increasing on d <= 0: <= 0 <=> tangent at d is below f at u
    h = lambda d: fn.df(d) * (us - d) - fn.diff(us, d)  # noqa: E731
    dh = lambda d: fn.d2f(d) * (us - d)  # noqa: E731
    need = h(ls) < 0
    low = xp.where(need, _root(fn, h, dh, ls, zero, False), zero - float("inf"))
    d_up[s] = up
    d_lo[s] = low
    return d_up, d_lo


def sshape_relax(fn: SShapeFns, l, u, p_low=None, p_up=None, limits=None):
    """``(kl, cl, ku, cu)`` for sigmoid/tanh on ``[l, u]`` (see the module docstring).

    ``p_low`` / ``p_up`` in [0, 1] choose the tangent point of the lower / upper tangent line
    (default: CROWN's choice); they may have more leading dims than ``l`` (broadcast).
    ``limits``: ``tangent_limits(fn, l, u)`` if already computed."""
    ops = fn.ops
    xp = ops.xp
    if limits is None:
        limits = tangent_limits(fn, l, u)
    d_up, d_lo = limits
    w = u - l
    tiny = w < TINY
    fl, fu = fn.f(l), fn.f(u)
    wsafe = xp.where(tiny, 1 + 0 * w, w)
    sec = fn.diff(u, l) / wsafe
    convex = u <= 0
    concave = l >= 0
    mid_default = 0.5
    pl = mid_default if p_low is None else p_low
    pu = mid_default if p_up is None else p_up
    # ---- lower line: tangent at t_lo (convex / straddle with d_lo) or secant (concave / straddle)
    fin_lo = xp.isfinite(d_lo)
    dlo = xp.where(fin_lo, d_lo, l)
    t_lo = xp.where(convex, l + pl * w, dlo + (0.0 if p_low is None else p_low) * (l - dlo))
    sec_lo = concave | ((~convex) & (~fin_lo))
    # ---- upper line
    fin_up = xp.isfinite(d_up)
    dup = xp.where(fin_up, d_up, u)
    t_up = xp.where(concave, l + pu * w, dup + (0.0 if p_up is None else p_up) * (u - dup))
    sec_up = convex | ((~concave) & (~fin_up))
    kt_lo, kt_up = fn.df(t_lo), fn.df(t_up)
    kl = xp.where(sec_lo, sec, kt_lo)
    cl = xp.where(sec_lo, fl - sec * l, fn.f(t_lo) - kt_lo * t_lo)
    ku = xp.where(sec_up, sec, kt_up)
    cu = xp.where(sec_up, fl - sec * l, fn.f(t_up) - kt_up * t_up)
    # tiny segments: constants
    kl = xp.where(tiny, 0 * kl, kl)
    ku = xp.where(tiny, 0 * ku, ku)
    cl = xp.where(tiny, fl, cl)
    cu = xp.where(tiny, fu, cu)
    mag = xp.maximum(xp.abs(l), xp.abs(u))
    eps = ops.unit(u) * EPS_ULPS * (1 + xp.abs(kl) * mag + xp.abs(cl)) + EPS_ABS
    epu = ops.unit(u) * EPS_ULPS * (1 + xp.abs(ku) * mag + xp.abs(cu)) + EPS_ABS
    return kl, cl - eps, ku, cu + epu


def is_sshape(layer) -> bool:
    return isinstance(layer, (Sigmoid, Tanh))


def is_relu(layer) -> bool:
    return isinstance(layer, ReLU)
