"""The same property over rotated free inputs: ``z = centre + radius * (V s)``, ``V`` the principal
directions of the first layer over the box.

Why: a network may see its box only through a few directions (a generator whose first layer is
narrower than its latent, or whose latent weights are nearly low-rank). Bisecting the box along
the original axes then cannot separate what the network separates: every split cuts all the
directions at once. In rotated coordinates ``s`` the first ``r`` inputs carry (almost) all of the
first layer's variation, so input bisection works on an ``r``-dimensional problem.

What the rotated problem covers. ``V`` comes from the SVD of ``W diag(radius)`` (``W``: the first
layer's weights on the free inputs), so ``u = (z - centre) / radius`` in ``[-1, 1]^k`` gives
``s = V^T u`` with ``|s_j| <= ||V_j||_1``: the box of ``s`` (:attr:`InputRotation.s_radius`)
contains the image of the whole original box (it is exact in the directions where a column of
``V`` is a signed unit vector, and over-approximates a zonotope otherwise). A proof on the rotated
problem therefore covers every ``z`` of the original box, up to the difference between the rotated
first layer (``fl(W diag(radius) V)``, ``fl(W centre + b)``, ``V`` orthogonal only up to float64
rounding) and the original one: :attr:`InputRotation.first_error` bounds it per first-layer output,
and :func:`cegarnn.bounds.rounding.output_padding` carries it to the outputs with the execution
padding (the padding is computed on the *original* network over the original box, see
:class:`cegarnn.verifier.context.RunContext`). A point ``s`` is not a counterexample until
:meth:`InputRotation.to_original` has mapped it into the original box and it has been confirmed
there.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..network.ir import Affine, Network
from .property import SpecError

#: a direction counts towards the effective rank if its singular value is >= this share of the largest
RANK_RTOL = 1e-3
#: rotation is considered only up to this many free inputs (one dense SVD of the first layer)
MAX_ROTATED_INPUTS = 256


@dataclass(frozen=True, eq=False)
class InputRotation:
    """``z = centre + radius * (V s)`` for free inputs ``s`` in ``[-s_radius, s_radius]``.

    ``network``: the original problem's network (the one the executed model runs);
    ``lower``/``upper``: the original box; ``first_error[i]`` bounds, for every ``z`` of the box,
    ``|v_i(z) - v'_i(s)|`` between the original first layer and the rotated one at ``s = V^T u``
    (real arithmetic on their float64 weights); ``rank``: directions with a singular value above
    ``RANK_RTOL`` of the largest (the first ``rank`` inputs ``s``).
    """

    V: np.ndarray
    centre: np.ndarray
    radius: np.ndarray
    s_radius: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    network: Network
    first_error: np.ndarray
    rank: int

    def to_original(self, s) -> np.ndarray:
        """``centre + radius * (V s)`` clipped into the original box; (k,) or (B, k)."""
        s = np.asarray(s, dtype=np.float64)
        z = self.centre + self.radius * (s @ self.V.T)
        return np.clip(z, self.lower, self.upper)

    def original_box(self, s_lo, s_hi) -> tuple[np.ndarray, np.ndarray]:
        """A box containing every ``z`` of the original box whose ``s`` lies in ``[s_lo, s_hi]``
        (interval arithmetic, pushed outwards by a relative 1e-12, cut to the original box)."""
        s_lo, s_hi = np.asarray(s_lo, dtype=np.float64), np.asarray(s_hi, dtype=np.float64)
        c, r = (s_lo + s_hi) / 2, (s_hi - s_lo) / 2
        zc = c @ self.V.T
        zr = r @ np.abs(self.V).T + 1e-12 * (np.abs(c) @ np.abs(self.V).T)
        lo = self.centre + self.radius * (zc - zr)
        hi = self.centre + self.radius * (zc + zr)
        pad = 1e-12 * (np.abs(lo) + np.abs(hi)) + 1e-300
        return np.clip(lo - pad, self.lower, self.upper), np.clip(hi + pad, self.lower, self.upper)


def _first_layer(problem) -> Affine:
    first = problem.network.layers[0]
    if not isinstance(first, Affine):
        raise SpecError("rotating the inputs needs a first Affine layer")
    return first


def principal_directions(problem) -> tuple[np.ndarray, np.ndarray]:
    """``(V, sigma)``: right singular vectors (columns, k x k) and singular values (descending,
    zero-padded to k) of the first layer's weights scaled by the box's radii."""
    first = _first_layer(problem)
    radius = (problem.upper - problem.lower) / 2
    M = first.dense_W() * radius[None, :]
    _, sigma, Vt = np.linalg.svd(M, full_matrices=True)
    full = np.zeros(M.shape[1])
    full[: sigma.shape[0]] = sigma
    return Vt.T.copy(), full


def effective_rank(sigma: np.ndarray, rtol: float = RANK_RTOL) -> int:
    """Directions whose singular value is at least ``rtol`` of the largest (0 if all are 0)."""
    top = float(sigma[0]) if sigma.size else 0.0
    return int(np.sum(sigma >= rtol * top)) if top > 0 else 0


def rotation_rank(problem) -> Optional[int]:
    """The effective rank of the first layer over the box, or None where rotation is not considered
    (more than :data:`MAX_ROTATED_INPUTS` free inputs, or no first Affine layer)."""
    if problem.n_free > MAX_ROTATED_INPUTS or not isinstance(problem.network.layers[0], Affine):
        return None
    return effective_rank(principal_directions(problem)[1])


def _gamma(m: int) -> float:
    u = 2.0 ** -53
    return m * u / (1 - m * u)


def rotated_problem(problem):
    """The property over rotated inputs ``s`` (module docstring); its ``rotation`` says how ``s``
    maps back. Counterexamples it reports are points ``s``: confirm ``rotation.to_original(s)`` on
    ``problem`` before calling anything falsified (:func:`cegarnn.verifier.rotated.rotated_run` does)."""
    if problem.rotation is not None:
        raise SpecError("the problem is already rotated")
    first = _first_layer(problem)
    V, sigma = principal_directions(problem)
    k = V.shape[0]
    centre, radius = (problem.lower + problem.upper) / 2, (problem.upper - problem.lower) / 2
    absV = np.abs(V)
    s_radius = absV.sum(0) * (1 + 1e-12)
    W = first.dense_W()
    W_rot = (W * radius[None, :]) @ V
    b_rot = W @ centre + first.b
    # |v(z) - v'(s)| <= |W D V - W_rot| |s| + |W| D |I - V V^T| 1 + |W c + b - b_rot|
    # (D = diag(radius)); each rounding term by gamma_{k+2} times the magnitudes, doubled
    absWD = np.abs(W) * radius[None, :]
    g = _gamma(k + 2)
    orth = np.abs(V @ V.T - np.eye(k)) + g * (absV @ absV.T)
    err = (g * (absWD @ absV) @ s_radius + absWD @ orth.sum(1)
           + g * (np.abs(W) @ np.abs(centre) + np.abs(first.b)))
    first_error = 2.0 * err * (1 + 1e-6) + 1e-300
    rotated_first = Affine(W_rot, b_rot)     # its rounding is padded on the original layer (context)
    net = Network((rotated_first,) + tuple(problem.network.layers[1:]), (k,),
                  name=(problem.network.name or "network") + " (rotated inputs)")
    rot = InputRotation(V, centre, radius, s_radius, problem.lower.copy(), problem.upper.copy(),
                        problem.network, first_error, effective_rank(sigma))

    def reference(s):     # the original model (or, without one, the original IR) at the mapped point
        z = rot.to_original(s)
        return problem.reference(z) if problem.reference is not None else problem.network.forward(z)

    def full_input(s):
        z = rot.to_original(np.asarray(s, dtype=np.float64).reshape(-1, k))
        return problem.full_input(z) if problem.full_input is not None else z

    meta = {**problem.meta, "rotated_rank": rot.rank}
    return replace(problem, network=net, lower=-s_radius, upper=s_radius.copy(), reference=reference,
                   full_input=full_input, meta=meta, strict_lower=None, strict_upper=None,
                   rotation=rot)
