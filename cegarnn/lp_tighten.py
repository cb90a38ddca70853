"""LP bound tightening: minimise and maximise each chosen neuron over an LP relaxation.

:func:`lp_tighten` grows ONE LP relaxation of the network (triangle ReLU, one-segment
sigmoid/tanh envelopes) layer by layer in a single incremental backend: the layers up to a
target value ``v[i]`` are encoded with the tightest bounds known so far, every neuron of ``v[i]``
is minimised and maximised by changing only the objective (warm re-solves), the new bounds are
written into the LP's column bounds, interval propagation refreshes the later values, and only
then are the next layers appended — so later relaxations use the tightened bounds.

Sound: only LPs the solver proved optimal are used, their optimum is widened by
``tol * (1 + |value|)`` against solver tolerances, and the result is intersected with the interval
bounds and with ``initial`` — never looser than either.

It lives above :mod:`cegarnn.bounds`, :mod:`cegarnn.encoding` and :mod:`cegarnn.solvers` (it needs
all three), so that the encoder can import the bounds package without a cycle;
``compute_bounds(..., method='lp')`` imports it when that method is asked for.
"""
from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from .bounds.box import BoxError, LayerBounds, check_box
from .bounds.interval import interval_bounds, propagate
from .encoding.network import encode_network
from .encoding.program import Program
from .network.ir import ACTIVATIONS, Affine, Network, ReLU
from .solvers.base import Status
from .solvers.registry import make_backend

log = logging.getLogger(__name__)


def default_targets(network: Network) -> list[int]:
    """Every pre-activation value (input of an activation layer) plus the output value."""
    out = {i for i, l in enumerate(network.layers) if isinstance(l, ACTIVATIONS)}
    out.add(len(network.layers))
    return sorted(out)


def lp_tighten(network: Network, lower, upper, initial: Optional[LayerBounds] = None,
               layers: Optional[Sequence[int]] = None, backend: str = "highs",
               time_limit_per_lp: Optional[float] = None, tol: float = 1e-7,
               only_unstable: bool = True) -> LayerBounds:
    """Tighten bounds of the value indices ``layers`` (default :func:`default_targets`) by LP.

    ``lower``/``upper``: the input box (one box; batches raise :class:`BoxError`). ``initial``:
    bounds to start from (e.g. CROWN), intersected with interval bounds. ``only_unstable``: for
    ReLU pre-activations, optimise only neurons that are unstable (``l < 0 < u``) — the ones whose
    relaxation the bounds change; sigmoid/tanh inputs and the output are always all optimised.
    ``time_limit_per_lp``: an LP that hits it keeps its old bound. Returns bounds with
    ``method='lp'`` that are never looser than ``initial`` or interval bounds.
    """
    lo, hi = check_box(lower, upper, network.n_inputs)
    if lo.ndim != 1:
        raise BoxError("lp_tighten works on one box; call it per box of a batch")
    ib = interval_bounds(network, lo, hi)
    L = [l.copy() for l in ib.lower]
    U = [u.copy() for u in ib.upper]
    if initial is not None:
        if initial.batched:
            raise BoxError("lp_tighten: initial bounds are a batch; pass initial.pick(b)")
        if len(initial.lower) != len(L):
            raise BoxError(f"initial bounds have {len(initial.lower)} values, the network has {len(L)}")
        for i in range(len(L)):
            L[i] = np.maximum(L[i], initial.lower[i])
            U[i] = np.minimum(U[i], initial.upper[i])
        # re-propagate so that later values profit from tighter initial bounds
        pb = propagate(network, L[:1], U[:1])
        for i in range(1, len(L)):
            L[i] = np.maximum(L[i], pb.lower[i])
            U[i] = np.minimum(U[i], pb.upper[i])
    n_layers = len(network.layers)
    targets = default_targets(network) if layers is None else sorted({int(i) for i in layers})
    for i in targets:
        if not 1 <= i <= n_layers:
            raise ValueError(f"lp_tighten: value index {i} out of range 1..{n_layers}")

    prog = Program("lp_tighten")
    be = None
    vars_done = prog.add_vars(network.n_inputs, L[0], U[0], name="v0")
    done = 0
    n_lp = 0
    for i in targets:
        sub = Network(network.layers[done:i], (network.sizes[done],))
        enc = encode_network(prog, sub, LayerBounds(L[done:i + 1], U[done:i + 1]), input_vars=vars_done,
                             relu="triangle", name=f"lp{done}")
        vv = enc.value_vars[-1]
        vars_done, done = vv, i
        if be is None:
            # warm re-solves of one LP: HiGHS' presolve would discard the basis every time
            opts = {"presolve": False} if backend.partition(":")[0] == "highs" else {}
            be = make_backend(prog, backend, **opts)
        nxt = network.layers[i] if i < n_layers else None
        newL, newU = L[i].copy(), U[i].copy()
        exact = i == 1 and isinstance(network.layers[0], Affine)   # interval is exact: skip
        if exact:
            cand = np.zeros(0, dtype=np.int64)
        elif only_unstable and isinstance(nxt, ReLU):
            cand = np.flatnonzero((newL < 0) & (newU > 0))
        else:
            cand = np.arange(vv.shape[0])
        for j in cand:
            if newL[j] == newU[j]:
                continue
            # max first: an inactive ReLU (u <= 0) needs no lower bound
            for sense in ("max", "min"):
                if sense == "min" and isinstance(nxt, ReLU) and newU[j] <= 0:
                    continue
                prog.set_objective([vv[j]], [1.0], sense)
                sol = be.solve(time_limit=time_limit_per_lp)
                n_lp += 1
                if sol.status is not Status.OPTIMAL or sol.objective is None:
                    log.debug("lp_tighten: value %d neuron %d %s: %s", i, j, sense, sol.status)
                    continue
                val = sol.bound if sol.bound is not None else sol.objective
                slack = tol * (1.0 + abs(val))
                if sense == "max":
                    newU[j] = min(newU[j], val + slack)
                else:
                    newL[j] = max(newL[j], val - slack)
        newL = np.minimum(newL, newU)
        L[i], U[i] = newL, newU
        prog.set_col_bounds(vv, newL, newU)
        if i < n_layers:
            pb = propagate(network, L[:i + 1], U[:i + 1], start=i)
            for k in range(i + 1, n_layers + 1):
                L[k] = np.maximum(L[k], pb.lower[k])
                U[k] = np.minimum(U[k], pb.upper[k])
                L[k] = np.minimum(L[k], U[k])
    log.debug("lp_tighten: %d LPs", n_lp)
    prog.set_objective([], [], "min")
    return LayerBounds(L, U, "lp")


__all__ = ["lp_tighten", "default_targets"]
