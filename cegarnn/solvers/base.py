"""Backend protocol and the exact status vocabulary every backend maps onto.

A backend wraps one :class:`~cegarnn.encoding.program.Program`. ``solve()`` first brings the
solver's model up to date with the program (incremental backends add only what is new), then
solves. Statuses are mapped exactly: only a solver that *proved* optimality or infeasibility may
report ``OPTIMAL``/``INFEASIBLE``; a time limit, an interrupt, an iteration limit or numerical
trouble is reported as such, with the best solution and the proven bound when the solver has them.

This module knows no implementation: backends are built by name in :mod:`.registry`.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np
import scipy.sparse as sp


class Status(str, enum.Enum):
    OPTIMAL = "optimal"                  # proven optimal (MIP: within the gap tolerance)
    INFEASIBLE = "infeasible"            # proven infeasible
    UNBOUNDED = "unbounded"              # proven unbounded (or infeasible-or-unbounded)
    TIME_LIMIT = "time_limit"
    ITERATION_LIMIT = "iteration_limit"
    INTERRUPTED = "interrupted"          # stopped on purpose: objective target / bound threshold reached
    NUMERICAL_ERROR = "numerical_error"
    UNKNOWN = "unknown"

    @property
    def proven(self) -> bool:
        return self in (Status.OPTIMAL, Status.INFEASIBLE, Status.UNBOUNDED)


@dataclass
class Solution:
    """Result of one solve, in the program's own objective sense.

    ``x``: best primal point found (None if none); ``objective``: its value;
    ``bound``: proven bound on the optimum (min: lower bound; max: upper bound), or None. This is
    what a proof may rest on, never ``objective``. For an LP solved to optimality it is the safe
    bound of :func:`safe_lp_bound` (rigorous up to the documented rounding analysis; equal to the
    optimum to ~1e-9 on well-scaled LPs, and possibly ``-inf``/``+inf``, i.e. no proof, when
    the duals do not give one). For a MILP it is the solver's dual bound relaxed by
    :func:`scaled_margin` (not rigorous: see there).
    """

    status: Status
    x: Optional[np.ndarray] = None
    objective: Optional[float] = None
    bound: Optional[float] = None
    time: float = 0.0
    message: str = ""
    node_count: int = 0

    @property
    def has_solution(self) -> bool:
        return self.x is not None


# --------------------------------------------------------------------------- safe bounds
#: unit roundoff of float64
U64 = 2.0 ** -53


def _gamma(n):
    """``γ_n = n u / (1 - n u)``: relative error bound of a float64 sum/dot product of n terms
    (any summation order, with or without FMA; Higham, *Accuracy and Stability*, §3.1)."""
    n = np.asarray(n, dtype=np.float64)
    return n * U64 / (1.0 - n * U64)


def _down(x):
    return np.nextafter(x, -np.inf)


def _up(x):
    return np.nextafter(x, np.inf)


class LPView:
    """The constraint matrix of a :class:`~cegarnn.encoding.program.Program` in the forms the safe
    bound needs (CSR, its transpose, ``|A|^T``, nonzeros per row/column). Programs only ever append
    entries, so a view stays valid while ``(n_rows, n_vars, n_entries)`` is unchanged
    (:meth:`matches`); backends keep one and rebuild it when the program grew."""

    def __init__(self, program):
        self.key = (program.n_rows, program.n_vars, program.n_entries)
        A = program.matrix().tocsr()
        A.sum_duplicates()
        A.eliminate_zeros()
        self.A = A
        self.AT = A.T.tocsr()
        self.absAT = abs(self.AT)
        self.col_nnz = np.diff(self.AT.indptr).astype(np.float64)

    def matches(self, program) -> bool:
        return self.key == (program.n_rows, program.n_vars, program.n_entries)


def _implied_bounds(view: LPView, rlo, rhi, lo, hi, c=None, cut=None, passes: int = 4):
    """Finite bounds for columns with an infinite bound, implied by the rows (and by the objective
    cut-off row ``c x <= cut`` when given), by one-row activity arguments (FBBT) with the float64
    rounding of every step covered. Only infinite sides are filled; bounds are never tightened.
    Columns whose implied bound needs two unknown terms stay infinite (several passes help for
    chains)."""
    lo, hi = lo.astype(np.float64, copy=True), hi.astype(np.float64, copy=True)
    need = ~(np.isfinite(lo) & np.isfinite(hi))
    if not need.any():
        return lo, hi
    n = lo.shape[0]
    A, rl, rh = view.A, rlo, rhi
    if cut is not None and c is not None and np.isfinite(cut):
        nz = np.flatnonzero(c)
        if nz.size:
            row = sp.csr_matrix((c[nz], (np.zeros(nz.size, dtype=np.int64), nz)), shape=(1, n))
            A = sp.vstack([A, row], format="csr")
            rl = np.append(rlo, -np.inf)
            rh = np.append(rhi, float(cut))
    Acsc = A.tocsc()
    for _ in range(passes):
        need = ~(np.isfinite(lo) & np.isfinite(hi))
        if not need.any():
            break
        rows = np.unique(Acsc[:, np.flatnonzero(need)].indices)
        if rows.size == 0:
            break
        S = A[rows]
        cnt = np.diff(S.indptr)
        ri = np.repeat(np.arange(rows.size), cnt)
        cj, a = S.indices, S.data
        keep = a != 0
        ri, cj, a = ri[keep], cj[keep], a[keep]
        with np.errstate(invalid="ignore", over="ignore"):
            minc = np.where(a > 0, a * lo[cj], a * hi[cj])
            maxc = np.where(a > 0, a * hi[cj], a * lo[cj])
        fin_min, fin_max = np.isfinite(minc), np.isfinite(maxc)
        fmin, fmax = np.where(fin_min, minc, 0.0), np.where(fin_max, maxc, 0.0)
        R = rows.size
        smin = np.bincount(ri, fmin, minlength=R)
        smax = np.bincount(ri, fmax, minlength=R)
        kmin = np.bincount(ri, ~fin_min, minlength=R)
        kmax = np.bincount(ri, ~fin_max, minlength=R)
        mag = np.bincount(ri, np.maximum(np.abs(fmin), np.abs(fmax)), minlength=R)
        nnz = np.bincount(ri, minlength=R)
        with np.errstate(invalid="ignore", over="ignore"):
            resmin = np.where(kmin[ri] == 0, smin[ri] - fmin,
                              np.where((kmin[ri] == 1) & ~fin_min, smin[ri], -np.inf))
            resmax = np.where(kmax[ri] == 0, smax[ri] - fmax,
                              np.where((kmax[ri] == 1) & ~fin_max, smax[ri], np.inf))
            U, L = rh[rows][ri], rl[rows][ri]
            bmag = np.where(np.isfinite(U), np.abs(U), 0.0) + np.where(np.isfinite(L), np.abs(L), 0.0)
            err = _gamma(nnz[ri] + 6) * (mag[ri] + bmag)
            # a x_j <= U - resmin (+ err) ;  a x_j >= L - resmax (- err)
            num_u = np.where(np.isfinite(U) & np.isfinite(resmin), U - resmin + err, np.inf)
            num_l = np.where(np.isfinite(L) & np.isfinite(resmax), L - resmax - err, -np.inf)
            q_u, q_l = num_u / a, num_l / a
        pos = a > 0
        cand_hi = np.where(pos, _up(q_u), _up(q_l))        # a > 0: from U; a < 0: from L
        cand_lo = np.where(pos, _down(q_l), _down(q_u))
        cand_hi = np.where(np.isnan(cand_hi), np.inf, cand_hi)
        cand_lo = np.where(np.isnan(cand_lo), -np.inf, cand_lo)
        sel = need[cj]
        new_hi = np.full(n, np.inf)
        new_lo = np.full(n, -np.inf)
        np.minimum.at(new_hi, cj[sel], cand_hi[sel])
        np.maximum.at(new_lo, cj[sel], cand_lo[sel])
        fill_hi = ~np.isfinite(hi) & np.isfinite(new_hi)
        fill_lo = ~np.isfinite(lo) & np.isfinite(new_lo)
        if not (fill_hi.any() or fill_lo.any()):
            break
        hi[fill_hi] = new_hi[fill_hi]
        lo[fill_lo] = new_lo[fill_lo]
    return lo, hi


#: at most this many nonzeros are summed in exact rational arithmetic by :func:`_exact_signs`
MAX_EXACT_TERMS = 200_000


def _exact_signs(view: LPView, c, y, rl, rh, lo, hi) -> None:
    """Where a column has an infinite bound and its reduced-cost enclosure ``[rl, rh]`` straddles
    0 (typically ``r = 0`` up to rounding, e.g. a column a Farkas ray does not use), compute
    ``r_j = c_j - sum_i A_ij y_i`` exactly in rational arithmetic and shrink the enclosure to its
    sign (0 exactly, or the half-line it lies in). In place; skipped beyond
    :data:`MAX_EXACT_TERMS` (the enclosure stays, i.e. no proof through those columns)."""
    from fractions import Fraction

    amb = np.flatnonzero((~np.isfinite(lo) | ~np.isfinite(hi)) & (rl < 0) & (rh > 0))
    if amb.size == 0:
        return
    AT = view.AT
    starts, ends = AT.indptr[amb], AT.indptr[amb + 1]
    if int(np.sum(ends - starts)) > MAX_EXACT_TERMS:
        return
    for j, a, b in zip(amb, starts, ends):
        exact = Fraction(float(c[j]))
        for i, v in zip(AT.indices[a:b], AT.data[a:b]):
            if y[i] != 0.0:
                exact -= Fraction(float(v)) * Fraction(float(y[i]))
        if exact == 0:
            rl[j] = rh[j] = 0.0
        elif exact > 0:
            rl[j] = 0.0
        else:
            rh[j] = 0.0


def _ns_lower(view: LPView, c, rlo, rhi, lo, hi, y, offset: float, cut: Optional[float]) -> float:
    """Neumaier–Shcherbina lower bound on ``min c x + offset`` s.t. ``rlo <= A x <= rhi``,
    ``lo <= x <= hi`` from any row multipliers ``y`` (see :func:`safe_lp_bound`)."""
    y = np.array(y, dtype=np.float64, copy=True)
    y[~np.isfinite(y)] = 0.0
    # a multiplier on an infinite side would need that infinite bound: drop it (always valid)
    y[(y > 0) & ~np.isfinite(rlo)] = 0.0
    y[(y < 0) & ~np.isfinite(rhi)] = 0.0
    lo, hi = _implied_bounds(view, rlo, rhi, lo, hi, c, cut)
    # r = c - A^T y, with |r_true - r| <= e  (dot products of col_nnz + 1 terms)
    r = c - view.AT @ y
    e = _gamma(view.col_nnz + 4) * (np.abs(c) + view.absAT @ np.abs(y))
    # e == 0 only when c_j = 0 and every A_ij y_i = 0: then r_j = 0 exactly (no rounding to widen,
    # and widening it would multiply an infinite column bound by a nonzero)
    exact = e == 0.0
    rl = np.where(exact, r, _down(r - e))
    rh = np.where(exact, r, _up(r + e))
    _exact_signs(view, c, y, rl, rh, lo, hi)
    with np.errstate(invalid="ignore", over="ignore"):
        corners = np.stack([rl * lo, rl * hi, rh * lo, rh * hi])
        corners = np.where(np.isnan(corners), 0.0, corners)        # 0 * inf: the term is 0
        col_terms = corners.min(axis=0)
        row_terms = np.where(y > 0, y * rlo, np.where(y < 0, y * rhi, 0.0))
    terms = np.concatenate([row_terms, col_terms, [float(offset)]])
    if np.any(np.isnan(terms)) or np.any(np.isneginf(terms)):
        L = -np.inf
    elif np.any(np.isposinf(terms)):   # only from an empty column box: no feasible point
        L = np.inf
    else:
        total = math.fsum(terms.tolist())
        # each product is rounded (<= u |p|), fsum rounds once (<= u |total|); doubled for slack
        err = 2.0 * U64 * (math.fsum(np.abs(terms).tolist()) + abs(total))
        L = float(_down(_down(total - err)))
    if cut is not None and np.isfinite(cut):
        # points with c x > cut are >= cut + offset anyway; the rest were bounded above
        L = min(L, float(_down(_down(cut + offset))))
    return L


def safe_lp_bound(program, row_dual, objective_hint: Optional[float] = None,
                  view: Optional[LPView] = None) -> float:
    """A rigorous bound on the optimum of ``program``'s LP (integrality ignored) from row duals.

    Neumaier & Shcherbina (Math. Program. 99, 2004): for ``min c x`` s.t. ``L_r <= A x <= U_r``,
    ``l <= x <= u`` and ANY multipliers ``y``, ``c x = y (A x) + r x`` with ``r = c - A^T y``, so
    every feasible ``x`` has ``c x >= sum_i (y_i >= 0 ? y_i L_r_i : y_i U_r_i) +
    sum_j min(r_j l_j, r_j u_j)``. Optimal duals make this the optimum; wrong signs, dual
    infeasibility within the solver's tolerance or a stop before optimality only make it weaker,
    never wrong. Details:

    * ``row_dual`` is in the convention ``c - A^T y = reduced costs`` in the program's own sense
      (HiGHS' ``row_dual``; for a maximisation this is the negated min-form dual).
    * A multiplier whose needed row side is infinite is set to 0 (always valid).
    * ``r`` is evaluated in float64 and enclosed in ``[r - e, r + e]`` with the dot-product error
      bound ``e = γ_{k+4} (|c| + |A|^T |y|)``; each column contributes the minimum of ``r x`` over
      that interval and ``[l, u]``. A column with an infinite bound gets a finite one implied by
      its rows, and by the objective cut-off ``c x <= v`` (``v`` = ``objective_hint`` plus
      ``max(1, |hint|)``; the result is then ``min(bound, v)``, valid because points with
      ``c x > v`` exceed ``v`` anyway); if none is implied and ``r`` is not exactly 0 there, the
      bound is ``-inf`` (no proof).
    * The products are rounded once each and summed with ``math.fsum``; the result is lowered by
      ``2u (sum |terms| + |sum|)`` and two ulps (``u = 2^-53``).

    The program's own data (``program.matrix()``, bounds) are used, not the solver's copy, so
    coefficients a solver drops or bounds it treats as infinite cannot make the bound wrong.
    Returns, in the program's sense, a lower bound (min) or an upper bound (max) including the
    offset; ``-inf``/``+inf`` when no bound follows.
    """
    if view is None or not view.matches(program):
        view = LPView(program)
    s = -1.0 if program.sense == "max" else 1.0
    none = -s * np.inf
    y = np.asarray(row_dual, dtype=np.float64).reshape(-1)
    if y.shape[0] != program.n_rows:
        return none
    c = s * np.asarray(program.objective, dtype=np.float64)
    off = s * float(program.offset)
    cut = None
    if objective_hint is not None and np.isfinite(objective_hint):
        h = s * float(objective_hint) - off
        cut = h + max(1.0, abs(h))
    L = _ns_lower(view, c, program.row_lo, program.row_hi, program.col_lo, program.col_hi,
                  s * y, off, cut)
    return s * L


def farkas_certified(program, ray, view: Optional[LPView] = None) -> bool:
    """True iff the row multipliers ``ray`` (either sign) prove ``program``'s LP (integrality
    ignored) infeasible: the Neumaier–Shcherbina lower bound of ``min 0`` is > 0, i.e. every point
    of the column box violates ``ray · (A x)`` against the row bounds."""
    if view is None or not view.matches(program):
        view = LPView(program)
    y = np.asarray(ray, dtype=np.float64).reshape(-1)
    if y.shape[0] != program.n_rows or not np.all(np.isfinite(y)):
        return False
    zero = np.zeros(program.n_vars)
    return any(_ns_lower(view, zero, program.row_lo, program.row_hi, program.col_lo, program.col_hi,
                         sign * y, 0.0, None) > 0 for sign in (1.0, -1.0))


def scaled_margin(program, bound: float, tol: float) -> float:
    """Margin for a proof that rests on a solver's (MILP) dual bound: ``tol * max(1, |bound|,
    sum_j |c_j| max(|l_j|, |u_j|))`` over objective columns with finite bounds.

    NOT rigorous. A MILP dual bound comes from node LPs solved within the solver's primal/dual
    feasibility tolerances (plus presolve and cuts in floating point) and no certificate is
    available for the whole tree, so this margin only covers errors of the order of ``tol``
    relative to the magnitudes of the objective and its terms (the typical case), not a worst case.
    LP bounds do not need it (they use :func:`safe_lp_bound`)."""
    return _margin(bound, tol, objective_scale(program))


def objective_scale(program) -> float:
    """``sum_j |c_j| max(|l_j|, |u_j|)`` over objective columns with finite bounds."""
    c = np.asarray(program.objective, dtype=np.float64)
    nz = np.flatnonzero(c)
    if not nz.size:
        return 0.0
    m = np.maximum(np.abs(program.col_lo[nz]), np.abs(program.col_hi[nz]))
    fin = np.isfinite(m)
    return float(np.sum(np.abs(c[nz][fin]) * m[fin]))


def _margin(bound: float, tol: float, scale: float) -> float:
    mag = abs(bound) if np.isfinite(bound) else 0.0
    return float(tol) * max(1.0, mag, scale)


def relax_bound(program, bound: float, margin: float) -> float:
    """``bound`` moved by ``margin`` in the safe direction (down for min, up for max)."""
    return bound + margin if program.sense == "max" else bound - margin


class SolverError(RuntimeError):
    """The backend could not be used (not installed, rejected the model)."""


class Backend(Protocol):
    """What :mod:`.registry` and the verifier expect of a backend class: constructed as
    ``cls(program, **options)``; ``sub_option`` names the constructor option that the part after
    ``':'`` of a backend name fills (None: no sub-solver); ``unavailable_reason(sub)`` says why it
    cannot be used (None if it can)."""

    name: str
    sub_option: Optional[str]

    @staticmethod
    def available() -> bool: ...

    @staticmethod
    def unavailable_reason(sub: str = "") -> Optional[str]: ...

    def solve(self, time_limit: Optional[float] = None, *, target: Optional[float] = None,
              cutoff: Optional[float] = None, mip_gap: float = 1e-6,
              verbose: bool = False) -> Solution:
        """Sync the program, then solve. "Better" means lower for ``sense='min'``, higher for 'max'.
        ``target``: stop as soon as a feasible point strictly better than ``target`` is known.
        ``cutoff``: stop as soon as the proven bound shows no point better than ``cutoff`` exists.
        An early stop is reported as ``INTERRUPTED`` (with the point / bound), never ``OPTIMAL``."""
        ...
