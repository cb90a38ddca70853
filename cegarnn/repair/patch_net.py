"""The patched network as a plain feed-forward ReLU network (Affine and ReLU layers only).

For a network ``f`` with hidden pre-activations ``z_j`` and patches ``p_r(x) = P_r x + q_r`` on
regions with signs ``s^r``, the output is

    y(x) = f(x) + sum_r [ relu(p_r(x) - c_r V_r(x)) - relu(-p_r(x) - c_r V_r(x)) ],
    V_r(x) = sum_j relu(-s^r_j z_j(x) - tau_j)   (how far x violates region r's inequalities,
                                                  beyond a dead band tau_j >= 0),

with ``c_r = gamma_r K_r`` and ``K_r >= max over the domain of |p_r|``. On region r (and on the
slightly larger set ``s^r_j z_j >= -tau_j``) ``V_r = 0`` and the term is exactly ``p_r``; wherever
``c_r V_r >= |p_r|`` (in particular ``V_r >= 1 / gamma_r``) it is exactly 0. The dead band makes
the gate immune to the float32 rounding of ``z_j`` near the region's faces (without it a
rounding error ``e`` of one ``z_j`` can cost ``c_r e`` of the patch, and the verifier must pay for
it). ``relu(-s z_j - tau_j)`` is ``relu(z_j - tau_j)`` for an inactive sign and ``relu(-z_j -
tau_j)`` for an active one, so every hidden layer is widened to ``[z; z - tau; -z - tau]``, shared
by all regions; the partial sums ``V_r`` of earlier layers are >= 0 and pass the ReLUs unchanged;
``f`` leaves the last ReLU as ``relu(f) - relu(-f)`` (exact in floating point, as is adding the
zero terms), and ``x`` is carried as ``relu(x) - relu(-x)`` only when a patch has a linear part.

Layers: the original ``L`` Affine layers (widened), one more ReLU and one more Affine (the sum).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..network.ir import Affine, Network, ReLU


@dataclass(frozen=True)
class PatchTerm:
    """One region's patch: hidden-neuron ``signs`` (H,), ``P`` (K, n) or None, ``q`` (K,), and
    the gate's slope ``scale = gamma * K`` (``c_r`` of the module)."""

    signs: np.ndarray
    P: Optional[np.ndarray]
    q: np.ndarray
    scale: float


def _violations(terms, start: int, size: int) -> np.ndarray:
    """(R, 3 size): the coefficients of ``V_r``'s part from one hidden layer on its ReLU outputs
    ``[relu z; relu(z - tau); relu(-z - tau)]``."""
    V = np.zeros((len(terms), 3 * size))
    for r, t in enumerate(terms):
        s = t.signs[start:start + size]
        V[r, size:2 * size] = s < 0          # inactive: violated by z > tau
        V[r, 2 * size:] = s > 0              # active: violated by z < -tau
    return V


def _widened(W, b, tau):
    """Rows ``[z; z - tau; -z - tau]`` of one hidden layer: (matrix rows, bias)."""
    return [W, W, -W], [b, b - tau, -b - tau]


