"""Sound piecewise-linear envelopes of S-shaped activations (sigmoid, tanh) and breakpoint sets.

An *S-shaped* function ``f`` is increasing, convex on ``(-inf, 0]`` and concave on ``[0, inf)``
(sigmoid and tanh). For a segment ``[a, b]`` :func:`envelope` returns two upper lines
``y <= k x + c`` and two lower lines ``y >= m x + d``, valid for every ``x`` in ``[a, b]``, one
of each kind exact at ``a`` and one exact at ``b``. So with breakpoints ``t_0 < ... < t_K`` the
abstraction is exact at every breakpoint — the progress guarantee of lazy refinement (DESIGN.md §3).

Construction (uniform for convex, concave and straddling segments)::

    upper through (a, f(a)):  k_a = sup_{x in (a, b]} (f(x) - f(a)) / (x - a)
    upper through (b, f(b)):  k_b = inf_{x in [a, b)} (f(b) - f(x)) / (b - x)
    lower through (a, f(a)):  m_a = inf_{x in (a, b]} (f(x) - f(a)) / (x - a)
    lower through (b, f(b)):  m_b = sup_{x in [a, b)} (f(b) - f(x)) / (b - x)

For an S-shaped ``f`` the chord slope from a fixed end is unimodal (it rises while the tangent at
``x`` lies below the chord end and falls afterwards), so the sup/inf are at an end of the segment
(the limit at the own end is ``f'``) or at the unique *tangent point* ``x*`` — where the tangent of
``f`` passes through the fixed end. We find ``x*`` by vectorised bisection on the sign of the
derivative of the chord slope (100 halvings: to machine precision on any interval) and evaluate
the chord slope there (the slope is flat at its extremum, so an error in ``x*`` hardly matters):

* ``k_a``: ``f'(a)`` if ``a >= 0``; else the secant, or the chord to the tangent point in ``(0, b)``;
* ``k_b = min(secant, f'(b))``;  ``m_a = min(f'(a), secant)``;
* ``m_b``: ``f'(b)`` if ``b <= 0``; else the secant, or the chord from the tangent point in ``(a, 0)``.

A convex segment so gets the secant above and the two end tangents below; a concave one the
mirror image. Differences ``f(x) - f(a)`` use a cancellation-free formula
(``σ(x) - σ(a) = σ(x) σ(-a) (1 - e^{a-x})``), so far tails (``|x| ~ 50``) and tiny segments work.

**Float safety.** Each line is then checked against ``f`` on a dense grid of the segment (with
the ends and the tangent points included, where a line touches ``f``) and its offset is moved
outward by the largest violation found plus ``eps`` (default :data:`EPS` ``= 1e-9``). Between grid
points the exact lines are strictly inside except at the touching points (which are on the grid),
so the remaining float error is of second order, far below ``eps``. The price: lines are exact at
their end only up to ``eps`` (+ the violation shift, typically ``< 1e-15``). Segments narrower than
:data:`TINY` ``= 1e-9`` use the slope ``f'`` of their midpoint for every line (then shifted the
same way).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..network.ir import Sigmoid, Tanh, sigmoid as _sigmoid

EPS = 1e-9          # outward shift of every envelope line (absolute, in units of f)
TINY = 1e-9         # segments narrower than this use the midpoint slope
GRID = 257          # grid points per segment for the soundness check
_BISECT = 100       # bisection steps for tangent points


class AbstractionError(ValueError):
    """Bad input to an abstraction: non-finite or inverted interval, unknown activation."""


# --------------------------------------------------------------------------- activations
class SShape:
    """An S-shaped activation ``f(x) = alpha * sigmoid(beta * x) + gamma`` (alpha, beta > 0).

    ``f`` evaluates exactly as the IR does (``ir.sigmoid`` / ``np.tanh``) so that envelopes are
    checked against the same numbers the concrete network produces.
    """

    def __init__(self, name: str, alpha: float, beta: float, gamma: float, fn):
        self.name = name
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self._fn = fn

    def __repr__(self) -> str:
        return f"SShape({self.name!r})"

    def f(self, x) -> np.ndarray:
        return self._fn(np.asarray(x, dtype=np.float64))

    def df(self, x) -> np.ndarray:
        bx = self.beta * np.asarray(x, dtype=np.float64)
        return self.alpha * self.beta * _sigmoid(bx) * _sigmoid(-bx)

    def diff(self, x, a) -> np.ndarray:
        """``f(x) - f(a)`` without cancellation (for ``x >= a``)."""
        bx = self.beta * np.asarray(x, dtype=np.float64)
        ba = self.beta * np.asarray(a, dtype=np.float64)
        with np.errstate(over="ignore"):
            return self.alpha * _sigmoid(bx) * _sigmoid(-ba) * (-np.expm1(ba - bx))


SIGMOID = SShape("sigmoid", 1.0, 1.0, 0.0, _sigmoid)
TANH = SShape("tanh", 2.0, 2.0, -1.0, np.tanh)
_REGISTRY = {"sigmoid": SIGMOID, "tanh": TANH}


def get_activation(kind) -> SShape:
    """``'sigmoid'``, ``'tanh'``, an IR layer ``Sigmoid()``/``Tanh()`` or an :class:`SShape`."""
    if isinstance(kind, SShape):
        return kind
    if isinstance(kind, Sigmoid):
        return SIGMOID
    if isinstance(kind, Tanh):
        return TANH
    if isinstance(kind, str) and kind.lower() in _REGISTRY:
        return _REGISTRY[kind.lower()]
    raise AbstractionError(f"unknown S-shaped activation {kind!r}; choose 'sigmoid' or 'tanh'")


# --------------------------------------------------------------------------- envelopes
@dataclass
class Envelope:
    """Linear bounds of ``f`` on segments ``[a, b]`` (n segments, 2 lines each kind)::

        lower_slope[:, j] * x + lower_offset[:, j]  <=  f(x)  <=  upper_slope[:, j] * x + upper_offset[:, j]

    Line ``j = 0`` is exact at ``a``, line ``j = 1`` at ``b`` (up to ``eps``).
    """

    a: np.ndarray
    b: np.ndarray
    upper_slope: np.ndarray
    upper_offset: np.ndarray
    lower_slope: np.ndarray
    lower_offset: np.ndarray

    def __len__(self) -> int:
        return self.a.shape[0]

    def upper_at(self, x) -> np.ndarray:
        """Tightest upper bound at ``x`` (shape (n,) or (n, m) for m points per segment)."""
        x = np.asarray(x, dtype=np.float64)
        xs = x[..., None]
        k, c = self.upper_slope, self.upper_offset
        if x.ndim == 2:
            k, c = k[:, None, :], c[:, None, :]
        return np.min(k * xs + c, axis=-1)

    def lower_at(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        xs = x[..., None]
        m, d = self.lower_slope, self.lower_offset
        if x.ndim == 2:
            m, d = m[:, None, :], d[:, None, :]
        return np.max(m * xs + d, axis=-1)


def _bisect(pred_true_at_lo, lo, hi, steps=_BISECT):
    """Vectorised bisection: ``pred(x)`` is True on ``[lo, x*)`` and False on ``(x*, hi]``."""
    lo = lo.copy()
    hi = hi.copy()
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        t = pred_true_at_lo(mid)
        lo = np.where(t, mid, lo)
        hi = np.where(t, hi, mid)
        if np.all(hi - lo <= 4 * np.finfo(float).eps * np.maximum(1.0, np.abs(hi))):
            break
    return 0.5 * (lo + hi)


def envelope(kind, a, b, eps: float = EPS, grid: int = GRID) -> Envelope:
    """Sound envelopes of ``f = kind`` on the segments ``[a[i], b[i]]`` (vectorised; see module doc)."""
    act = get_activation(kind)
    a = np.atleast_1d(np.asarray(a, dtype=np.float64)).reshape(-1)
    b = np.atleast_1d(np.asarray(b, dtype=np.float64)).reshape(-1)
    a, b = np.broadcast_arrays(a, b)
    a, b = a.copy(), b.copy()
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise AbstractionError("envelope: segment ends must be finite (unbounded pre-activation?)")
    if np.any(a > b):
        j = int(np.argmax(a > b))
        raise AbstractionError(f"envelope: inverted segment [{a[j]}, {b[j]}] at index {j}")
    n = a.shape[0]
    w = b - a
    tiny = w < TINY
    fa, fb = act.f(a), act.f(b)
    dfa, dfb = act.df(a), act.df(b)
    wsafe = np.where(tiny, 1.0, w)
    sec = np.where(tiny, act.df(0.5 * (a + b)), act.diff(b, a) / wsafe)

    # ---- k_a: sup chord slope from a
    ka = np.where(a >= 0, dfa, sec)
    tan_a = a.copy()                       # tangent points (for the grid); a when none
    cand = (~tiny) & (a < 0) & (b > 0)
    if np.any(cand):
        ac, bc = a[cand], b[cand]
        s_b = act.df(bc) * (bc - ac) - act.diff(bc, ac)
        root = s_b < 0
        if np.any(root):
            ar, br = ac[root], bc[root]
            xs = _bisect(lambda x: act.df(x) * (x - ar) - act.diff(x, ar) > 0, np.zeros_like(ar), br)
            kc = ka[cand]
            kc[root] = np.maximum(act.diff(xs, ar) / (xs - ar), sec[cand][root])
            ka[cand] = kc
            tc = tan_a[cand]
            tc[root] = xs
            tan_a[cand] = tc
    # ---- m_b: sup chord slope to b
    mb = np.where(b <= 0, dfb, sec)
    tan_b = b.copy()
    if np.any(cand):
        ac, bc = a[cand], b[cand]
        r_a = act.diff(bc, ac) - act.df(ac) * (bc - ac)
        root = r_a > 0
        if np.any(root):
            ar, br = ac[root], bc[root]
            xs = _bisect(lambda x: act.diff(br, x) - act.df(x) * (br - x) > 0, ar, np.zeros_like(ar))
            mc = mb[cand]
            mc[root] = np.maximum(act.diff(br, xs) / (br - xs), sec[cand][root])
            mb[cand] = mc
            tc = tan_b[cand]
            tc[root] = xs
            tan_b[cand] = tc
    kb = np.minimum(sec, dfb)
    ma = np.minimum(dfa, sec)
    kb = np.where(b <= 0, sec, kb)         # convex: exactly the secant (same as min in theory)
    ma = np.where(a >= 0, sec, ma)         # concave: the secant
    if np.any(tiny):
        mid_slope = act.df(0.5 * (a + b))
        ka = np.where(tiny, mid_slope, ka)
        kb = np.where(tiny, mid_slope, kb)
        ma = np.where(tiny, mid_slope, ma)
        mb = np.where(tiny, mid_slope, mb)

    up_k = np.stack([ka, kb], axis=1)
    up_c = np.stack([fa - ka * a, fb - kb * b], axis=1)
    lo_k = np.stack([ma, mb], axis=1)
    lo_c = np.stack([fa - ma * a, fb - mb * b], axis=1)

    # ---- soundness: dense grid including ends and touching points, shift outward
    g = max(int(grid), 2)
    X = a[:, None] + w[:, None] * np.linspace(0.0, 1.0, g)[None, :]
    X = np.concatenate([X, a[:, None], b[:, None], tan_a[:, None], tan_b[:, None]], axis=1)
    X = np.clip(X, a[:, None], b[:, None])
    F = act.f(X)
    for j in range(2):
        v_up = np.max(F - (up_k[:, j:j + 1] * X + up_c[:, j:j + 1]), axis=1)
        up_c[:, j] += np.maximum(v_up, 0.0) + eps
        v_lo = np.max((lo_k[:, j:j + 1] * X + lo_c[:, j:j + 1]) - F, axis=1)
        lo_c[:, j] -= np.maximum(v_lo, 0.0) + eps
    assert up_k.shape == (n, 2)
    return Envelope(a, b, up_k, up_c, lo_k, lo_c)


def abstract_range(kind, a, b, x, eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """``(min, max)`` of ``y`` allowed by the one-segment envelope of ``[a, b]`` at points ``x``
    (also clipped to ``[f(a), f(b)]``, as the encoder does)."""
    act = get_activation(kind)
    env = envelope(act, a, b, eps)
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    lo = np.maximum(env.lower_at(x), act.f(env.a) - eps)
    hi = np.minimum(env.upper_at(x), act.f(env.b) + eps)
    return lo, hi


# --------------------------------------------------------------------------- breakpoints
def uniform_breakpoints(lower: float, upper: float, k: int) -> np.ndarray:
    """``k`` equal segments of ``[lower, upper]``: ``k + 1`` breakpoints."""
    k = max(int(k), 1)
    if upper <= lower:
        return np.array([lower, upper], dtype=np.float64)
    t = np.linspace(lower, upper, k + 1)
    t[0], t[-1] = lower, upper
    return t


class SegmentedNeuron:
    """Sorted breakpoints ``t_0 = l < t_1 < ... < t_K = u`` of one S-shaped neuron on ``[l, u]``.

    ``add_breakpoint(t)`` inserts ``t`` unless it lies outside the open interval ``(l, u)`` or
    within ``tol`` of an existing breakpoint (then the abstraction is already exact at ``t`` up to
    ``tol * max f'``); it returns whether the set changed.
    """

    def __init__(self, lower: float, upper: float, breakpoints: Iterable[float] | None = None,
                 tol: float = 1e-6):
        lower, upper = float(lower), float(upper)
        if not (np.isfinite(lower) and np.isfinite(upper)):
            raise AbstractionError(f"segment bounds must be finite, got [{lower}, {upper}]")
        if lower > upper:
            raise AbstractionError(f"inverted neuron interval [{lower}, {upper}]")
        self.lower, self.upper, self.tol = lower, upper, float(tol)
        self._t = np.array([lower, upper], dtype=np.float64)
        if breakpoints is not None:
            for t in np.asarray(breakpoints, dtype=np.float64).reshape(-1):
                self.add_breakpoint(t)

    @classmethod
    def uniform(cls, lower: float, upper: float, k: int, tol: float = 1e-6) -> "SegmentedNeuron":
        return cls(lower, upper, uniform_breakpoints(lower, upper, k)[1:-1], tol=tol)

    @property
    def breakpoints(self) -> np.ndarray:
        return self._t.copy()

    @property
    def n_segments(self) -> int:
        return self._t.shape[0] - 1

    @property
    def segments(self) -> np.ndarray:
        """(K, 2) array of segment ends."""
        return np.stack([self._t[:-1], self._t[1:]], axis=1)

    def add_breakpoint(self, t: float) -> bool:
        t = float(t)
        if not np.isfinite(t) or t <= self.lower + self.tol or t >= self.upper - self.tol:
            return False
        if np.min(np.abs(self._t - t)) <= self.tol:
            return False
        self._t = np.sort(np.append(self._t, t))
        return True

    def segment_of(self, x: float) -> int:
        """Index of the segment holding ``x`` (clipped to the ends)."""
        return int(np.clip(np.searchsorted(self._t, x, side="right") - 1, 0, self.n_segments - 1))

    def __repr__(self) -> str:
        return f"SegmentedNeuron({self._t.tolist()})"


__all__ = ["EPS", "TINY", "SShape", "SIGMOID", "TANH", "get_activation", "Envelope", "envelope",
           "abstract_range", "uniform_breakpoints", "SegmentedNeuron", "AbstractionError"]
