"""``BatchBounder``: our CROWN / alpha-CROWN on the IR for a batch of subproblems, each with its own
input box and neuron splits.

Plain CROWN runs in numpy (float64; torch is never imported) or, with ``backend='torch'``, in
torch (float32/float64, on the device asked for). alpha-CROWN (:mod:`.alpha`) always uses torch.
Results are sound bounds of the float64 IR over each subproblem's set (box and splits), widened
for the arithmetic they were computed in exactly as :mod:`cegarnn.bounds.lirpa` widens
auto_LiRPA's (see :class:`.backward.Combiner`), and never looser than interval bounds.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...network.ir import Affine, Network, ReLU
from ..box import BoxError, LayerBounds, check_box
from ..interval import affine_interval
from ..lirpa import RTOL, require_finite
from .alpha import alpha_crown
from .backward import Combiner, Weights, backward, crown_targets, relaxation, stacked_rows
from .relax import Ops
from .splits import SplitError, Splits
from .state import BoundState, _np, _put, take_alphas

#: bytes one chunk of the batch may use for its coefficient matrices
MEMORY_BUDGET = 256 * 2**20


class BatchBounder:
    """CROWN / alpha-CROWN of one network for batches of subproblems.

    ``BatchBounder(network).bounds(lo, hi, splits=None, objective=None, alpha=False, ...)`` returns
    ``(LayerBounds, BoundState)``. ``intermediate``: 'all' (CROWN on every pre-activation and
    output neuron, like auto_LiRPA's full mode) or 'unstable' (CROWN only on ReLU inputs that
    interval bounds leave unstable, interval bounds on the others: the same relaxations, so the
    same objective bound, much faster; sigmoid/tanh inputs and outputs always get CROWN). ``backend``: 'numpy' (plain CROWN, float64, no torch) or
    'torch' (``dtype`` 'float32'/'float64', ``device`` e.g. 'cpu' or 'cuda'); alpha-CROWN always
    uses torch (with ``dtype``/``device``).
    """

    def __init__(self, network: Network, *, backend: str = "numpy", dtype: str = "float64",
                 device: Optional[str] = None, memory_budget: int = MEMORY_BUDGET,
                 intermediate: str = "all"):
        if backend not in ("numpy", "torch"):
            raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if intermediate not in ("all", "unstable"):
            raise ValueError(f"intermediate must be 'all' or 'unstable', got {intermediate!r}")
        self.intermediate = intermediate
        self.network = network
        self.backend, self.dtype, self.device = backend, dtype, device
        self.memory_budget = int(memory_budget)
        self._weights = {}
        # bytes per box of the largest coefficient arrays: rows of a target times the widest layer
        # it passes (the input layer excluded: the first steps are fused), a few arrays at once
        sizes = network.sizes
        self._per_box = 24 * max([2 * sizes[k] * max(sizes[1:k]) for k in crown_targets(network)] + [1])

    # ----------------------------------------------------------------- helpers
    def ops(self, torch_path: bool):
        """(Ops, Weights, precision) of the numpy or the torch path (built once)."""
        key = "torch" if torch_path else "numpy"
        if key not in self._weights:
            if torch_path:
                import torch
                ops = Ops(torch)
                w = Weights(self.network, ops, dtype=getattr(torch, self.dtype), device=self.device)
                self._weights[key] = (ops, w, self.dtype)
            else:
                ops = Ops(np)
                self._weights[key] = (ops, Weights(self.network, ops), "float64")
        return self._weights[key]

    def chunk_size(self) -> int:
        return max(1, int(self.memory_budget // self._per_box))

    def check(self, lower, upper, splits, objective):
        """Validated ``(lo, hi, splits, C, single)``: boxes (B, n) float64, splits checked, objective
        (B, m, n_out) or None. Raises BoxError / SplitError / ValueError naming the problem."""
        lo, hi = check_box(lower, upper, self.network.n_inputs)
        require_finite(lo, hi)
        single = lo.ndim == 1
        lo, hi = np.atleast_2d(lo), np.atleast_2d(hi)
        B = lo.shape[0]
        if splits is not None:
            if not isinstance(splits, Splits):
                raise SplitError(f"splits must be a Splits, got {type(splits).__name__}")
            splits = None if splits.is_empty() else splits.checked(self.network, B)
        C = None
        if objective is not None:
            C = np.asarray(objective, dtype=np.float64)
            if C.ndim == 1:
                C = C[None]
            if C.ndim == 2:
                C = np.broadcast_to(C, (B,) + C.shape)
            if C.ndim != 3 or C.shape[0] != B or C.shape[2] != self.network.n_outputs:
                raise ValueError(f"objective must have shape (m, {self.network.n_outputs}) or "
                                 f"(B={B}, m, {self.network.n_outputs}), got {np.shape(objective)}")
            if not np.all(np.isfinite(C)):
                raise ValueError("objective has NaN or infinite entries")
        return lo, hi, splits, C, single

    # ----------------------------------------------------------------- API
    def bounds(self, lower, upper, splits: Optional[Splits] = None, objective=None, *, alpha: bool = False,
               alpha_init: Optional[dict] = None, iterations: int = 20, lr: float = 0.25,
               beta=False, beta_lr: Optional[float] = None, beta_iterations: Optional[int] = None,
               deadline: Optional[float] = None):
        """Sound bounds on every value of ``network.forward_all`` for each subproblem (box (n,) or
        batch (B, n), plus ``splits``) and, if ``objective`` (``C``: (m, n_out) or (B, m, n_out))
        is given, lower bounds of ``C y`` in ``state.objective_lower``.

        ``alpha=True``: alpha-CROWN (``iterations`` Adam steps of rate ``lr`` on the relaxation
        parameters, from ``alpha_init`` when given — e.g. a parent's ``state.alphas``), never looser
        than CROWN. ``beta=True`` (with ``alpha``): also optimise beta-CROWN multipliers of the
        splits in the objective's bound (``beta='all'``: in the intermediate bounds too) (:mod:`.beta`):
        after the ``iterations`` alpha steps, ``beta_iterations`` (default ``iterations``) more steps
        that also move the multipliers (rate ``beta_lr``, default ``beta.BETA_LR``),
        so never looser than ``beta=False`` (unless ``alpha_init`` holds betas to start from).
        ``deadline`` (a ``time.perf_counter()`` value): no optimisation step starts after it (the
        best bounds of the steps done are returned; the first pass always runs).
        ``beta=True`` without an objective or without splits changes nothing.
        Returns ``(LayerBounds, BoundState)``; a single box gives unbatched arrays."""
        if beta not in (False, True, "all"):
            raise ValueError(f"beta must be False, True or 'all', got {beta!r}")
        if beta and not alpha:
            raise ValueError("beta=True needs alpha=True (the multipliers are optimised with the alphas)")
        lo, hi, splits, C, single = self.check(lower, upper, splits, objective)
        B = lo.shape[0]
        step = self.chunk_size() if not alpha else max(1, self.chunk_size() // 4)
        parts = []
        for s in range(0, B, step):
            sl = slice(s, min(B, s + step))
            sp_ = splits.take(sl) if splits is not None else None
            Cs = C[sl] if C is not None else None
            if alpha:
                init = take_alphas(alpha_init, sl) if alpha_init is not None else None
                parts.append(alpha_crown(self, lo[sl], hi[sl], sp_, Cs, init, iterations, lr, beta, beta_lr,
                                         beta_iterations, deadline))
            else:
                parts.append(self.crown(lo[sl], hi[sl], sp_, Cs, torch_path=self.backend == "torch"))
        result, state = _concat(parts)
        if single:
            result = result.pick(0)
        return result, state

    def crown(self, lo, hi, splits, C, torch_path: bool):
        """Plain CROWN on one chunk (validated inputs): ``(LayerBounds, BoundState)`` batched."""
        comb, relax, obj = self.crown_pass(lo, hi, splits, C, torch_path)
        state = BoundState(objective_lower=obj, infeasible=comb.infeasible.copy(),
                           relaxations={i: tuple(_np(t)[:, 0, :] for t in r) for i, r in relax.items()})
        return LayerBounds(comb.lower, comb.upper, "ir-crown"), state

    def crown_pass(self, lo, hi, splits, C, torch_path: bool):
        """(Combiner with sound bounds, relaxations {layer: (kl, cl, ku, cu) (B, 1, n)},
        objective lower bounds or None). ``comb.rows[k]``: the neurons of value k bounded by CROWN
        (all, or with ``intermediate='unstable'`` the ReLU inputs unstable under interval bounds)."""
        ops, weights, precision = self.ops(torch_path)
        net = self.network
        comb = Combiner(net, lo, hi, splits, precision)
        comb.rows = {}
        center, radius = self.center_radius(ops, lo, hi)
        targets = set(crown_targets(net))
        relax, cache = {}, {}
        for k, layer in enumerate(net.layers):
            raw = None
            if isinstance(layer, Affine) and k + 1 in targets:
                rows = self.select_rows(comb, k + 1, splits)
                comb.rows[k + 1] = rows
                if rows is None or len(rows):
                    A, c = stacked_rows(ops, weights, k, net, rows)
                    out = _np(backward(ops, weights, net, k, A, c, relax.__getitem__, center, radius, cache))
                    m = out.shape[1] // 2
                    raw = (out[:, :m], -out[:, m:])
                    if rows is not None:
                        full = np.full((lo.shape[0], layer.out_size), np.nan)
                        raw = (_put(full, rows, raw[0]), _put(full, rows, raw[1]))
            comb.advance(raw)
            if k + 1 < len(net.layers) and not isinstance(net.layers[k + 1], Affine):
                l, u = self.to_ops(ops, comb.lower[k + 1]), self.to_ops(ops, comb.upper[k + 1])
                relax[k + 1] = tuple(t[:, None, :] for t in relaxation(ops, net.layers[k + 1], l, u))
        obj = None
        if C is not None:
            raw = _np(backward(ops, weights, net, len(net.layers), self.to_ops(ops, C), 0.0,
                               relax.__getitem__, center, radius, cache))
            obj = self.objective_sound(comb, C, raw)
        return comb, relax, obj

    def select_rows(self, comb: Combiner, k: int, splits):
        """Neurons of value k to bound by CROWN: None (all) unless ``intermediate == 'unstable'`` and
        value k feeds a ReLU, then those unstable under interval bounds in some subproblem."""
        net = self.network
        if self.intermediate == "all" or k >= len(net.layers) or not isinstance(net.layers[k], ReLU):
            return None
        il, iu = affine_interval(net.layers[k - 1], comb.lower[k - 1], comb.upper[k - 1])
        free = (il < 0) & (iu > 0)
        if splits is not None and k in splits.relu:
            free &= splits.relu[k] == 0
        return np.flatnonzero(free.any(axis=0))

    def objective_tol(self, comb: Combiner, C: np.ndarray) -> np.ndarray:
        """Absolute widening (B, m) of a raw CROWN bound of ``C y``: ``|C|`` times the output's
        widening (its ``tol``, or its rounding error when it was not CROWN-bounded) plus ``RTOL``
        times ``|C| max(|l_y|, |u_y|)``."""
        L = len(self.network.layers)
        lo_y, hi_y = comb.lower[L], comb.upper[L]
        mag_y = np.maximum(np.abs(lo_y), np.abs(hi_y))
        tol = comb.tol.get(L)
        if tol is None:          # output not CROWN-bounded (no activation before it)
            tol = RTOL * mag_y + comb.err[L] + 1e-12
        return np.einsum("bmn,bn->bm", np.abs(C), tol + RTOL * mag_y)

    def objective_sound(self, comb: Combiner, C: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Widen raw CROWN lower bounds of ``C y`` (:meth:`objective_tol`), and never below the
        interval bound from the sound output bounds."""
        L = len(self.network.layers)
        lo_y, hi_y = comb.lower[L], comb.upper[L]
        mag_y = np.maximum(np.abs(lo_y), np.abs(hi_y))
        crown = raw - RTOL * np.abs(raw) - self.objective_tol(comb, C)
        inter = np.einsum("bmn,bn->bm", np.maximum(C, 0), lo_y) + np.einsum("bmn,bn->bm", np.minimum(C, 0), hi_y)
        inter = inter - RTOL * np.einsum("bmn,bn->bm", np.abs(C), mag_y) - 1e-12
        return np.maximum(crown, inter)

    def center_radius(self, ops, lo, hi):
        """Centre and (outward-rounded) radius of the boxes, as arrays of ``ops``."""
        c = (lo + hi) / 2.0
        r = np.nextafter(np.maximum(hi - c, c - lo), np.inf)
        return self.to_ops(ops, c), self.to_ops(ops, r)

    def to_ops(self, ops, a):
        if not ops.torch:
            return a
        ref = self.ops(True)[1].b[next(iter(self.ops(True)[1].b))]
        a = np.ascontiguousarray(a)
        if not a.flags.writeable:           # torch warns on (and must not alias) read-only arrays
            a = a.copy()
        return ops.xp.as_tensor(a, dtype=ref.dtype, device=ref.device)


def _concat(parts):
    if len(parts) == 1:
        return parts[0]
    bs = [p[0] for p in parts]
    ss = [p[1] for p in parts]
    n = len(bs[0].lower)
    result = LayerBounds([np.concatenate([b.lower[i] for b in bs]) for i in range(n)],
                         [np.concatenate([b.upper[i] for b in bs]) for i in range(n)], bs[0].method)
    obj = None if ss[0].objective_lower is None else np.concatenate([s.objective_lower for s in ss])
    alphas = None
    if ss[0].alphas is not None:
        import torch
        alphas = {k: {n_: torch.cat([s.alphas[k][n_].expand(len(s.infeasible), *s.alphas[k][n_].shape[1:])
                                     for s in ss]) for n_ in d} for k, d in ss[0].alphas.items()}
    relax = {i: tuple(np.concatenate([s.relaxations[i][j] for s in ss]) for j in range(4))
             for i in ss[0].relaxations}
    return result, BoundState(obj, np.concatenate([s.infeasible for s in ss]), alphas, relax)


__all__ = ["BatchBounder", "BoundState", "Splits", "SplitError", "BoxError", "take_alphas"]