def patched_network(layers, input_shape, terms, tau=None, name: str = "") -> Network:
    """The network ``y`` of the module for the Affine ``layers`` ``[(W, b), ...]`` of an
    ``Affine (ReLU Affine)*`` network, the region patches ``terms`` and the dead band ``tau``
    (one value >= 0 per hidden neuron, layers concatenated; default 0)."""
    n0 = layers[0][0].shape[1]
    L, R = len(layers), len(terms)
    K = layers[-1][0].shape[0]
    hidden = [W.shape[0] for W, _ in layers[:-1]]
    starts = np.concatenate([[0], np.cumsum(hidden)]).astype(int)
    tau = np.zeros(starts[-1]) if tau is None else np.asarray(tau, dtype=np.float64)
    carry = L >= 2 and any(t.P is not None for t in terms)
    nc = 2 * n0 if carry else 0
    out: list = []
    if L >= 2:
        W, b = layers[0]
        rows, bias = _widened(W, b, tau[:starts[1]])
        rows += [np.eye(n0), -np.eye(n0)] if carry else []
        out += [Affine(np.vstack(rows), np.concatenate(bias + [np.zeros(nc)])), ReLU()]
    for h in range(1, L - 1):                # middle layers: [z; z - tau; -z - tau; V partial sums; carried x]
        W, b = layers[h]
        m, n_prev = W.shape
        has_s = h >= 2
        n_in = 3 * n_prev + (R if has_s else 0) + nc
        M = np.zeros((3 * m + R + nc, n_in))
        rows, bias = _widened(W, b, tau[starts[h]:starts[h + 1]])
        M[:3 * m, :n_prev] = np.vstack(rows)
        M[3 * m:3 * m + R, :3 * n_prev] = _violations(terms, starts[h - 1], n_prev)
        if has_s:
            M[3 * m:3 * m + R, 3 * n_prev:3 * n_prev + R] = np.eye(R)
        if carry:
            M[3 * m + R:, n_in - nc:] = np.eye(nc)
        out += [Affine(M, np.concatenate(bias + [np.zeros(R + nc)])), ReLU()]
    # last original layer: [f; -f; for each region: p_r - c_r V_r; -p_r - c_r V_r]
    W, b = layers[-1]
    if L >= 2:
        n_prev = W.shape[1]
        has_s = L - 1 >= 2
        n_in = 3 * n_prev + (R if has_s else 0) + nc
        gate = np.zeros((R, n_in))          # V_r as a row on this layer's input
        gate[:, :3 * n_prev] = _violations(terms, starts[L - 2], n_prev)
        if has_s:
            gate[:, 3 * n_prev:3 * n_prev + R] = np.eye(R)
    else:
        n_in = n0
        gate = np.zeros((R, n_in))          # no hidden neuron: one region, the whole space
    M = np.zeros((2 * K + 2 * K * R, n_in))
    bias = np.zeros(M.shape[0])
    M[:K, :W.shape[1]], M[K:2 * K, :W.shape[1]] = W, -W
    bias[:K], bias[K:2 * K] = b, -b
    for r, t in enumerate(terms):
        lin = np.zeros((K, n_in))
        if t.P is not None:
            if L >= 2:
                lin[:, n_in - nc:n_in - n0], lin[:, n_in - n0:] = t.P, -t.P
            else:
                lin[:, :] = t.P
        g = np.broadcast_to(t.scale * gate[r], (K, n_in))
        a = 2 * K + 2 * K * r
        M[a:a + K], M[a + K:a + 2 * K] = lin - g, -lin - g
        bias[a:a + K], bias[a + K:a + 2 * K] = t.q, -t.q
    out += [Affine(M, bias), ReLU()]
    I = np.eye(K)
    out.append(Affine(np.hstack([I, -I] * (1 + R)), np.zeros(K)))
    return Network(tuple(out), input_shape, name=name)


def patched_formula(layers, terms, X: np.ndarray, tau=None) -> np.ndarray:
    """``y`` of the module computed directly (float64), for testing :func:`patched_network`."""
    v = np.asarray(X, dtype=np.float64)
    zs = []
    for W, b in layers[:-1]:
        z = v @ W.T + b
        zs.append(z)
        v = np.maximum(z, 0.0)
    W, b = layers[-1]
    y = v @ W.T + b
    Z = np.concatenate(zs, axis=1) if zs else np.zeros((X.shape[0], 0))
    for t in terms:
        V = np.maximum(-t.signs * Z - (0.0 if tau is None else tau), 0.0).sum(axis=1, keepdims=True)
        p = t.q + (0.0 if t.P is None else X @ t.P.T)
        y = y + np.maximum(p - t.scale * V, 0.0) - np.maximum(-p - t.scale * V, 0.0)
    return y


__all__ = ["PatchTerm", "patched_network", "patched_formula"]
