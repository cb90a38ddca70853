"""Importing auto_LiRPA for :mod:`.lirpa`.

auto_LiRPA 0.3 (the only PyPI release) predates torch 2.x and NumPy 2; :func:`load_auto_lirpa`
applies small compatibility patches *before* importing it, each only when the installed
torch/numpy needs it (see ``_PATCHES_APPLIED`` for the list actually applied):

* ``torch.onnx.symbolic_helper._set_opset_version`` is gone: provide it, setting the opset through
  ``torch.onnx._internal.torchscript_exporter._globals.GLOBALS.export_onnx_opset_version``;
* ``torch._C.Node`` is no longer subscriptable: ``node[k]`` becomes
  ``getattr(node, node.kindOf(k))(k)``;
* ``numpy.lib.arraysetops`` (removed in NumPy 2) is aliased to ``numpy``;
* ``BoundedModule._named_members`` gets torch 2.x's ``remove_duplicate`` keyword (without it,
  ``BoundedModule.parameters()`` raises, e.g. when an activation feeds another activation);
* **soundness**: ``BoundTanh.bound_relax_impl`` (inherited by ``BoundSigmoid``) clamps the
  pre-activation bounds to ``±x_limit`` (500) and builds its lines from the clamped interval, so for
  ``l < -500`` the upper line (a chord with positive slope) falls below the function left of -500
  (and the mirror image above +500). The patch keeps auto_LiRPA's lines where ``-500 <= l, u <= 500``
  and replaces them, for every neuron with a bound beyond the limit, by the constant lines
  ``f(l) - a <= f(x) <= f(u) + a`` built from the true bounds (``a`` = 1e-6 covers float32 rounding
  of ``f``): sound for any bounds, and as tight as possible for a constant;
* ``BoundRelu.init_opt_parameters`` keeps a sparse ``alpha_indices`` next to full-size alphas when
  more than 90 % (not all) of a layer's neurons are unstable (it clears it only when verbose), and
  alpha-CROWN then fails with "shape mismatch": the indices are dropped whenever the alphas are full-size.

auto_LiRPA also calls ``logging.basicConfig`` and ``warnings.simplefilter('once')`` when imported;
both global side effects are undone.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import sys
import threading
import warnings

import numpy as np

log = logging.getLogger("cegarnn.bounds")

#: Outward slack of the constant sigmoid/tanh lines used beyond auto_LiRPA's ±500 limit.
FAR_SLACK = 1e-6

_lock = threading.Lock()
_lirpa = None            # the imported auto_LiRPA module, once loaded
_lirpa_error = None      # the exception if importing failed
_PATCHES_APPLIED: list[str] = []


class LirpaUnavailable(RuntimeError):
    """auto_LiRPA cannot be imported (even with the compatibility patches)."""


# --------------------------------------------------------------------------- compatibility
def _patch_torch_and_numpy() -> None:
    import torch
    import torch.onnx

    # 1. torch.onnx.symbolic_helper._set_opset_version (removed in torch 2.x)
    try:
        import torch.onnx.symbolic_helper as sym_helper
    except ImportError:  # pragma: no cover - very new torch without the TorchScript exporter
        sym_helper = None
    if sym_helper is not None and not hasattr(sym_helper, "_set_opset_version"):
        globals_obj = None
        for modname in ("torch.onnx._internal.torchscript_exporter._globals", "torch.onnx._globals"):
            try:
                globals_obj = importlib.import_module(modname).GLOBALS
                break
            except (ImportError, AttributeError):
                continue
        if globals_obj is not None:
            def _set_opset_version(opset_version: int) -> None:
                globals_obj.export_onnx_opset_version = opset_version

            sym_helper._set_opset_version = _set_opset_version
            _PATCHES_APPLIED.append("torch.onnx.symbolic_helper._set_opset_version")

    # 2. torch._C.Node.__getitem__ (attribute access by subscript was removed)
    if not hasattr(torch._C.Node, "__getitem__"):
        def _node_getitem(node, key):
            return getattr(node, node.kindOf(key))(key)

        torch._C.Node.__getitem__ = _node_getitem
        _PATCHES_APPLIED.append("torch._C.Node.__getitem__")

    # 3. numpy.lib.arraysetops (removed in NumPy 2; auto_LiRPA imports `isin` from it)
    try:
        importlib.import_module("numpy.lib.arraysetops")
    except ImportError:
        sys.modules["numpy.lib.arraysetops"] = np
        _PATCHES_APPLIED.append("numpy.lib.arraysetops -> numpy")


def _patch_auto_lirpa(lirpa) -> None:
    # 4. BoundedModule overrides nn.Module._named_members with the pre-2.0 signature; torch 2.x's
    #    named_parameters() passes remove_duplicate=..., so .parameters() raised TypeError (hit by
    #    get_sparse_C when an activation feeds another activation).
    cls = lirpa.BoundedModule
    original = cls._named_members
    if "remove_duplicate" not in inspect.signature(original).parameters:
        def _named_members(self, get_members_fn, prefix="", recurse=True, remove_duplicate=True, **_):
            # the 0.3 implementation always removes duplicates (it keeps a memo set)
            return original(self, get_members_fn, prefix=prefix, recurse=recurse)

        cls._named_members = _named_members
        _PATCHES_APPLIED.append("auto_LiRPA.BoundedModule._named_members(remove_duplicate=...)")

    # 5. sigmoid/tanh lines built from bounds clamped at ±x_limit are unsound beyond it (see above)
    from auto_LiRPA.operators.activation import BoundTanh
    relax = BoundTanh.bound_relax_impl
    if not getattr(relax, "_cegarnn_far_patch", False):
        def bound_relax_impl(self, x, func, dfunc):
            relax(self, x, func, dfunc)
            limit = getattr(self, "x_limit", 500.0)
            far = (x.lower < -limit) | (x.upper > limit)
            if bool(far.any()):
                import torch
                zero = torch.zeros((), dtype=self.lw.dtype)
                self.lw = torch.where(far, zero, self.lw)
                self.uw = torch.where(far, zero, self.uw)
                self.lb = torch.where(far, func(x.lower).detach().to(self.lb.dtype) - FAR_SLACK, self.lb)
                self.ub = torch.where(far, func(x.upper).detach().to(self.ub.dtype) + FAR_SLACK, self.ub)

        bound_relax_impl._cegarnn_far_patch = True
        BoundTanh.bound_relax_impl = bound_relax_impl
        _PATCHES_APPLIED.append("auto_LiRPA BoundTanh/BoundSigmoid: constant lines beyond ±x_limit")

    # 6. alpha-CROWN on a ReLU layer with more than `minimum_sparsity` (90 %) but not all of its
    #    neurons unstable: BoundRelu.init_opt_parameters creates full-size alphas but resets
    #    `alpha_indices` (the unstable neurons) to None only when verbosity > 0, so the backward
    #    pass scatters the full alpha into the sparse index set and raises "shape mismatch: value
    #    tensor of shape [.., n] cannot be broadcast to indexing result of shape [.., k]" (k < n).
    #    Drop the indices whenever the alphas are full-size (what the verbose path does).
    from auto_LiRPA.operators.activation import BoundRelu
    init_params = BoundRelu.init_opt_parameters
    if not getattr(init_params, "_cegarnn_full_alpha_patch", False):
        def init_opt_parameters(self, start_nodes):
            init_params(self, start_nodes)
            if getattr(self, "alpha_indices", None) is not None and self.alpha:
                full = tuple(int(d) for d in self.shape)
                if all(tuple(a.shape[3:]) == full for a in self.alpha.values()):
                    self.alpha_indices = None

        init_opt_parameters._cegarnn_full_alpha_patch = True
        BoundRelu.init_opt_parameters = init_opt_parameters
        _PATCHES_APPLIED.append("auto_LiRPA BoundRelu: full-size alphas without sparse alpha_indices")


def load_auto_lirpa():
    """Import auto_LiRPA (patched for today's torch/NumPy); raises :class:`LirpaUnavailable`."""
    global _lirpa, _lirpa_error
    with _lock:
        if _lirpa is not None:
            return _lirpa
        if _lirpa_error is not None:
            raise LirpaUnavailable(f"auto_LiRPA is unavailable: {_lirpa_error}") from _lirpa_error
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        recursion_limit = sys.getrecursionlimit()
        try:
            _patch_torch_and_numpy()
            # record=True swallows torch's deprecation chatter and restores the filters that
            # auto_LiRPA changes (it calls warnings.simplefilter("once") on import)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module = importlib.import_module("auto_LiRPA")
            for w in caught:
                log.debug("warning while importing auto_LiRPA: %s", w.message)
            _patch_auto_lirpa(module)
            _lirpa = module
        except Exception as exc:  # ImportError, AttributeError from an incompatible torch, ...
            _lirpa_error = exc
            raise LirpaUnavailable(f"auto_LiRPA is unavailable: {exc!r}") from exc
        finally:
            # auto_LiRPA sets sys.setrecursionlimit(1000000) on import (see _recursion_room)
            sys.setrecursionlimit(recursion_limit)
            # auto_LiRPA's utils calls logging.basicConfig(stream=sys.stdout) on import
            for h in list(root.handlers):
                if h not in handlers:
                    root.removeHandler(h)
            root.setLevel(level)
        if _PATCHES_APPLIED:
            log.debug("auto_LiRPA loaded with compatibility patches: %s", ", ".join(_PATCHES_APPLIED))
        return _lirpa
