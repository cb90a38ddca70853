"""beta-CROWN-style Lagrangian terms for neuron splits in alpha-CROWN (torch).

Derivation. A split of neuron ``j`` of activation layer ``i`` is a constraint ``g(x) >= 0`` on the
subproblem's set S = box ∩ splits, with ``g = v_i[j] - a`` (``a <= v``; ReLU active: ``a = 0``) or
``g = b - v_i[j]`` (``v <= b``; ReLU inactive: ``b = 0``). For ``beta >= 0`` and x in S,
``f(x) >= f(x) - beta g(x)``, so ``min_S f >= min_box (f - beta g)`` (weak duality): a lower bound
over the box of ``f - beta g`` is one over S. When the backward pass of ``f`` reaches ``v_i``
(rows ``A v_i + c``), the term adds ``-beta_lo`` / ``+beta_hi`` to ``A[:, j]`` and ``+beta_lo a`` /
``-beta_hi b`` to ``c``. Note the sign: *adding* ``+beta g`` would be unsound.
Rounding: the split holds for the float64 IR value, which differs from the real-arithmetic value
the backward pass bounds by at most ``err_i`` (the Combiner's rounding bound), so ``a - err`` and
``b + err`` are used.

Parameters ``beta_lo`` / ``beta_hi`` per bounded value (target) and split layer, shaped like the
alphas ((B, R, n) or (B, 1, n)), start at 0 and are projected onto ``beta >= 0``; masked to 0 where
a neuron has no split on that side. At ``beta = 0`` the pass is the alpha pass (same operations).
"""
from __future__ import annotations

import numpy as np

from ...network.ir import Affine
from .backward import activation_step

#: default Adam rate of the multipliers (larger rates made the joint steps looser on the random
#: generator+classifier instances, see docs/BOUNDS.md)
BETA_LR = 0.02


def split_terms(comb, splits, T):
    """{layer i: (a, mask_lo, b, mask_hi)} tensors (B, 1, n) for the activation layers with
    splits: ``a``/``b`` the split ends loosened by the rounding bound (0 where no split), masks
    1.0 where the side is split."""
    if splits is None:
        return {}
    out = {}
    for i in sorted(set(splits.relu) | set(splits.seg_lo) | set(splits.seg_hi)):
        err = np.asarray(comb.err[i], dtype=np.float64)
        if i in splits.relu:
            ph = splits.relu[i]
            lo = np.where(ph > 0, 0.0, -np.inf)
            hi = np.where(ph < 0, 0.0, np.inf)
        else:
            lo, hi = splits.seg_lo[i], splits.seg_hi[i]
        m_lo, m_hi = np.isfinite(lo), np.isfinite(hi)
        if not (m_lo.any() or m_hi.any()):
            continue
        a = np.where(m_lo, lo - err, 0.0)
        b = np.where(m_hi, hi + err, 0.0)
        out[i] = tuple(T(t.astype(np.float64))[:, None, :] for t in (a, m_lo, b, m_hi))
    return out


def init_betas(torch, terms, tops, B, row_budget, dtype, device, init=None):
    """Beta parameters ``{'beta:<top>:<i>': {'lo', 'hi'}}`` for every target ``top`` (name, rows,
    value index) above a split layer ``i``; zeros, or ``init`` entries of a matching shape."""
    params = {}
    for name, rows, top, sizes in tops:
        for i in terms:
            if i >= top:
                continue
            n = sizes[i]
            shape = (B, rows if rows * n <= row_budget else 1, n)
            key = f"beta:{name}:{i}"
            d = {}
            for side in ("lo", "hi"):
                t = None
                if init is not None and key in init and side in init[key]:
                    t0 = torch.as_tensor(init[key][side], dtype=dtype, device=device)
                    if t0.ndim == 3 and t0.shape[0] in (1, B) and t0.shape[1] in (1, shape[1]) \
                            and t0.shape[2] == n:
                        t = t0.expand(shape).clone()
                if t is None:
                    t = torch.zeros(shape, dtype=dtype, device=device)
                d[side] = t.clamp(min=0).requires_grad_(True)
            params[key] = d
    return params


def backward_beta(ops, weights, net, top, A, c, relax_of, center, radius, terms, betas):
    """Lower bounds (B, R) of ``A v_top + c`` over box ∩ splits: the generic (torch) steps of
    :func:`.backward.backward`, plus at each split layer ``i`` the terms ``-beta_lo (v_i - a) -
    beta_hi (b - v_i)`` (``betas[i] = (beta_lo, beta_hi)``)."""
    i = top - 1
    while i >= 0:
        layer = net.layers[i]
        if isinstance(layer, Affine):
            c = c + weights.bias(i, A)
            A = weights.right(i, A)
        else:
            if A.ndim == 2:
                A = A[None]
            A, c = activation_step(ops, A, c, relax_of(i))
            if i in betas:          # A now multiplies v_i, the pre-activation of layer i
                a, m_lo, b, m_hi = terms[i]
                b_lo, b_hi = betas[i][0] * m_lo, betas[i][1] * m_hi
                A = A - b_lo + b_hi
                c = c + (b_lo * a).sum(-1) - (b_hi * b).sum(-1)
        i -= 1
    if A.ndim == 2:
        A = A[None]
    return c + (A * center[:, None, :]).sum(-1) - (ops.xp.abs(A) * radius[:, None, :]).sum(-1)


def betas_for(params, name, terms, top):
    """``{i: (beta_lo, beta_hi)}`` of target ``name`` (empty when it has none)."""
    out = {}
    for i in terms:
        d = params.get(f"beta:{name}:{i}")
        if d is not None and i < top:
            out[i] = (d["lo"], d["hi"])
    return out
