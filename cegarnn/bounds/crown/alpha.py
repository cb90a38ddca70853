"""alpha-CROWN on the IR (torch): CROWN whose relaxation choices are optimised by gradient.

Parameters, per bounded value ("target": an affine output after an activation, or the
objective) and per earlier activation layer, of shape (B, R, n) (one per row of the target) or
(B, 1, n) (shared, for targets with more than :data:`ROW_BUDGET` row-neurons):

* ReLU: ``slope`` in [0, 1], the lower line ``slope * x`` of unstable neurons;
* sigmoid/tanh: ``p_low`` / ``p_up`` in [0, 1], the tangent points of the lower / upper tangent
  lines inside their sound ranges (see :mod:`.relax`).

Every choice in these ranges gives a valid relaxation, so each iteration's bounds are sound (after
the same widening as CROWN: the absolute part ``tol`` of the CROWN widening, which only shrinks
as bounds tighten, plus ``RTOL`` times the value). The result keeps, entry by entry, the best
bound of all iterations and of plain CROWN, so it is never looser than CROWN. The loss is the
sum of the objective's lower bounds (or of the output widths when there is no objective); Adam
steps, projected onto [0, 1]. Starts from ``alpha_init`` (a parent's alphas) where given, else
from CROWN's choices.
"""
from __future__ import annotations

import time

import numpy as np

from ...network.ir import Affine
from ..box import LayerBounds
from ..interval import activation_interval
from ..lirpa import RTOL
from .backward import backward, crown_targets, relaxation, stacked_rows
from .beta import BETA_LR, backward_beta, betas_for, init_betas, split_terms
from .relax import SShapeFns, is_relu, tangent_limits
from .state import BoundState, _np

#: largest rows x neurons of one target for which each row gets its own parameters
ROW_BUDGET = 200_000


def _init_params(torch, layer, l, u, shape, init):
    """CROWN's choices (or ``init``) as parameters of ``shape`` for a layer with bounds l, u (B, n)."""
    if is_relu(layer):
        names = {"slope": (u > -l).to(l.dtype)}
    else:
        names = {"p_low": torch.where(u <= 0, 0.5, 0.0).to(l.dtype),
                 "p_up": torch.where(l >= 0, 0.5, 0.0).to(l.dtype)}
    out = {}
    for name, default in names.items():
        if init is not None and name in init:
            t = torch.as_tensor(init[name], dtype=l.dtype, device=l.device)
            if t.ndim != 3 or t.shape[-1] != shape[-1] or t.shape[0] not in (1, shape[0]):
                raise ValueError(f"alpha_init tensor {name} has shape {tuple(t.shape)}, expected {shape}")
            t = t.expand(shape[0], t.shape[1], shape[2])
            if t.shape[1] not in (1, shape[1]):
                raise ValueError(f"alpha_init tensor {name} has shape {tuple(t.shape)}, expected {shape}")
            t = t.expand(shape).clone()
        else:
            t = default[:, None, :].expand(shape).clone()
        out[name] = t.clamp(0, 1).requires_grad_(True)
    return out


