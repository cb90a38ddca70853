"""Sound bounds on every value of a network over an input box (or a batch of boxes).

One entry point, :func:`compute_bounds`, dispatches to the providers:

* ``'interval'`` — interval bound propagation (:mod:`.interval`): float64, always available, loosest;
* ``'crown'`` — auto_LiRPA's CROWN (:mod:`.lirpa`) on the pre-activations and the output, interval
  propagation elsewhere, never looser than ``'interval'``; falls back to interval bounds (with a
  warning, ``LayerBounds.method == 'interval'``) if auto_LiRPA fails;
* ``'ir-crown'`` / ``'ir-alpha-crown'`` — our own CROWN / alpha-CROWN on the IR
  (:mod:`.crown`): batched, numpy for plain CROWN (no torch import), torch for alpha-CROWN; also
  takes per-subproblem neuron splits through :class:`.crown.BatchBounder` directly;
* ``'lp'`` — LP tightening (:mod:`cegarnn.lp_tighten`) starting from the CROWN bounds.

This package imports only :mod:`cegarnn.network` (and, on demand, torch/auto_LiRPA), so the
encoder can use :class:`LayerBounds` and interval bounds without a cycle. LP tightening needs the
encoder and a solver, so it lives above all three in :mod:`cegarnn.lp_tighten`;
:func:`compute_bounds` imports it only for ``method='lp'``.

All return :class:`LayerBounds` with the index convention of ``Network.forward_all``:
``lower[i] <= v[i] <= upper[i]`` with ``v[0]`` the input.
"""
from __future__ import annotations

import numpy as np

from .box import BoxError, LayerBounds, check_box
from .interval import interval_bounds
from .lirpa import CrownBounder, crown_bounds, require_finite

METHODS = ("interval", "crown", "alpha-crown", "lp")
#: our own CROWN / alpha-CROWN on the IR (:mod:`.crown`), also accepted by :func:`compute_bounds`
IR_METHODS = ("ir-crown", "ir-alpha-crown")

__all__ = ["IR_METHODS", "METHODS", "BoxError", "CrownBounder", "LayerBounds", "check_box", "compute_bounds",
           "crown_bounds", "interval_bounds"]


def compute_bounds(network, lower, upper, method: str = "crown", **options) -> LayerBounds:
    """Bounds on every value index of ``network`` for the box ``[lower, upper]`` (shape ``(n,)``)
    or a batch of boxes (shape ``(B, n)``).

    ``method``: 'interval', 'crown', 'alpha-crown' (CROWN with optimised relaxation slopes: slower,
    much tighter on deep sigmoid networks) or 'lp'. Options:

    * 'crown': ``variant`` — auto_LiRPA method, 'CROWN' (default), 'CROWN-IBP' or 'alpha-CROWN';
    * 'ir-crown' / 'ir-alpha-crown': ``intermediate`` ('all' or 'unstable'), ``backend`` ('numpy' or
      'torch'), ``dtype``, ``device`` (see :class:`.crown.BatchBounder`), and for alpha
      ``iterations`` and ``lr``;
    * 'lp': ``crown_variant`` (as ``variant`` above, for the initial bounds); every other option is
      passed to :func:`cegarnn.lp_tighten.lp_tighten` (a batch is tightened box by box).

    Raises :class:`BoxError` for a malformed box (wrong size, NaN, infinite, lower > upper), ``ValueError``
    for an unknown method and ``TypeError`` for options the method does not take.
    """
    if not isinstance(method, str) or method.strip().lower() not in METHODS + IR_METHODS:
        raise ValueError(f"unknown bounds method {method!r}; choose one of {', '.join(METHODS + IR_METHODS)}")
    key = method.strip().lower()
    lo, hi = check_box(lower, upper, network.n_inputs)
    require_finite(lo, hi)
    if key == "interval":
        _no_options(key, options)
        return interval_bounds(network, lo, hi)
    if key in ("crown", "alpha-crown"):
        variant = options.pop("variant", "CROWN" if key == "crown" else "alpha-CROWN")
        _no_options(key, options)
        return crown_bounds(network, lo, hi, method=variant)
    if key in ("ir-crown", "ir-alpha-crown"):
        from .crown import BatchBounder
        build = {k: options.pop(k) for k in ("intermediate", "backend", "dtype", "device") if k in options}
        run = {k: options.pop(k) for k in ("iterations", "lr") if k in options and key == "ir-alpha-crown"}
        _no_options(key, options)
        bounds, _ = BatchBounder(network, **build).bounds(lo, hi, alpha=key == "ir-alpha-crown", **run)
        return bounds
    # key == "lp": LP tightening works on one box; a batch is tightened box by box
    variant = options.pop("crown_variant", "CROWN")
    initial = crown_bounds(network, lo, hi, method=variant)
    # the one call upward, made only for this method: LP tightening needs the encoder and a solver
    from ..lp_tighten import lp_tighten
    if lo.ndim == 1:
        return lp_tighten(network, lo, hi, initial=initial, **options)
    per_box = [lp_tighten(network, lo[b], hi[b], initial=initial.pick(b), **options)
               for b in range(lo.shape[0])]
    return LayerBounds([np.stack([r.lower[i] for r in per_box]) for i in range(len(initial.lower))],
                       [np.stack([r.upper[i] for r in per_box]) for i in range(len(initial.upper))],
                       per_box[0].method if per_box else "lp")


def _no_options(method: str, options: dict) -> None:
    if options:
        raise TypeError(f"bounds method {method!r} takes no option(s) {', '.join(sorted(options))}")
