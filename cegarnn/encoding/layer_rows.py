"""Rows of one layer of an encoded network, added in bulk to a :class:`~.program.Program`.

* :func:`affine_rows`: ``W x_in - x_out = -b`` (CSR/dense weights turned into COO in bulk);
* :func:`relu_rows`: ReLU, exact (big-M, one binary per unstable neuron) or triangle (LP);
* sigmoid/tanh: :func:`envelope_rows` (one segment per neuron, 4 envelope rows), and for several
  segments the convex-hull disjunction :func:`encode_disjunction` over the :class:`Lines` from
  :func:`segment_lines`; :func:`segments_for_layer` reads the ``segments`` option.

These are the building blocks of :func:`~.network.encode_network` and its refinement; the formulas
are described in the docstring of :mod:`cegarnn.encoding.network`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from ..abstraction.sigmoid import SShape, SegmentedNeuron, envelope
from ..network.ir import Affine
from .errors import MAX_BIG_M, EncodingError, check_big_m
from .program import INF, Program


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



def affine_rows(program: Program, layer: Affine, xin: np.ndarray, xout: np.ndarray, name: str) -> np.ndarray:
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


def relu_rows(program: Program, x: np.ndarray, y: np.ndarray, l: np.ndarray, u: np.ndarray,
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
        check_big_m(l, u, iu, layer, max_big_m if mode == "exact" else np.inf, name)
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


def envelope_rows(program: Program, x: np.ndarray, y: np.ndarray, env, name: str) -> np.ndarray:
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


OWN_UPPER = np.array([True, True, False, False])


def _own_lines(env, first: int, last: int) -> Lines:
    """The 4 envelope lines of segments ``first..last-1`` of ``env`` (local segment numbers)."""
    K = last - first
    k = np.concatenate([env.upper_slope[first:last], env.lower_slope[first:last]], axis=1).reshape(-1)
    c = np.concatenate([env.upper_offset[first:last], env.lower_offset[first:last]], axis=1).reshape(-1)
    return Lines(np.repeat(np.arange(K), 4), np.tile(OWN_UPPER, K), k, c)


def segment_lines(act: SShape, breakpoints: list, parents: Optional[list], eps: float) -> list:
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


def encode_disjunction(program: Program, act: SShape, xv: np.ndarray, yv: np.ndarray,
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


def segments_for_layer(segments, layer: int, n: int, l: np.ndarray, u: np.ndarray, tol: float) -> list:
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


__all__ = ["Lines", "OWN_UPPER", "affine_rows", "encode_disjunction", "envelope_rows", "relu_rows",
           "segment_lines", "segments_for_layer"]
