"""Residual blocks ``F(x) = x + W2 relu(W1 x + b1) + b2`` as plain networks, with known answers.

The IR applies one activation to a whole layer, so the identity path goes through ReLUs that are
active on the whole box: ``x = relu(x + s) - s`` for ``x >= -s``. :func:`residual_block` picks
``s`` from the box, so those neurons are stable (no binaries) and the network equals the block
exactly on the box.

* :func:`contractive_block`: ``W1``, ``W2`` random with spectral norms scaled so that
  ``||W2||₂ ||W1||₂ = lip < 1``: ``g`` is ``lip``-Lipschitz in L2 and ``F`` is injective
  (``||F(x) - F(y)||₂ >= (1 - lip) ||x - y||₂``).
* :func:`folding_block`: a contractive part acting on the directions orthogonal to a unit vector
  ``u``, plus the fold ``-2 u relu(u·x - beta)``, which reflects the half-space ``u·x > beta``
  onto the other side: ``F(p + s u) = F(p - s u)`` for every ``p`` with ``u·p = beta`` and
  ``s >= 0``. Not injective on any ball that the hyperplane ``u·x = beta`` cuts.
"""
from __future__ import annotations

import numpy as np

from ..network.ir import Affine, Network, ReLU


def residual_block(W1, b1, W2, b2, lower, upper) -> Network:
    """``x + W2 relu(W1 x + b1) + b2`` as a network, exact on the box ``[lower, upper]``."""
    W1, W2 = np.asarray(W1, dtype=np.float64), np.asarray(W2, dtype=np.float64)
    b1, b2 = np.asarray(b1, dtype=np.float64), np.asarray(b2, dtype=np.float64)
    n = W1.shape[1]
    s = float(max(0.0, -float(np.min(lower)))) + 1.0
    first = Affine(np.vstack([np.eye(n), W1]), np.concatenate([np.full(n, s), b1]))
    second = Affine(np.hstack([np.eye(n), W2]), b2 - s)
    return Network((first, ReLU(), second), (n,))


def _scaled(rng, shape, norm: float) -> np.ndarray:
    W = rng.normal(size=shape)
    return W * (norm / np.linalg.norm(W, 2))


def contractive_block(n: int, hidden: int, lip: float, seed: int, lower, upper) -> Network:
    """A random injective residual block (module docstring), ``Lip₂(g) <= lip < 1``."""
    if not 0 <= lip < 1:
        raise ValueError(f"lip must be in [0, 1), got {lip}")
    rng = np.random.default_rng(seed)
    W1 = _scaled(rng, (hidden, n), np.sqrt(lip))
    W2 = _scaled(rng, (n, hidden), np.sqrt(lip))
    return residual_block(W1, rng.normal(scale=0.1, size=hidden), W2, rng.normal(scale=0.1, size=n), lower, upper)


def folding_block(n: int, hidden: int, lip: float, seed: int, center, lower, upper):
    """A residual block that folds along a random unit vector ``u`` through ``center``
    (module docstring). Returns ``(network, u, beta)``."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=n)
    u /= np.linalg.norm(u)
    P = np.eye(n) - np.outer(u, u)
    W1 = _scaled(rng, (hidden, n), np.sqrt(lip)) @ P
    W2 = _scaled(rng, (n, hidden), np.sqrt(lip))
    beta = float(u @ np.asarray(center, dtype=np.float64))
    W1f = np.vstack([W1, u[None, :]])
    b1f = np.concatenate([rng.normal(scale=0.1, size=hidden), [-beta]])
    W2f = np.hstack([W2, -2.0 * u[:, None]])
    return residual_block(W1f, b1f, W2f, rng.normal(scale=0.1, size=n), lower, upper), u, beta


__all__ = ["contractive_block", "folding_block", "residual_block"]
