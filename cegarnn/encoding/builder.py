"""Encode networks into a :class:`~cegarnn.encoding.program.Program` (sparse rows, built in bulk).

:func:`encode_network` adds one network to an existing program, so several copies of a network,
or two networks (sharing input variables through ``input_vars``), can live in one program.
Variables exist for every value ``v[i]`` of ``network.forward_all`` (``v[0]`` = input), with the
column bounds of the given :class:`~cegarnn.bounds.box.LayerBounds` (one box).

* ``Affine``: equality rows ``W v[i] - v[i+1] = -b`` (CSR/dense weights turned into COO in bulk).
* ``ReLU`` (``relu='exact'``): stable-active neurons ``y = x``, stable-inactive ``y`` fixed to 0,
  unstable ones big-M with one binary ``d``: ``y >= x, y >= 0, y <= x - l (1 - d), y <= u d``.
  ``relu='triangle'``: the LP relaxation ``y >= x, y >= 0, y <= u (x - l) / (u - l)``.
* ``Sigmoid``/``Tanh``: one segment per neuron by default, the four envelope rows of
  :func:`~cegarnn.abstraction.sigmoid.envelope` on ``[l, u]`` (pure LP), ``y`` bounded by
  ``[f(l), f(u)]``. A neuron with several segments ``t_0 < ... < t_K`` is a disjunction in
  convex-hull (perspective) form: binaries ``d_k`` (``sum d_k = 1``), copies ``x_k, y_k`` with
  ``x = sum x_k``, ``y = sum y_k``, ``t_k d_k <= x_k <= t_{k+1} d_k``,
  ``f(t_k) d_k <= y_k <= f(t_{k+1}) d_k`` (widened by ``eps``) and every envelope line in
  perspective form ``y_k <= slope x_k + offset d_k`` (resp. ``>=``).

Refinement is incremental (:meth:`NetworkEncoding.refine`, :meth:`NetworkEncoding.refine_many`):
the neuron's current rows are deactivated, its old auxiliary columns fixed to 0, and a fresh
disjunction over the new breakpoints is appended — a live HiGHS model syncs without a rebuild.
Each new segment keeps, besides its own four envelope lines (exact at its ends), those lines of
the old segment containing it that its own lines do not dominate, so refinement is monotone: the
abstraction after a refinement is contained in the one before (the abstract optimum never gets
worse) and is exact at every breakpoint (a refined point cannot come back).

Specifications: :func:`add_linear_objective` and :func:`add_output_constraints`, or add rows
directly with ``program.add_dense_rows(C, encoding.value_vars[-1], lo, hi)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import numpy as np
import scipy.sparse as sp

from ..abstraction.sigmoid import EPS, SShape, SegmentedNeuron, envelope, get_activation
from ..bounds.box import LayerBounds
from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh
from .program import INF, Program


class EncodingError(ValueError):
    """The network, bounds or options cannot be encoded (batched or non-finite bounds, sizes)."""


#: Largest ``|bound|`` of an unstable ReLU's pre-activation that the exact (big-M) encoding uses
#: as a coefficient. HiGHS treats ``|v| >= 1e20`` as infinite (option ``infinite_bound``) and
#: rejects matrix entries above ``1e15`` (``large_matrix_value``), but a big-M row is meaningless
#: long before: with HiGHS' primal feasibility tolerance 1e-7 and integrality tolerance 1e-6, a
#: constant ``M = 1e9`` lets an "inactive" neuron reach ``1e3`` and spans 9+ orders of magnitude in
#: one row (HiGHS' scaling cannot repair that). Beyond this limit :class:`BigMError` is raised.
MAX_BIG_M = 1e9


class BigMError(EncodingError):
    """An unstable ReLU's pre-activation bound is infinite or beyond the big-M limit
    (:data:`MAX_BIG_M`): encoding it would crash the solver or let it solve a numerically
    meaningless model. Attributes: ``layer`` (index in ``network.layers`` of the ReLU), ``neuron``,
    ``side`` ('lower' or 'upper'), ``value`` (the bound), ``limit``. A verifier should answer
    ``unknown`` with this message (tighter bounds, e.g. CROWN or a smaller box, may help)."""

    def __init__(self, layer: int, neuron: int, side: str, value: float, limit: float, name: str = ""):
        self.layer, self.neuron, self.side = int(layer), int(neuron), side
        self.value, self.limit = float(value), float(limit)
        what = "is infinite" if not np.isfinite(value) else f"exceeds the big-M limit {limit:g}"
        where = f"{name}: " if name else ""
        super().__init__(f"{where}ReLU layer {self.layer}, neuron {self.neuron}: pre-activation {side} bound "
                         f"{self.value!r} {what}; a big-M encoding would be numerically meaningless "
                         "(tighten the bounds, e.g. CROWN bounds or a smaller input box)")

    def __reduce__(self):
        return (type(self), (self.layer, self.neuron, self.side, self.value, self.limit))


def _check_big_m(l: np.ndarray, u: np.ndarray, idx: np.ndarray, layer: int, limit: float, name: str) -> None:
    """Raise :class:`BigMError` for the first neuron of ``idx`` whose bound is infinite or
    (``limit`` finite) larger in magnitude than ``limit``."""
    for side, v in (("lower", l), ("upper", u)):
        bad = ~np.isfinite(v[idx]) | (np.abs(v[idx]) > limit)
        if np.any(bad):
            k = int(np.argmax(bad))
            raise BigMError(layer, int(idx[k]), side, float(v[idx[k]]), limit, name)


# --------------------------------------------------------------------------- state
@dataclass(eq=False)
class Lines:
    """Envelope lines of one neuron: line ``r`` holds on segment ``seg[r]`` and reads
    ``y <= k[r] x + c[r]`` if ``upper[r]`` else ``y >= k[r] x + c[r]``."""

    seg: np.ndarray
    upper: np.ndarray
    k: np.ndarray
    c: np.ndarray

    def __len__(self) -> int:
        return self.seg.shape[0]


@dataclass(eq=False)
class _SShapeLayer:
    """Per-neuron state of one sigmoid/tanh layer (``layer`` = index of the activation layer)."""

    layer: int
    act: SShape
    lower: np.ndarray
    upper: np.ndarray
    neurons: list            # SegmentedNeuron per neuron (breakpoints wanted)
    encoded: list            # breakpoints as currently encoded, per neuron
    lines: list              # Lines per neuron (as currently encoded)
    rows: list               # active row ids per neuron
    aux: list                # auxiliary columns (x_k, y_k, d_k) per neuron (empty: one segment)
    bins: list               # active segment binaries per neuron


@dataclass(eq=False)
class NetworkEncoding:
    """The variables and per-neuron state of one encoded network (see the module docstring).

    ``value_vars[i]``: variable indices of value ``v[i]``. ``relu_unstable[i]`` / ``relu_binaries[i]``:
    the unstable neurons of ReLU layer ``i`` and their binaries (exact mode). ``sshape[i]``: the
    state of sigmoid/tanh layer ``i``.
    """

    program: Program
    network: Network
    bounds: LayerBounds
    name: str
    relu: str
    eps: float
    tol: float
    value_vars: list = field(default_factory=list)
    relu_unstable: dict = field(default_factory=dict)
    relu_binaries: dict = field(default_factory=dict)
    sshape: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ facts
    @property
    def input_vars(self) -> np.ndarray:
        return self.value_vars[0]

    @property
    def output_vars(self) -> np.ndarray:
        return self.value_vars[-1]

    @property
    def binaries(self) -> np.ndarray:
        """Column indices of the binaries in use (ReLU and active sigmoid segments)."""
        parts = [np.asarray(b, dtype=np.int64) for b in self.relu_binaries.values()]
        for st in self.sshape.values():
            parts.extend(np.asarray(b, dtype=np.int64) for b in st.bins)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @property
    def n_binaries(self) -> int:
        n = sum(len(b) for b in self.relu_binaries.values())
        for st in self.sshape.values():
            n += sum(len(b) for b in st.bins)
        return int(n)

    def _state(self, layer: int) -> _SShapeLayer:
        if layer not in self.sshape:
            raise EncodingError(f"layer {layer} is not a sigmoid/tanh layer of {self.name!r} "
                                f"(those are {sorted(self.sshape)})")
        return self.sshape[layer]

    def segments_of(self, layer: int, neuron: int) -> np.ndarray:
        """Breakpoints ``t_0 < ... < t_K`` of a sigmoid/tanh neuron (layer = activation layer index)."""
        return self._state(layer).neurons[int(neuron)].breakpoints

    def activation_errors(self, values: Sequence[np.ndarray]) -> dict:
        """For decoded ``values``: ``{layer: y - f(x)}`` per sigmoid/tanh layer (abstraction error)."""
        return {i: np.asarray(values[i + 1]) - st.act.f(values[i]) for i, st in self.sshape.items()}

    # ------------------------------------------------------------------ refinement
    def refine(self, layer_index: int, neuron_index: int, breakpoints) -> bool:
        """Add breakpoint(s) to one sigmoid/tanh neuron; returns whether its encoding changed."""
        t = np.atleast_1d(np.asarray(breakpoints, dtype=np.float64)).reshape(-1)
        return self.refine_many([(layer_index, neuron_index, t)]) > 0

    def refine_many(self, items: Iterable) -> int:
        """Add breakpoints to many neurons at once: ``items`` of ``(layer, neuron, t)`` with ``t`` a
        number or an array. Neurons whose breakpoint set changed are re-encoded in one block per
        layer (old rows deactivated, old segment binaries and copies fixed to 0). Returns the number
        of re-encoded neurons."""
        changed: dict = {}
        for layer, neuron, t in items:
            st = self._state(int(layer))
            j = int(neuron)
            if not 0 <= j < len(st.neurons):
                raise EncodingError(f"neuron {j} out of range for layer {layer} ({len(st.neurons)} neurons)")
            sn = st.neurons[j]
            for tt in np.atleast_1d(np.asarray(t, dtype=np.float64)).reshape(-1):
                if sn.add_breakpoint(tt):
                    changed.setdefault(int(layer), set()).add(j)
        prog = self.program
        total = 0
        for layer, js in changed.items():
            st = self.sshape[layer]
            js = np.array(sorted(js), dtype=np.int64)
            old_rows = np.concatenate([st.rows[j] for j in js])
            old_aux = np.concatenate([st.aux[j] for j in js])
            if old_rows.size:
                prog.deactivate_rows(old_rows)
            if old_aux.size:
                prog.set_col_bounds(old_aux, 0.0, 0.0)
            xv = self.value_vars[layer][js]
            yv = self.value_vars[layer + 1][js]
            bps = [st.neurons[j].breakpoints for j in js]
            lines = _segment_lines(st.act, bps, [(st.encoded[j], st.lines[j]) for j in js], self.eps)
            rows, aux, bins = _encode_disjunction(prog, st.act, xv, yv, bps, lines, self.eps,
                                                  f"{self.name}.L{layer}.refine")
            for p, j in enumerate(js):
                st.rows[j], st.aux[j], st.bins[j] = rows[p], aux[p], bins[p]
                st.encoded[j], st.lines[j] = bps[p], lines[p]
            total += len(js)
        return total


# --------------------------------------------------------------------------- helpers
def _single_box(bounds: LayerBounds, network: Network) -> tuple[list, list]:
    if bounds.batched:
        raise EncodingError("encode_network needs bounds of one box, got a batch; use bounds.pick(b)")
    if len(bounds.lower) != len(network.layers) + 1 or len(bounds.upper) != len(network.layers) + 1:
        raise EncodingError(f"bounds have {len(bounds.lower)} values but the network has "
                            f"{len(network.layers) + 1} (layers + input)")
    lo, hi = [], []
    for i, n in enumerate(network.sizes):
        l = np.asarray(bounds.lower[i], dtype=np.float64).reshape(-1)
        u = np.asarray(bounds.upper[i], dtype=np.float64).reshape(-1)
        if l.shape[0] != n or u.shape[0] != n:
            raise EncodingError(f"bounds of value {i} have {l.shape[0]} entries, the network has {n}")
        if np.any(np.isnan(l)) or np.any(np.isnan(u)):
            raise EncodingError(f"bounds of value {i} contain NaN")
        if np.any(l > u):
            j = int(np.argmax(l > u))
            raise EncodingError(f"bounds of value {i} are empty at neuron {j}: {l[j]} > {u[j]}")
        lo.append(l)
        hi.append(u)
    return lo, hi


def _affine_rows(program: Program, layer: Affine, xin: np.ndarray, xout: np.ndarray, name: str) -> np.ndarray:
    """Rows ``W x_in - x_out = -b``."""
    m, n = layer.W.shape
    if sp.issparse(layer.W):
        coo = layer.W.tocoo()
        r, c, v = coo.row.astype(np.int64), xin[coo.col], coo.data
    else:
        W = layer.W
        r = np.repeat(np.arange(m, dtype=np.int64), n)
        c = np.tile(xin, m)
        v = W.reshape(-1)
    rows = np.concatenate([r, np.arange(m, dtype=np.int64)])
    cols = np.concatenate([c, xout])
    vals = np.concatenate([v, -np.ones(m)])
    return program.add_rows(rows, cols, vals, -layer.b, -layer.b, name=name)


def _relu_rows(program: Program, x: np.ndarray, y: np.ndarray, l: np.ndarray, u: np.ndarray,
               mode: str, name: str, layer: int = -1,
               max_big_m: float = MAX_BIG_M) -> tuple[np.ndarray, np.ndarray]:
    """ReLU rows (y's column bounds already set). Returns (unstable neuron indices, binaries).
    Unstable neurons need finite bounds (:class:`BigMError` otherwise), within ``max_big_m`` in
    the exact (big-M) mode."""
    active = l >= 0
    unst = (l < 0) & (u > 0)
    ia = np.flatnonzero(active)
    iu = np.flatnonzero(unst)
    if ia.size:
        k = ia.size
        program.add_rows(np.repeat(np.arange(k), 2), np.stack([y[ia], x[ia]], 1).reshape(-1),
                         np.tile([1.0, -1.0], k), np.zeros(k), np.zeros(k), name=f"{name}.active")
    bins = np.zeros(0, dtype=np.int64)
    if iu.size:
        k = iu.size
        lu, uu = l[iu], u[iu]
        _check_big_m(l, u, iu, layer, max_big_m if mode == "exact" else np.inf, name)
        ar = np.arange(k)
        # y - x >= 0
        r0, c0, v0 = np.repeat(ar, 2), np.stack([y[iu], x[iu]], 1).reshape(-1), np.tile([1.0, -1.0], k)
        if mode == "exact":
            bins = program.add_binaries(k, name=f"{name}.d")
            # y - x - l d <= -l ;  y - u d <= 0
            r1 = np.repeat(ar, 3) + k
            c1 = np.stack([y[iu], x[iu], bins], 1).reshape(-1)
            v1 = np.stack([np.ones(k), -np.ones(k), -lu], 1).reshape(-1)
            r2 = np.repeat(ar, 2) + 2 * k
            c2 = np.stack([y[iu], bins], 1).reshape(-1)
            v2 = np.stack([np.ones(k), -uu], 1).reshape(-1)
            program.add_rows(np.concatenate([r0, r1, r2]), np.concatenate([c0, c1, c2]),
                             np.concatenate([v0, v1, v2]),
                             np.concatenate([np.zeros(k), np.full(2 * k, -INF)]),
                             np.concatenate([np.full(k, INF), -lu, np.zeros(k)]), name=f"{name}.bigM")
        elif mode == "triangle":
            s = uu / (uu - lu)
            r1 = np.repeat(ar, 2) + k
            c1 = np.stack([y[iu], x[iu]], 1).reshape(-1)
            v1 = np.stack([np.ones(k), -s], 1).reshape(-1)
            program.add_rows(np.concatenate([r0, r1]), np.concatenate([c0, c1]), np.concatenate([v0, v1]),
                             np.concatenate([np.zeros(k), np.full(k, -INF)]),
                             np.concatenate([np.full(k, INF), -s * lu]), name=f"{name}.triangle")
        else:
            raise EncodingError(f"relu must be 'exact' or 'triangle', got {mode!r}")
    return iu, bins


def _envelope_rows(program: Program, x: np.ndarray, y: np.ndarray, env, name: str) -> np.ndarray:
    """One segment per neuron: 4 rows each (2 upper, 2 lower); returns row ids (n, 4)."""
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 4), dtype=np.int64)
    # row 4p + j: y - k_j x <= c_j (j = 0, 1);   row 4p + 2 + j: y - m_j x >= d_j
    rr = np.repeat(np.arange(4 * n), 2)
    cc = np.tile(np.stack([y, x], 1), (1, 4)).reshape(-1)
    slopes = np.concatenate([env.upper_slope, env.lower_slope], axis=1)        # (n, 4)
    vv = np.stack([np.ones((n, 4)), -slopes], axis=2).reshape(-1)
    lo = np.concatenate([np.full((n, 2), -INF), env.lower_offset], axis=1).reshape(-1)
    hi = np.concatenate([env.upper_offset, np.full((n, 2), INF)], axis=1).reshape(-1)
    return program.add_rows(rr, cc, vv, lo, hi, name=name).reshape(n, 4)


_OWN_UPPER = np.array([True, True, False, False])


def _own_lines(env, first: int, last: int) -> Lines:
    """The 4 envelope lines of segments ``first..last-1`` of ``env`` (local segment numbers)."""
    K = last - first
    k = np.concatenate([env.upper_slope[first:last], env.lower_slope[first:last]], axis=1).reshape(-1)
    c = np.concatenate([env.upper_offset[first:last], env.lower_offset[first:last]], axis=1).reshape(-1)
    return Lines(np.repeat(np.arange(K), 4), np.tile(_OWN_UPPER, K), k, c)


def _segment_lines(act: SShape, breakpoints: list, parents: Optional[list], eps: float) -> list:
    """Lines of every segment of several neurons: each segment's own 4 envelope lines, plus (when
    refining) the lines of the old segment containing it that are not dominated by the own lines
    on the new segment. Domination is checked exactly: ``line - min(own upper)`` is linear between
    the segment ends and the kink of the own lines, so those 3 points decide. Keeping the useful
    inherited lines makes refinement monotone: every new segment's polytope lies inside the old
    one's, so the abstraction never gets looser."""
    counts = np.array([len(t) - 1 for t in breakpoints], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    t0 = np.concatenate([t[:-1] for t in breakpoints])
    t1 = np.concatenate([t[1:] for t in breakpoints])
    env = envelope(act, t0, t1, eps)
    own = [_own_lines(env, starts[p], starts[p + 1]) for p in range(len(breakpoints))]
    if parents is None:
        return own
    # candidates: old lines of the parent segment of every new segment
    cs, cu, ck, cc, cowner = [], [], [], [], []
    for p, ((t_old, lines_old), t_new) in enumerate(zip(parents, breakpoints)):
        K_old = len(t_old) - 1
        par = np.clip(np.searchsorted(t_old, t_new[:-1], side="right") - 1, 0, K_old - 1)
        sidx, ridx = np.nonzero(par[:, None] == lines_old.seg[None, :])
        cs.append(sidx + starts[p])
        cu.append(lines_old.upper[ridx])
        ck.append(lines_old.k[ridx])
        cc.append(lines_old.c[ridx])
        cowner.append(np.full(sidx.shape[0], p))
    cs, cu, ck, cc, cowner = (np.concatenate(v) for v in (cs, cu, ck, cc, cowner))
    if cs.size:
        a, b = t0[cs], t1[cs]
        K = np.where(cu[:, None], env.upper_slope[cs], env.lower_slope[cs])      # (C, 2)
        Cc = np.where(cu[:, None], env.upper_offset[cs], env.lower_offset[cs])
        dk = K[:, 0] - K[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            kink = np.where(dk != 0, (Cc[:, 1] - Cc[:, 0]) / np.where(dk != 0, dk, 1.0), a)
        kink = np.clip(np.nan_to_num(kink, nan=a), a, b)
        P = np.stack([a, b, kink], axis=1)                                        # (C, 3)
        own_at = K[:, None, :] * P[:, :, None] + Cc[:, None, :]                   # (C, 3, 2)
        cand_at = ck[:, None] * P + cc[:, None]
        margin = 1e-10
        useful = np.where(cu, np.any(cand_at < own_at.min(axis=2) - margin, axis=1),
                          np.any(cand_at > own_at.max(axis=2) + margin, axis=1))
        keep = np.flatnonzero(useful)
        for p in np.unique(cowner[keep]):
            sel = keep[cowner[keep] == p]
            o = own[p]
            own[p] = Lines(np.concatenate([o.seg, cs[sel] - starts[p]]), np.concatenate([o.upper, cu[sel]]),
                           np.concatenate([o.k, ck[sel]]), np.concatenate([o.c, cc[sel]]))
    return own


def _encode_disjunction(program: Program, act: SShape, xv: np.ndarray, yv: np.ndarray,
                        breakpoints: list, lines: list, eps: float, name: str) -> tuple[list, list, list]:
    """Convex-hull disjunction over the segments of several neurons (see module docstring).

    Returns per-neuron lists (rows, auxiliary columns, binaries)."""
    n = len(breakpoints)
    counts = np.array([len(t) - 1 for t in breakpoints], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])
    owner = np.repeat(np.arange(n), counts)
    t0 = np.concatenate([t[:-1] for t in breakpoints])
    t1 = np.concatenate([t[1:] for t in breakpoints])
    S = t0.shape[0]
    f0, f1 = act.f(t0) - eps, act.f(t1) + eps
    d = program.add_binaries(S, name=f"{name}.d")
    xk = program.add_vars(S, np.minimum(t0, 0.0), np.maximum(t1, 0.0), name=f"{name}.x")
    yk = program.add_vars(S, np.minimum(f0, 0.0), np.maximum(f1, 0.0), name=f"{name}.y")
    # block A: 3 rows per neuron
    #   3p:   sum_k d_k = 1 ;  3p+1: x - sum x_k = 0 ;  3p+2: y - sum y_k = 0
    rA = np.concatenate([3 * owner, 3 * np.arange(n) + 1, 3 * owner + 1, 3 * np.arange(n) + 2, 3 * owner + 2])
    cA = np.concatenate([d, xv, xk, yv, yk])
    vA = np.concatenate([np.ones(S), np.ones(n), -np.ones(S), np.ones(n), -np.ones(S)])
    loA = np.tile([1.0, 0.0, 0.0], n)
    # block B: 4 rows per segment s (after block A):
    #   4s: x_k - t0 d >= 0;  4s+1: x_k - t1 d <= 0;  4s+2: y_k - f0 d >= 0;  4s+3: y_k - f1 d <= 0
    base = 3 * n + 4 * np.arange(S)
    rB = [base, base, base + 1, base + 1, base + 2, base + 2, base + 3, base + 3]
    cB = [xk, d, xk, d, yk, d, yk, d]
    vB = [np.ones(S), -t0, np.ones(S), -t1, np.ones(S), -f0, np.ones(S), -f1]
    loB = np.tile([0.0, -INF, 0.0, -INF], S)
    hiB = np.tile([INF, 0.0, INF, 0.0], S)
    # block C: one row per envelope line in perspective form: y_k - K x_k - C d  (<= 0 upper, >= 0 lower)
    nl = np.array([len(ln) for ln in lines], dtype=np.int64)
    lstart = np.concatenate([[0], np.cumsum(nl)])
    sg = np.concatenate([ln.seg + starts[p] for p, ln in enumerate(lines)])
    up = np.concatenate([ln.upper for ln in lines])
    K = np.concatenate([ln.k for ln in lines])
    C = np.concatenate([ln.c for ln in lines])
    L = sg.shape[0]
    rC = np.repeat(3 * n + 4 * S + np.arange(L), 3)
    cC = np.stack([yk[sg], xk[sg], d[sg]], 1).reshape(-1)
    vC = np.stack([np.ones(L), -K, -C], 1).reshape(-1)
    loC = np.where(up, -INF, 0.0)
    hiC = np.where(up, 0.0, INF)
    rows = program.add_rows(np.concatenate([rA] + rB + [rC]), np.concatenate([cA] + cB + [cC]),
                            np.concatenate([vA] + vB + [vC]),
                            np.concatenate([loA, loB, loC]), np.concatenate([loA, hiB, hiC]), name=name)
    rowsA = rows[: 3 * n].reshape(n, 3)
    rowsB = rows[3 * n: 3 * n + 4 * S]
    rowsC = rows[3 * n + 4 * S:]
    out_rows, out_aux, out_bins = [], [], []
    for p in range(n):
        s0, s1 = starts[p], starts[p + 1]
        out_rows.append(np.concatenate([rowsA[p], rowsB[4 * s0: 4 * s1], rowsC[lstart[p]: lstart[p + 1]]]))
        out_aux.append(np.concatenate([xk[s0:s1], yk[s0:s1], d[s0:s1]]))
        out_bins.append(d[s0:s1])
    return out_rows, out_aux, out_bins


def _segments_for_layer(segments, layer: int, n: int, l: np.ndarray, u: np.ndarray, tol: float) -> list:
    """SegmentedNeuron per neuron from the ``segments`` option (see encode_network)."""
    spec = None
    per_neuron: dict = {}
    if segments is None:
        pass
    elif isinstance(segments, (int, np.integer)):
        spec = int(segments)
    elif isinstance(segments, dict):
        spec = segments.get(layer)
        for key, val in segments.items():
            if isinstance(key, tuple) and len(key) == 2 and int(key[0]) == layer:
                per_neuron[int(key[1])] = val
    else:
        raise EncodingError("segments must be None, an int, or a dict {layer: int | list} / {(layer, neuron): breakpoints}")
    out = []
    for j in range(n):
        val = per_neuron.get(j, None)
        if val is None:
            if isinstance(spec, (int, np.integer)):
                val = int(spec)
            elif spec is not None:
                if len(spec) != n:
                    raise EncodingError(f"segments for layer {layer}: {len(spec)} entries for {n} neurons")
                val = spec[j]
        if val is None:
            out.append(SegmentedNeuron(l[j], u[j], tol=tol))
        elif isinstance(val, (int, np.integer)):
            out.append(SegmentedNeuron.uniform(l[j], u[j], int(val), tol=tol))
        else:
            out.append(SegmentedNeuron(l[j], u[j], np.asarray(val, dtype=np.float64), tol=tol))
    return out


# --------------------------------------------------------------------------- main entry
def encode_network(program: Program, network: Network, bounds: LayerBounds, input_vars=None,
                   relu: str = "exact", segments=None, name: str = "net", eps: float = EPS,
                   tol: float = 1e-6, max_big_m: float = MAX_BIG_M) -> NetworkEncoding:
    """Add ``network`` to ``program`` (see the module docstring) and return its encoding.

    ``bounds``: sound bounds of every value for ONE box (``LayerBounds``, e.g. ``interval_bounds``
    or CROWN); they become column bounds and big-M constants. ``input_vars``: reuse existing input
    variables (their bounds are intersected with ``bounds.lower[0]/upper[0]``). ``relu``:
    ``'exact'`` (big-M, binaries only for unstable neurons) or ``'triangle'`` (LP). ``segments``
    for sigmoid/tanh layers: None (one segment per neuron), an int K (K uniform segments for every
    neuron), or a dict ``{layer: K | list of per-neuron breakpoint arrays}`` and/or
    ``{(layer, neuron): breakpoints}``; breakpoints outside ``(l, u)`` are ignored, the ends are
    always ``l`` and ``u``. ``eps``: outward shift of envelope lines; ``tol``: minimal distance
    between breakpoints. ``max_big_m``: an unstable ReLU whose pre-activation bound is infinite, or
    (``relu='exact'``) larger in magnitude than this (default :data:`MAX_BIG_M` = 1e9), raises
    :class:`BigMError` naming the layer, neuron and bound.
    """
    if relu not in ("exact", "triangle"):
        raise EncodingError(f"relu must be 'exact' or 'triangle', got {relu!r}")
    lo, hi = _single_box(bounds, network)
    if isinstance(segments, dict):
        ok = set(network.activation_indices((Sigmoid, Tanh)))
        for key in segments:
            li = key[0] if isinstance(key, tuple) else key
            if not isinstance(li, (int, np.integer)) or int(li) not in ok:
                raise EncodingError(f"segments key {key!r}: layer {li!r} is not a sigmoid/tanh layer "
                                    f"(those are {sorted(ok)})")
    enc = NetworkEncoding(program, network, LayerBounds(lo, hi, bounds.method), name, relu, eps, tol)
    n0 = network.n_inputs
    if input_vars is None:
        xv = program.add_vars(n0, lo[0], hi[0], name=f"{name}.v0")
    else:
        xv = np.asarray(input_vars, dtype=np.int64).reshape(-1)
        if xv.shape[0] != n0:
            raise EncodingError(f"input_vars has {xv.shape[0]} variables, the network has {n0} inputs")
        cl, ch = program.col_lo[xv], program.col_hi[xv]
        nl, nh = np.maximum(cl, lo[0]), np.minimum(ch, hi[0])
        if np.any(nl > nh):
            raise EncodingError("input_vars' bounds do not intersect the box of bounds.lower[0]/upper[0]")
        if np.any(nl != cl) or np.any(nh != ch):
            program.set_col_bounds(xv, nl, nh)
    enc.value_vars.append(xv)
    for i, layer in enumerate(network.layers):
        x = enc.value_vars[i]
        nm = f"{name}.L{i}"
        l, u = lo[i], hi[i]
        if isinstance(layer, Affine):
            y = program.add_vars(layer.out_size, lo[i + 1], hi[i + 1], name=f"{nm}.v")
            _affine_rows(program, layer, x, y, nm)
        elif isinstance(layer, ReLU):
            ylo = np.maximum(lo[i + 1], np.maximum(l, 0.0))
            yhi = np.minimum(hi[i + 1], np.maximum(u, 0.0))
            ylo = np.where(u <= 0, 0.0, np.minimum(ylo, yhi))
            yhi = np.where(u <= 0, 0.0, yhi)
            y = program.add_vars(x.shape[0], ylo, yhi, name=f"{nm}.v")
            iu, bins = _relu_rows(program, x, y, l, u, relu, nm, i, max_big_m)
            if relu == "exact":
                enc.relu_unstable[i], enc.relu_binaries[i] = iu, bins
        elif isinstance(layer, (Sigmoid, Tanh)):
            act = get_activation(layer)
            if not (np.all(np.isfinite(l)) and np.all(np.isfinite(u))):
                raise EncodingError(f"{nm}: sigmoid/tanh pre-activation bounds must be finite")
            ylo = np.maximum(lo[i + 1], act.f(l) - eps)
            yhi = np.minimum(hi[i + 1], act.f(u) + eps)
            ylo = np.minimum(ylo, yhi)
            y = program.add_vars(x.shape[0], ylo, yhi, name=f"{nm}.v")
            n = x.shape[0]
            neurons = _segments_for_layer(segments, i, n, l, u, tol)
            rows: list = [None] * n
            lines: list = [None] * n
            encoded = [sn.breakpoints for sn in neurons]
            empty = np.zeros(0, dtype=np.int64)
            aux: list = [empty] * n
            bins: list = [empty] * n
            multi = np.array([sn.n_segments > 1 for sn in neurons], dtype=bool)
            one = np.flatnonzero(~multi)
            if one.size:
                env = envelope(act, l[one], u[one], eps)
                r1 = _envelope_rows(program, x[one], y[one], env, f"{nm}.env")
                seg0 = np.zeros(4, dtype=np.int64)
                for p, j in enumerate(one):
                    rows[j] = r1[p]
                    lines[j] = Lines(seg0, _OWN_UPPER, np.concatenate([env.upper_slope[p], env.lower_slope[p]]),
                                     np.concatenate([env.upper_offset[p], env.lower_offset[p]]))
            many = np.flatnonzero(multi)
            if many.size:
                bps = [encoded[j] for j in many]
                lns = _segment_lines(act, bps, None, eps)
                rr, aa, bb = _encode_disjunction(program, act, x[many], y[many], bps, lns, eps, f"{nm}.seg")
                for p, j in enumerate(many):
                    rows[j], aux[j], bins[j], lines[j] = rr[p], aa[p], bb[p], lns[p]
            enc.sshape[i] = _SShapeLayer(i, act, l.copy(), u.copy(), neurons, encoded, lines, rows, aux, bins)
        else:  # pragma: no cover - Network rejects other layers
            raise EncodingError(f"layer {i}: unsupported {type(layer).__name__}")
        enc.value_vars.append(y)
    return enc


# --------------------------------------------------------------------------- decoding and specs
def decode(solution_x, encoding: NetworkEncoding) -> list:
    """Per-value arrays ``[v[0], v[1], ...]`` of an encoding from a solution vector."""
    x = np.asarray(solution_x, dtype=np.float64)
    return [x[vv] for vv in encoding.value_vars]


def add_linear_objective(program: Program, encoding: NetworkEncoding, value_index: int, coeffs,
                         sense: str = "min", offset: float = 0.0) -> None:
    """Set the objective to ``coeffs @ v[value_index] + offset`` (replaces any objective)."""
    vv = encoding.value_vars[value_index]
    coeffs = np.asarray(coeffs, dtype=np.float64).reshape(-1)
    if coeffs.shape[0] != vv.shape[0]:
        raise EncodingError(f"objective has {coeffs.shape[0]} coefficients, value {value_index} has {vv.shape[0]}")
    program.set_objective(vv, coeffs, sense, offset)


def add_output_constraints(program: Program, encoding: NetworkEncoding, C, lo=-INF, hi=INF,
                           value_index: int = -1, name: str = "spec") -> np.ndarray:
    """Rows ``lo <= C @ v[value_index] <= hi`` (e.g. margins ``y_t - y_j >= 0``); returns row ids."""
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    vv = encoding.value_vars[value_index]
    if C.shape[1] != vv.shape[0]:
        raise EncodingError(f"constraint matrix has {C.shape[1]} columns, value {value_index} has {vv.shape[0]}")
    m = C.shape[0]
    return program.add_dense_rows(C, vv, np.broadcast_to(np.asarray(lo, dtype=float), (m,)),
                                  np.broadcast_to(np.asarray(hi, dtype=float), (m,)), name=name)


# --------------------------------------------------------------------------- weights as variables
@dataclass(eq=False)
class WeightEncoding:
    """Variables of :func:`encode_weight_layer`.

    ``dW``: (out, in) column indices of the weight changes (-1 where a weight is frozen);
    ``db``: (out,) columns of the bias changes (-1 if frozen); ``layer_outputs``: (N, out) columns
    of the chosen layer's outputs per input; ``outputs``: (N, n_out) columns of the network outputs
    per input; ``hidden``: (N, in) the (constant) inputs of the chosen layer; ``encodings``: the
    encodings of the layers after it per input (None if the layer is the last one).
    """

    program: Program
    network: Network
    layer_index: int
    dW: np.ndarray
    db: np.ndarray
    layer_outputs: np.ndarray
    outputs: np.ndarray
    hidden: np.ndarray
    encodings: list

    def change_vars(self) -> np.ndarray:
        v = np.concatenate([self.dW.reshape(-1), self.db])
        return v[v >= 0]

    def add_change_objective(self, norm: str = "l1", sense_weight: float = 1.0) -> np.ndarray:
        """Minimise the size of the change: ``'l1'`` (sum |dW| + sum |db|, one auxiliary variable
        per free parameter) or ``'linf'`` (max |.|, one auxiliary variable). Returns the auxiliary
        columns; replaces the objective."""
        v = self.change_vars()
        prog = self.program
        k = v.shape[0]
        if norm == "l1":
            t = prog.add_vars(k, 0.0, INF, name="abs_change")
            tt = np.repeat(t, 2)
        elif norm == "linf":
            t = prog.add_vars(1, 0.0, INF, name="max_change")
            tt = np.full(2 * k, t[0])
        else:
            raise EncodingError(f"norm must be 'l1' or 'linf', got {norm!r}")
        # t - v >= 0 ; t + v >= 0
        r = np.repeat(np.arange(2 * k), 2)
        c = np.stack([tt, np.repeat(v, 2)], 1).reshape(-1)
        vals = np.stack([np.ones(2 * k), np.tile([-1.0, 1.0], k)], 1).reshape(-1)
        prog.add_rows(r, c, vals, np.zeros(2 * k), np.full(2 * k, INF), name=f"{norm}_change")
        prog.set_objective(t, np.full(t.shape[0], float(sense_weight)), "min")
        return t

    def decode(self, solution_x) -> tuple[np.ndarray, np.ndarray]:
        """``(dW, db)`` as dense arrays (0 where frozen)."""
        x = np.asarray(solution_x, dtype=np.float64)
        dW = np.where(self.dW >= 0, x[np.maximum(self.dW, 0)], 0.0)
        db = np.where(self.db >= 0, x[np.maximum(self.db, 0)], 0.0)
        return dW, db

    def apply(self, solution_x) -> Network:
        """The network with ``W + dW, b + db`` in the chosen layer."""
        dW, db = self.decode(solution_x)
        layer = self.network.layers[self.layer_index]
        W = layer.W
        W = (sp.csr_matrix(W.toarray() + dW) if sp.issparse(W) else W + dW)
        layers = list(self.network.layers)
        layers[self.layer_index] = Affine(W, layer.b + db)
        return Network(tuple(layers), self.network.input_shape, name=self.network.name)


def encode_weight_layer(program: Program, network: Network, layer_index: int, inputs, delta: float = 1.0,
                        delta_bias: Optional[float] = None, weight_mask=None, train_bias: bool = True,
                        relu: str = "exact", segments=None, name: str = "wt", eps: float = EPS) -> WeightEncoding:
    """Weights ``W`` and bias ``b`` of the Affine layer ``layer_index`` become decision variables
    ``W + dW``, ``b + db`` with ``|dW| <= delta``, ``|db| <= delta_bias`` (default ``delta``), for a
    finite set of ``inputs`` (N, n_in).

    Layers before the chosen one are evaluated exactly (float64 constants ``h_n``); the chosen
    layer's outputs are ``z_n = (W + dW) h_n + b + db`` — linear in ``dW`` for fixed ``h_n`` — and
    the layers after it are encoded per input with :func:`encode_network` (``relu='exact'`` big-M;
    sigmoid/tanh envelopes) using interval bounds propagated from the box
    ``W h_n + b ± (delta * sum_k |h_nk| + delta_bias)``. ``weight_mask`` (out, in) bool: which
    weights may change (default all); ``train_bias=False`` freezes the bias.
    """
    from ..bounds.interval import interval_bounds
    layer = network.layers[layer_index] if 0 <= layer_index < len(network.layers) else None
    if not isinstance(layer, Affine):
        raise EncodingError(f"layer {layer_index} is not an Affine layer of the network")
    X = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    X = X.reshape(X.shape[0], -1)
    if X.shape[1] != network.n_inputs:
        raise EncodingError(f"inputs have {X.shape[1]} features, the network has {network.n_inputs} inputs")
    if not np.all(np.isfinite(X)):
        raise EncodingError("inputs must be finite")
    delta = float(delta)
    delta_bias = delta if delta_bias is None else float(delta_bias)
    if delta < 0 or delta_bias < 0:
        raise EncodingError("delta and delta_bias must be >= 0")
    N = X.shape[0]
    H = network.forward_all(X)[layer_index]                       # (N, in)
    m, n_in = layer.W.shape
    mask = np.ones((m, n_in), dtype=bool) if weight_mask is None else np.asarray(weight_mask, dtype=bool)
    if mask.shape != (m, n_in):
        raise EncodingError(f"weight_mask has shape {mask.shape}, the layer's weight has {(m, n_in)}")
    dW = np.full((m, n_in), -1, dtype=np.int64)
    free = np.flatnonzero(mask.reshape(-1))
    dW.reshape(-1)[free] = program.add_vars(free.size, -delta, delta, name=f"{name}.dW")
    db = (program.add_vars(m, -delta_bias, delta_bias, name=f"{name}.db") if train_bias
          else np.full(m, -1, dtype=np.int64))
    C = np.asarray(layer.W @ H.T).T + layer.b                      # (N, m) unchanged outputs
    rad = delta * (np.abs(H) @ mask.T.astype(np.float64)) + (delta_bias if train_bias else 0.0)
    zlo, zhi = C - rad, C + rad
    Z = program.add_vars(N * m, zlo.reshape(-1), zhi.reshape(-1), name=f"{name}.z").reshape(N, m)
    # rows z_nj - sum_k h_nk dW_jk - db_j = C_nj
    jj, kk = np.nonzero(mask)
    for nidx in range(N):
        h = H[nidx]
        keep = h[kk] != 0.0
        j1, k1 = jj[keep], kk[keep]
        r = [np.arange(m), j1]
        c = [Z[nidx], dW[j1, k1]]
        v = [np.ones(m), -h[k1]]
        if train_bias:
            r.append(np.arange(m))
            c.append(db)
            v.append(-np.ones(m))
        program.add_rows(np.concatenate(r), np.concatenate(c), np.concatenate(v), C[nidx], C[nidx],
                         name=f"{name}.z[{nidx}]")
    rest = network.layers[layer_index + 1:]
    encs: list = []
    if rest:
        sub = Network(tuple(rest), (m,), name=f"{network.name}[{layer_index + 1}:]")
        bb = interval_bounds(sub, zlo, zhi)
        outs = []
        for nidx in range(N):
            e = encode_network(program, sub, bb.pick(nidx), input_vars=Z[nidx], relu=relu, segments=segments,
                               name=f"{name}.after[{nidx}]", eps=eps)
            encs.append(e)
            outs.append(e.value_vars[-1])
        outputs = np.stack(outs)
    else:
        encs = [None] * N
        outputs = Z
    return WeightEncoding(program, network, layer_index, dW, db, Z, outputs, H, encs)


__all__ = ["NetworkEncoding", "EncodingError", "BigMError", "MAX_BIG_M", "Lines", "encode_network", "decode",
           "add_linear_objective",
           "add_output_constraints", "WeightEncoding", "encode_weight_layer"]