def alpha_crown(bounder, lo, hi, splits, C, init, iterations: int, lr: float, beta: bool = False,
                beta_lr=None, beta_iterations=None, deadline=None):
    """alpha-CROWN on one chunk of validated subproblems: ``(LayerBounds, BoundState)``. ``beta``:
    also Lagrangian multipliers of the splits (:mod:`.beta`) in the objective's bound (``'all'``:
    in every intermediate bound too), held at their start (0, or
    ``init``'s) for the first ``iterations`` steps (exactly the alpha run), then optimised with the
    alphas for ``beta_iterations`` more (default ``iterations``; rate ``beta_lr``, default ``BETA_LR``);
    returned with the alphas under ``'beta:<target>:<layer>'``."""
    import torch

    # the CROWN baseline (bounds to intersect with, widening tolerances) in the precision the
    # iterations run in: numpy float64 (the same numbers as plain CROWN), or torch float32
    comb, relax0, obj0 = bounder.crown_pass(lo, hi, splits, C, torch_path=bounder.dtype == "float32")
    ops, weights, _ = bounder.ops(True)
    net = bounder.network
    L = len(net.layers)
    B = lo.shape[0]
    T = lambda a: bounder.to_ops(ops, a)  # noqa: E731
    center, radius = bounder.center_radius(ops, lo, hi)
    targets = crown_targets(net)
    acts = [i for i, l in enumerate(net.layers) if not isinstance(l, Affine)]
    # sound CROWN bounds (tensors) to intersect with, and the widening tolerances
    cl = {k: T(comb.lower[k]) for k in range(L + 1)}
    cu = {k: T(comb.upper[k]) for k in range(L + 1)}
    tol = {k: T(comb.tol[k]) for k in targets}
    use_obj = C is not None
    tops = [(k, 2 * net.sizes[k]) for k in targets] + [("obj", C.shape[1] if use_obj else 0)]
    params = {}
    with torch.no_grad():
        for k, rows in tops:
            top = L if k == "obj" else k
            if k == "obj" and not use_obj:
                continue
            for j in acts:
                if j >= top:
                    continue
                n = net.sizes[j]
                shape = (B, rows if rows * n <= ROW_BUDGET else 1, n)
                key = f"{k}:{j}"
                params[key] = _init_params(torch, net.layers[j], cl[j], cu[j], shape,
                                           None if init is None else init.get(key))
    terms = split_terms(comb, splits, T) if beta else {}
    if terms:
        ref = cl[0]
        with torch.no_grad():
            params.update(init_betas(torch, terms, [(k, rows, L if k == "obj" else k, net.sizes) for k, rows in tops
                                                    if (k == "obj" and use_obj) or (k != "obj" and beta == "all")],
                                     B, ROW_BUDGET, ref.dtype, ref.device, init))
    flat = [t for key, d in params.items() if not key.startswith("beta:") for t in d.values()]
    flat_b = [t for key, d in params.items() if key.startswith("beta:") for t in d.values()]
    blr = BETA_LR if beta_lr is None else float(beta_lr)
    groups = ([{"params": flat}] if flat else []) + ([{"params": flat_b, "lr": blr}] if flat_b else [])
    alpha_its = iterations
    if flat_b:
        iterations += iterations if beta_iterations is None else int(beta_iterations)
    opt = torch.optim.Adam(groups, lr=lr) if groups and iterations > 0 else None
    best_l = {k: cl[k].clone() for k in targets}
    best_u = {k: cu[k].clone() for k in targets}
    Cz = T(C) if use_obj else None
    best_obj = T(obj0) if use_obj else None
    t_obj = T(bounder.objective_tol(comb, C)) if use_obj else None
    out_k = L if L in targets else None
    for it in range(iterations + 1):
        if it and deadline is not None and time.perf_counter() > deadline:
            break                       # the best bounds of the steps done so far are kept
        final = it == iterations
        with torch.set_grad_enabled(not final):
            lo_cur, hi_cur = dict(cl), dict(cu)
            limits = {}

            def relax_of(key_top):
                def get(j):
                    layer = net.layers[j]
                    l, u = lo_cur[j], hi_cur[j]
                    if j not in limits and not is_relu(layer):
                        with torch.no_grad():
                            limits[j] = tuple(t[:, None, :] for t in tangent_limits(SShapeFns(layer, ops),
                                                                                     l.detach(), u.detach()))
                    p = params.get(f"{key_top}:{j}", {})
                    return relaxation(ops, layer, l[:, None, :], u[:, None, :], limits=limits.get(j), **p)
                return get

            loss = 0.0
            for k in targets:
                A, c = stacked_rows(ops, weights, k - 1, net)
                bk = betas_for(params, k, terms, k)
                if bk:
                    out = backward_beta(ops, weights, net, k - 1, A, c, relax_of(k), center, radius, terms, bk)
                else:
                    out = backward(ops, weights, net, k - 1, A, c, relax_of(k), center, radius)
                m = net.sizes[k]
                rl, ru = out[:, :m], -out[:, m:]
                l = torch.maximum(rl - RTOL * rl.abs() - tol[k], cl[k])
                u = torch.minimum(ru + RTOL * ru.abs() + tol[k], cu[k])
                with torch.no_grad():
                    best_l[k] = torch.maximum(best_l[k], l)
                    best_u[k] = torch.minimum(best_u[k], u)
                lo_cur[k], hi_cur[k] = torch.minimum(l, u), torch.maximum(l, u)
                if k == out_k and not use_obj:
                    loss = loss + (u - l).sum()
            if use_obj:
                bo = betas_for(params, "obj", terms, L)
                if bo:
                    raw = backward_beta(ops, weights, net, L, Cz, 0.0, relax_of("obj"), center, radius, terms, bo)
                else:
                    raw = backward(ops, weights, net, L, Cz, 0.0, relax_of("obj"), center, radius)
                obj = raw - RTOL * raw.abs() - t_obj
                with torch.no_grad():
                    best_obj = torch.maximum(best_obj, obj)
                loss = loss - obj.sum()
            if final or opt is None:
                break
            opt.zero_grad()
            if flat_b:          # betas held for the first alpha_its steps, then optimised too
                opt.param_groups[-1]["lr"] = 0.0 if it < alpha_its else blr
            if torch.is_tensor(loss) and loss.requires_grad:
                loss.backward()
                opt.step()
            with torch.no_grad():
                for t in flat:
                    t.clamp_(0, 1)
                for t in flat_b:
                    t.clamp_(min=0)
    lower, upper = list(comb.lower), list(comb.upper)
    infeasible = comb.infeasible.copy()
    for k in range(1, L + 1):
        if k in best_l:
            lower[k], upper[k] = _np(best_l[k]), _np(best_u[k])
        elif not isinstance(net.layers[k - 1], Affine):
            il, iu = activation_interval(net.layers[k - 1], lower[k - 1], upper[k - 1])
            lower[k], upper[k] = np.maximum(lower[k], il), np.minimum(upper[k], iu)
        infeasible |= (lower[k] > upper[k]).any(axis=1)
    alphas = {key: {n: t.detach() for n, t in d.items()} for key, d in params.items()}
    obj = _np(best_obj) if use_obj else None
    state = BoundState(obj, infeasible, alphas,
                       {i: tuple(_np(t)[:, 0, :] for t in r) for i, r in relax0.items()})
    return LayerBounds(lower, upper, "ir-alpha-crown"), state
