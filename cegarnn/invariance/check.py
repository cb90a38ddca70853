"""Candidates on the real network: Jacobians, projection onto ``||f(x) - f(y)||∞ <= tau``, and the
confirmation of a constraint on the float64 IR and on the reference model.

A solver's point satisfies the constraint only within its feasibility tolerances (1e-7 per row,
accumulated through the layers). :func:`project_pair` moves it onto the constraint with a few
minimal-norm Newton steps on ``g(x, y) = f(x) - f(y)`` (coordinates at a bound of the box held),
so that an exact collision ``f(x) = f(y)`` can be confirmed to ~1e-12 in float64 instead of with a
tolerance the size of the solver's. Confirmation itself is a plain recomputation: nothing is
assumed about how the point was found.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import scipy.sparse as sp

from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh, sigmoid


def jacobian(network: Network, x: np.ndarray) -> np.ndarray:
    """``∂f/∂x`` at ``x`` (m, n), float64; a ReLU at exactly 0 takes slope 0 (one of its one-sided
    derivatives)."""
    vals = network.forward_all(np.asarray(x, dtype=np.float64))
    J = np.eye(network.n_inputs)
    for i, layer in enumerate(network.layers):
        if isinstance(layer, Affine):
            W = layer.W
            J = np.asarray(W @ J) if sp.issparse(W) else W @ J
        elif isinstance(layer, ReLU):
            J = J * (vals[i] > 0)[:, None]
        elif isinstance(layer, Sigmoid):
            s = sigmoid(vals[i])
            J = J * (s * (1.0 - s))[:, None]
        elif isinstance(layer, Tanh):
            J = J * (1.0 - np.tanh(vals[i]) ** 2)[:, None]
        else:  # pragma: no cover - Network admits no other layer
            raise TypeError(type(layer).__name__)
    return J


def _output_scale(*outs) -> float:
    return float(max([1.0] + [float(np.max(np.abs(o), initial=0.0)) for o in outs]))


def project_pair(network: Network, x: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                 tau: float, rel_tol: float, steps: int, move_y: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Newton steps moving ``(x, y)`` (``y`` held when ``move_y`` is False) so that
    ``||f(x) - f(y)||∞ <= tau`` holds with room: each step solves ``J δ = clip(g, -τ', τ') - g``
    for the minimal-norm ``δ`` over the coordinates strictly inside ``[lo, hi]`` (``τ' = tau -
    tol / 100``, at least 0; ``tol = rel_tol * max(1, largest |output|)``), then clips into the
    box. Stops when ``||g||∞ <= tau + tol / 10`` or after ``steps`` steps; returns the best point
    seen (smallest violation) and the steps used. No guarantee of its own: the result is checked
    afterwards like any candidate."""
    x, y = np.clip(x, lo, hi), np.clip(y, lo, hi)
    tol = rel_tol * _output_scale(network.forward(x), network.forward(y))
    target_tau = max(0.0, tau - tol / 100.0)

    def violation(xx, yy):
        g = network.forward(xx) - network.forward(yy)
        return float(np.max(np.abs(g)) - tau), g

    best_v, g = violation(x, y)
    best = (x, y, 0)
    for k in range(steps):
        if best_v <= tol / 10.0:
            break
        want = np.clip(g, -target_tau, target_tau) - g
        fx = (x > lo) & (x < hi)
        parts = [jacobian(network, x)[:, fx]]
        if move_y:
            fy = (y > lo) & (y < hi)
            parts.append(-jacobian(network, y)[:, fy])
        J = np.concatenate(parts, axis=1)
        if J.shape[1] == 0:
            break
        delta = np.linalg.lstsq(J, want, rcond=None)[0]
        x = x.copy()
        x[fx] = np.clip(x[fx] + delta[: int(fx.sum())], lo[fx], hi[fx])
        if move_y:
            y = y.copy()
            y[fy] = np.clip(y[fy] + delta[int(fx.sum()):], lo[fy], hi[fy])
        v, g = violation(x, y)
        if v < best_v:
            best_v, best = v, (x, y, k + 1)
    return best


def constraint_check(network: Network, reference: Optional[Callable], x: np.ndarray, y: np.ndarray,
                     tau: float, confirm_tol: float, reference_tol: float) -> dict:
    """``||f(x) - f(y)||∞`` on the IR and the reference, their limits, and whether both hold.

    Limits: ``tau + confirm_tol * scale`` on the IR and ``tau + reference_tol * scale`` on the
    reference, ``scale = max(1, largest |output| at x and y on the IR)``."""
    fx, fy = network.forward(x), network.forward(y)
    scale = _output_scale(fx, fy)
    gap_ir = float(np.max(np.abs(fx - fy), initial=0.0))
    lim_ir = tau + confirm_tol * scale
    out = {"fx": fx, "fy": fy, "gap_ir": gap_ir, "limit_ir": lim_ir, "gap_ref": None, "limit_ref": None,
           "ok": gap_ir <= lim_ir, "why": ""}
    if not out["ok"]:
        out["why"] = f"||f(x) - f(y)||∞ = {gap_ir:.3g} on the IR exceeds {lim_ir:.3g}"
        return out
    if reference is not None:
        r = np.asarray(reference(np.stack([x, y])), dtype=np.float64)
        gap_ref = float(np.max(np.abs(r[0] - r[1]), initial=0.0))
        lim_ref = tau + reference_tol * scale
        out.update(gap_ref=gap_ref, limit_ref=lim_ref, ok=gap_ref <= lim_ref)
        if not out["ok"]:
            out["why"] = f"||f(x) - f(y)||∞ = {gap_ref:.3g} on the reference model exceeds {lim_ref:.3g}"
    return out


def reference_outputs(reference: Optional[Callable], points: np.ndarray) -> Optional[np.ndarray]:
    """The reference model's outputs at ``points`` (B, n), float64; None without a reference."""
    if reference is None:
        return None
    return np.asarray(reference(np.atleast_2d(points)), dtype=np.float64)


def activation_gaps(encoding, values) -> list:
    """``(|abstract - exact|, layer, neuron, pre-activation)`` of every sigmoid/tanh neuron of one
    encoded copy at decoded ``values``, largest first (entries below 1e-9 dropped)."""
    out = []
    for layer, err in encoding.activation_errors(values).items():
        err = np.abs(err)
        for n in np.flatnonzero(err > 1e-9):
            out.append((float(err[n]), int(layer), int(n), float(values[layer][n])))
    out.sort(reverse=True)
    return out


__all__ = ["activation_gaps", "constraint_check", "jacobian", "project_pair", "reference_outputs"]
