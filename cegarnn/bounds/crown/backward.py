"""CROWN's backward pass over the IR for a batch of boxes, numpy or torch, and the sound merge of
its results with interval bounds and neuron splits.

Backward pass (lower bounds of rows ``A v_k + c``): walking from layer ``k-1`` down to the input,
an affine layer maps ``A, c -> A W, c + A b``; an activation with relaxation
``kl x + cl <= f(x) <= ku x + cu`` maps ``A -> A+ kl + A- ku`` and ``c -> c + A+ cl + A- cu``
(``A+ = max(A, 0)``, ``A- = min(A, 0)``); at the input box ``[lo, hi]`` with centre ``m`` and
radius ``r`` the bound is ``c + A m - |A| r``. Upper bounds are lower bounds of the negated rows
(both are computed in one pass on the stacked rows ``[W; -W]``).

:class:`Combiner` turns raw CROWN bounds into sound ones exactly as
:func:`cegarnn.bounds.lirpa.combine_with_interval` does for auto_LiRPA (same :func:`widen`,
:func:`~cegarnn.bounds.rounding.affine_error` / ``activation_error``), value by value, so that
each layer's relaxation is built on already sound bounds; it also intersects pre-activation
bounds with the subproblems' splits.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from ...network.ir import Affine, Network, ReLU
from ..interval import _abs, activation_interval, affine_interval
from ..lirpa import widen
from ..rounding import activation_error, affine_error
from .relax import Ops, SShapeFns, is_relu, relu_relax, sshape_relax


class Weights:
    """The network's affine layers in the array type of ``ops`` (numpy: as stored, dense or CSR;
    torch: dense or sparse-CSR tensors of ``dtype`` on ``device``)."""

    def __init__(self, network: Network, ops: Ops, dtype=None, device=None):
        self.ops = ops
        self.W, self.WT, self.b, self._dense = {}, {}, {}, {}
        self._layers = network.layers
        for i, layer in enumerate(network.layers):
            if not isinstance(layer, Affine):
                continue
            if not ops.torch:
                self.W[i] = layer.W
                self.WT[i] = layer.W.T.tocsr() if sp.issparse(layer.W) else None
                self.b[i] = layer.b
                continue
            torch = ops.xp
            if sp.issparse(layer.W):
                WT = layer.W.T.tocsr()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")     # torch: "sparse CSR support is in beta"
                    self.WT[i] = torch.sparse_csr_tensor(
                        torch.as_tensor(WT.indptr, dtype=torch.int64),
                        torch.as_tensor(WT.indices, dtype=torch.int64),
                        torch.as_tensor(WT.data, dtype=dtype), size=WT.shape, device=device)
                self.W[i] = None
            else:
                self.W[i] = torch.as_tensor(layer.W, dtype=dtype, device=device)
                self.WT[i] = None
            self.b[i] = torch.as_tensor(layer.b, dtype=dtype, device=device)

    def dense(self, i: int):
        """W_i as a dense array of the backend (cached)."""
        if i not in self._dense:
            if self.ops.torch:
                ref = self.b[i]
                self._dense[i] = self.ops.xp.as_tensor(self._layers[i].dense_W(), dtype=ref.dtype, device=ref.device)
            else:
                self._dense[i] = self._layers[i].dense_W()
        return self._dense[i]

    def right(self, i: int, A):
        """``A @ W_i`` for ``A`` of shape (..., out) -> (..., in) (A scipy-sparse 2-D: sparse or dense)."""
        W = self.W[i]
        if sp.issparse(A):
            out = A @ W
            if sp.issparse(out) and out.nnz > 0.25 * out.shape[0] * out.shape[1]:
                out = out.toarray()
            return out
        if W is not None and self.WT[i] is None:
            return A @ W
        flat = A.reshape(-1, A.shape[-1])
        out = self.WT[i] @ flat.T            # sparse (in, out) @ dense (out, N)
        out = np.asarray(out) if not self.ops.torch else out
        return out.T.reshape(tuple(A.shape[:-1]) + (out.shape[0],))

    def bias(self, i: int, A):
        """``A @ b_i``: (..., out) -> (...)."""
        out = A @ self.b[i]
        return np.asarray(out).reshape(-1) if sp.issparse(A) else out


def activation_step(ops: Ops, A, c, relax):
    """One backward step through an activation (lower-bound direction):
    ``A+ kl + A- ku = A ku + A+ (kl - ku)`` and ``c + A+ cl + A- cu = c + A cu + A+ (cl - cu)``
    (the sums as batched matrix-vector products)."""
    kl, cl, ku, cu = relax
    if ops.torch:
        pos = A.clamp(min=0)
    else:
        pos = np.maximum(A, 0.0)
    dk, dc = kl - ku, cl - cu
    if dc.shape[-2] == 1 and ku.shape[-2] == 1 and A.ndim == 3:
        # (B, R, n) @ (B, n, 1): BLAS instead of elementwise products and sums
        c = c + (A @ _col(ops, cu))[..., 0] + (pos @ _col(ops, dc))[..., 0]
    else:
        c = c + (A * cu).sum(-1) + (pos * dc).sum(-1)
    out = A * ku
    out += pos * dk
    return out, c


def _col(ops, v):
    """(B, 1, n) -> (B, n, 1)."""
    return v.transpose(-1, -2) if ops.torch else np.swapaxes(v, -1, -2)


#: the first step of a pass (rows shared by the batch) is one matrix product when the next affine
#: layer has at most this many inputs (or the rows are sparse)
SHARED_STEP_MAX_OUT = 32


def shared_step(ops: Ops, weights: Weights, network: Network, i: int, A, c, relax):
    """Backward through activation ``i`` and affine ``i-1`` for rows ``A`` (R, n) shared by the
    batch (dense, or scipy-sparse on numpy) and a relaxation of shape (B, 1, n), as two products
    ``A+ P_l + A- P_u`` with ``P = [k * W | k * b + c]`` stacked over the batch: no (B, R, n)
    intermediate. Returns ``(A', c')`` of shapes (B, R, m), (B, R)."""
    kl, cl, ku, cu = (t[:, 0, :] for t in relax)
    W, bias = weights.dense(i - 1), weights.b[i - 1]
    B, n = kl.shape
    m = W.shape[1]
    xp = ops.xp

    def stack(k, cc):
        P = xp.concatenate([k[:, :, None] * W[None], (k * bias + cc)[:, :, None]], 2) if not ops.torch \
            else xp.cat([k[:, :, None] * W[None], (k * bias + cc)[:, :, None]], 2)
        return P.transpose(1, 0, 2).reshape(n, B * (m + 1)) if not ops.torch \
            else P.permute(1, 0, 2).reshape(n, B * (m + 1))

    if sp.issparse(A):
        pos, neg = A.maximum(0), A.minimum(0)
    elif ops.torch:
        pos, neg = A.clamp(min=0), A.clamp(max=0)
    else:
        pos, neg = np.maximum(A, 0.0), np.minimum(A, 0.0)
    out = pos @ stack(kl, cl) + neg @ stack(ku, cu)
    R = A.shape[0]
    out = out.reshape(R, B, m + 1)
    out = out.transpose(1, 0, 2) if not ops.torch else out.permute(1, 0, 2)
    return out[..., :m], c + out[..., m]


def sparse_shared_step(weights: Weights, i: int, A, c, relax):
    """:func:`shared_step` for scipy-sparse rows ``A`` (R, n) when affine ``i-1`` is sparse too
    (numpy): the relaxed rows of every box, ``A+ diag(kl_b) + A- diag(ku_b)``, keep ``A``'s
    pattern, so they are stacked into one sparse (B R, n) matrix and multiplied by the sparse
    ``W_{i-1}``: the cost follows the nonzeros, not B n m. Returns dense (B, R, m), (B, R)."""
    kl, cl, ku, cu = (t[:, 0, :] for t in relax)
    B = kl.shape[0]
    A = A.tocsr()
    R, n = A.shape
    d, ind = A.data, A.indices
    pos = d > 0
    nnz = len(d)
    ptr = np.append((A.indptr[:-1][None] + nnz * np.arange(B)[:, None]).ravel(), B * nnz)
    cols = np.tile(ind, B)
    slope = sp.csr_matrix(((d * np.where(pos, kl[:, ind], ku[:, ind])).ravel(), cols, ptr), shape=(B * R, n))
    const = sp.csr_matrix(((d * np.where(pos, cl[:, ind], cu[:, ind])).ravel(), cols, ptr), shape=(B * R, n))
    c = c + (const @ np.ones(n) + slope @ weights.b[i - 1]).reshape(B, R)
    out = slope @ weights.W[i - 1]
    out = out.toarray() if sp.issparse(out) else np.asarray(out)
    return out.reshape(B, R, -1), c


def _fusable(ops, network: Network, i: int, A) -> bool:
    """Affine i <- ReLU i-1 <- Affine i-2 with few inputs, rows per box (numpy)."""
    L = network.layers
    return (not ops.torch and i >= 2 and not sp.issparse(A) and A.ndim == 3 and isinstance(L[i - 1], ReLU)
            and isinstance(L[i - 2], Affine) and L[i - 2].in_size <= SHARED_STEP_MAX_OUT)


def fused_step(ops: Ops, weights: Weights, i: int, A, c, relax, cache: dict):
    """Backward through affine ``i``, ReLU ``i-1`` and affine ``i-2`` (p inputs) at once for rows
    ``A`` (B, R, m). ReLU neurons whose relaxation is one exact line in every box of the batch
    (``kl = ku``, ``cl = cu``: stable) are folded into ``M_b = W_i[:, S] diag(k_b) W_{i-2}[S]``
    (m x p, built once per batch and cached), so the product costs ``R m p`` instead of
    ``R m n``; the other neurons take the ordinary steps. Exact: the same bound as step by step."""
    kl, cl, ku, cu = relax
    if i not in cache:
        lin = np.all((kl == ku) & (cl == cu), axis=(0, 1))
        S, U = np.flatnonzero(lin), np.flatnonzero(~lin)
        Wi, Wp, bp = weights.dense(i), weights.dense(i - 2), weights.b[i - 2]
        k = kl[:, 0, S]                                          # (B, |S|)
        B, p = k.shape[0], Wp.shape[1]
        Q = np.concatenate([k[:, :, None] * Wp[S][None], (k * bp[S] + cl[:, 0, S])[:, :, None]], 2)
        MQ = (Wi[:, S] @ Q.transpose(1, 0, 2).reshape(len(S), B * (p + 1))).reshape(-1, B, p + 1)
        MQ = MQ.transpose(1, 0, 2)                               # (B, m, p + 1): W_S diag(k) [W_p | b_p] + W_S c
        M, v = MQ[..., :p], MQ[..., p]
        cache[i] = (U, M, v, tuple(t[:, :, U] for t in relax), Wi[:, U], Wp[U], bp[U])
    U, M, v, relax_u, WiU, WpU, bpU = cache[i]
    c = c + A @ weights.b[i] + (A @ v[:, :, None])[..., 0]
    out = A @ M
    if len(U):
        lam = A @ WiU
        lam, c = activation_step(ops, lam, c, relax_u)
        c = c + lam @ bpU
        out = out + lam @ WpU
    return out, c


def _act_fusable(ops, network: Network, i: int, A) -> bool:
    """Activation i (not ReLU) <- affine i-1 <- ReLU i-2 <- affine i-3 with few inputs (numpy)."""
    L = network.layers
    return (not ops.torch and i >= 3 and not isinstance(L[i], (Affine, ReLU)) and isinstance(L[i - 1], Affine)
            and isinstance(L[i - 2], ReLU) and isinstance(L[i - 3], Affine)
            and L[i - 3].in_size <= SHARED_STEP_MAX_OUT)


def _act_cache(weights: Weights, i: int, relax, relax_relu):
    """What :func:`fused_act_step` needs for one batch (fixed relaxations): per box ``b``,
    ``Y_u[b] = [diag(ku_b) X_b | cu_b]`` and ``D[b] = [diag(kl_b - ku_b) X_b | cl_b - cu_b]``,
    stored (n, B, K), with ``X_b = [M_b | v_b | W[:, U_b]]``: ``M_b, v_b`` the affine map through
    the ReLU neurons that are linear in box b (folded with the affine layer below), ``U_b`` the
    others (padded to the batch's maximum count with a zero column)."""
    Wm, bm = weights.dense(i - 1), weights.b[i - 1]           # (n, h)
    Wp, bp = weights.dense(i - 3), weights.b[i - 3]           # (h, p)
    rl = tuple(t[:, 0, :] for t in relax_relu)                # (B, h) each
    lin = (rl[0] == rl[2]) & (rl[1] == rl[3])
    k, cst = np.where(lin, rl[0], 0.0), np.where(lin, rl[1], 0.0)
    B, h = k.shape
    n, p = Wm.shape[0], Wp.shape[1]
    Q = np.concatenate([k[:, :, None] * Wp[None], (k * bp + cst)[:, :, None]], 2)      # (B, h, p + 1)
    MQ = (Wm @ Q.transpose(1, 0, 2).reshape(h, B * (p + 1))).reshape(n, B, p + 1)   # (n, B, p + 1)
    MQ[:, :, p] += bm[:, None]
    u = int((~lin).sum(axis=1).max()) if B else 0
    idx = np.argsort(lin, axis=1, kind="stable")[:, :u]       # unstable neurons first
    valid = ~np.take_along_axis(lin, idx, 1)                  # (B, u)
    idx = np.where(valid, idx, h)                             # padding -> the zero column h
    W0 = np.concatenate([Wm, np.zeros((n, 1))], 1)
    WU = W0[:, idx]                                           # (n, B, u)
    K = p + u + 2
    kl, cl, ku, cu = (t[:, 0, :].T[:, :, None] for t in relax)          # (n, B, 1)
    dk = kl - ku
    Yu, D = np.empty((n, B, K)), np.empty((n, B, K))
    for out, kk in ((Yu, ku), (D, dk)):
        np.multiply(MQ, kk, out=out[:, :, :p + 1])
        np.multiply(WU, kk, out=out[:, :, p + 1:K - 1])
    Yu[:, :, K - 1] = cu[:, :, 0]
    D[:, :, K - 1] = (cl - cu)[:, :, 0]
    relax_u = tuple((np.take_along_axis(t, np.minimum(idx, h - 1), 1) * valid)[:, None, :] for t in rl)
    WpU = np.concatenate([Wp, np.zeros((1, p))])[idx]       # (B, u, p)
    bpU = np.concatenate([bp, [0.0]])[idx]                  # (B, u)
    return Yu, D, relax_u, WpU, bpU, p, u


def fused_act_step(ops: Ops, i: int, A, c, cache_entry):
    """Backward through activation ``i``, affine ``i-1``, ReLU ``i-2`` and affine ``i-3`` (p
    inputs) at once for rows ``A`` (R, n) shared (dense or scipy-sparse) or (B, R, n):
    ``A Y_u + A+ D`` (``= A+ Y_l + A- Y_u``, see :func:`_act_cache`) gives the coefficients of the input through the
    ReLU neurons linear in each box, the constant, and the rows ``lam`` at the other ReLU
    neurons, which take the ordinary ReLU step. Exact: the same bound as step by step."""
    Yu, D, relax_u, WpU, bpU, p, u = cache_entry
    n, B, K = Yu.shape
    if A.ndim == 2 or sp.issparse(A):
        pos = A.maximum(0) if sp.issparse(A) else np.maximum(A, 0.0)
        out = A @ Yu.reshape(n, B * K) + pos @ D.reshape(n, B * K)
        out = np.asarray(out).reshape(-1, B, K).transpose(1, 0, 2)                # (B, R, K)
    else:
        out = A @ Yu.transpose(1, 0, 2)
        out += np.maximum(A, 0.0) @ D.transpose(1, 0, 2)                          # (B, R, K)
    coeff = out[..., :p]
    c = c + out[..., p] + out[..., K - 1]
    if u:
        lam, c = activation_step(ops, np.ascontiguousarray(out[..., p + 1:K - 1]), c, relax_u)
        c = c + (lam @ bpU[:, :, None])[..., 0]
        coeff = coeff + lam @ WpU
    return coeff, c


def backward(ops: Ops, weights: Weights, network: Network, top: int, A, c, relax_of, center, radius,
             cache: dict | None = None):
    """Lower bounds (B, R) of ``A v_top + c`` over the input boxes (``center ± radius``, (B, n0)),
    ``A`` (R, n) shared (dense, or scipy-sparse on numpy) or (B, R, n). ``relax_of(i)`` gives the
    relaxation of activation layer ``i`` (arrays broadcasting against (B, R, n)). ``cache``: a
    dict kept for one batch with fixed relaxations enables :func:`fused_step`."""
    i = top - 1
    while i >= 0:
        layer = network.layers[i]
        if cache is not None and i >= 3 and _act_fusable(ops, network, i, A) and relax_of(i)[0].shape[1] == 1 \
                and relax_of(i - 2)[0].shape[1] == 1:
            if ("act", i) not in cache:
                cache[("act", i)] = _act_cache(weights, i, relax_of(i), relax_of(i - 2))
            A, c = fused_act_step(ops, i, A, c, cache[("act", i)])
            i -= 4
            continue
        if cache is not None and isinstance(layer, Affine) and _fusable(ops, network, i, A) \
                and relax_of(i - 1)[0].shape[1] == 1:
            A, c = fused_step(ops, weights, i, A, c, relax_of(i - 1), cache)
            i -= 3
            continue
        if isinstance(layer, Affine):
            c = c + weights.bias(i, A)
            A = weights.right(i, A)
        else:
            relax = relax_of(i)
            if not ops.torch and sp.issparse(A) and i > 0 and relax[0].shape[1] == 1 \
                    and isinstance(network.layers[i - 1], Affine) and sp.issparse(weights.W[i - 1]):
                A, c = sparse_shared_step(weights, i, A, c, relax)
                i -= 2
                continue
            if A.ndim == 2 and i > 0 and relax[0].shape[1] == 1 and isinstance(network.layers[i - 1], Affine) \
                    and (sp.issparse(A) or network.layers[i - 1].in_size <= SHARED_STEP_MAX_OUT):
                A, c = shared_step(ops, weights, network, i, A, c, relax)
                i -= 2
                continue
            if sp.issparse(A):
                A = A.toarray()
            if A.ndim == 2:
                A = A[None]
            A, c = activation_step(ops, A, c, relax)
        i -= 1
    if sp.issparse(A):
        A = A.toarray()
    if A.ndim == 2:
        A = A[None]
    return c + (A * center[:, None, :]).sum(-1) - (ops.xp.abs(A) * radius[:, None, :]).sum(-1)


def relaxation(ops: Ops, layer, l, u, **params):
    """Relaxation of ``layer`` on ``[l, u]`` (arrays of ``ops``)."""
    if is_relu(layer):
        return relu_relax(ops, l, u, params.get("slope"))
    return sshape_relax(SShapeFns(layer, ops), l, u, params.get("p_low"), params.get("p_up"),
                        params.get("limits"))


class Combiner:
    """Sound bounds value by value (numpy float64, batch (B, n)): interval propagation of the
    previous sound bounds, intersected with widened raw CROWN bounds, then with the splits.

    ``lower[k]``/``upper[k]``: sound bounds of value k for the subproblems; ``err[k]``: rounding
    error bound (``precision`` arithmetic) as in ``combine_with_interval``; ``tol[k]``: the
    absolute part ``rtol*scale + atol + err`` of the widening of value k; ``infeasible[b]``: the
    splits of subproblem b contradict its bounds (its set is empty)."""

    def __init__(self, network: Network, lo: np.ndarray, hi: np.ndarray, splits, precision: str):
        self.network, self.splits, self.precision = network, splits, precision
        self.lower, self.upper = [lo], [hi]
        self.err = [np.zeros_like(lo)]
        self.tol = {}
        self.infeasible = np.zeros(lo.shape[0], dtype=bool)
        self._apply_splits(0)

    def _apply_splits(self, k: int) -> None:
        if self.splits is None or k >= len(self.network.layers):
            return
        l, u, empty = self.splits.restrict(k, self.lower[k], self.upper[k])
        self.lower[k], self.upper[k] = l, u
        self.infeasible |= empty

    def advance(self, raw=None) -> None:
        """Compute value ``k+1`` from value ``k`` (the last one); ``raw``: unwidened CROWN (l, u)."""
        k = len(self.lower) - 1
        layer = self.network.layers[k]
        pl, pu = self.lower[k], self.upper[k]
        mag = np.maximum(np.abs(pl), np.abs(pu))
        if isinstance(layer, Affine):
            il, iu = affine_interval(layer, pl, pu)
            err = affine_error(layer, self.err[k], mag, self.precision, include_folded=False)
        else:
            il, iu = activation_interval(layer, pl, pu)
            err = activation_error(layer, self.err[k], pl, pu, self.precision)
        if raw is not None or (isinstance(layer, Affine) and k + 1 < len(self.network.layers)):
            # tol also for a value left to interval bounds ('unstable' mode): alpha-CROWN bounds it later
            scale = np.asarray(_abs(layer.W) @ mag.T).T + np.abs(layer.b) if isinstance(layer, Affine) else mag
            self.tol[k + 1] = widen(0.0, 0.0, scale)[1] + err
        if raw is not None:
            cl, cu = widen(raw[0], raw[1], scale)
            cl, cu = cl - err, cu + err
            nl, nu = np.fmax(cl, il), np.fmin(cu, iu)
            bad = nl > nu           # CROWN disjoint from interval: only on an empty subproblem
            self.infeasible |= bad.any(axis=1)
            il, iu = np.where(bad, il, nl), np.where(bad, iu, nu)
        self.lower.append(il)
        self.upper.append(iu)
        self.err.append(err)
        self._apply_splits(k + 1)


def crown_targets(network: Network) -> list:
    """Value indices CROWN bounds: outputs of affine layers that follow some activation."""
    out, seen_act = [], False
    for i, layer in enumerate(network.layers):
        if isinstance(layer, Affine):
            if seen_act:
                out.append(i + 1)
        else:
            seen_act = True
    return out


def stacked_rows(ops: Ops, weights: Weights, layer_index: int, network: Network, rows=None):
    """``A = [W; -W]`` (rows ``rows`` of W only, if given; shared over the batch; scipy-sparse on
    numpy when W is sparse) and ``c = [b; -b]`` of affine layer ``layer_index``."""
    layer = network.layers[layer_index]
    W, b = layer.W, layer.b
    if rows is not None:
        W, b = W[rows], b[rows]
    c = np.concatenate([b, -b])
    if sp.issparse(W) and not ops.torch:
        return sp.vstack([W, -W]).tocsr(), c
    W = W.toarray() if sp.issparse(W) else W
    A = np.concatenate([W, -W])
    if ops.torch:
        ref = weights.b[layer_index]
        return ops.xp.as_tensor(A, dtype=ref.dtype, device=ref.device), ops.xp.as_tensor(c, dtype=ref.dtype,
                                                                                          device=ref.device)
    return A, c
