"""CROWN bounds through auto_LiRPA — the ONLY module of cegarnn that imports auto_LiRPA.

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
  of ``f``): sound for any bounds, and as tight as possible for a constant.

auto_LiRPA also calls ``logging.basicConfig`` and ``warnings.simplefilter('once')`` when imported;
both global side effects are undone.

:class:`CrownBounder` builds the ``BoundedModule`` of a network once (float64 by default, see
``DTYPE``; float32 on request — auto_LiRPA's
sigmoid relaxation fails on float64) and bounds one box or a batch of boxes per call. CROWN
gives the pre-activation values and the output; every other value is filled by interval
propagation, and every CROWN bound is widened by ``rtol*(|b| + scale) + atol`` (``scale``: the
magnitude ``|W| max(|l|,|u|) + |b|`` of the terms the value sums, see :func:`widen`) so that float32
rounding cannot make it unsound, then intersected with the interval bound. If
auto_LiRPA is unavailable or fails on a model, the interval bounds are returned instead
(``method='interval'``) with a warning on the ``cegarnn.bounds`` logger.

Sound: yes (CROWN is sound; the float32 error is covered by the widening). Complete: no.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import sys
import threading
import warnings
import weakref

import numpy as np

from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh
from .box import BoxError, LayerBounds, check_box
from .interval import _abs, activation_interval, affine_interval, interval_bounds, propagate
from .rounding import activation_error, affine_error

log = logging.getLogger("cegarnn.bounds")

#: Relative and absolute widening applied to every CROWN-derived bound.
RTOL = 1e-5
ATOL = 1e-6
#: Arithmetic CROWN runs in. float64 (auto_LiRPA builds its sigmoid tables in the default dtype,
#: which is set while the module is built and used): the rigorous float32 error bound of
#: :mod:`.rounding` grew to 37 on the output of the 6x200 ERAN sigmoid network (it multiplies by
#: |W| at every layer), which no proof survives, while the float64 one is ~1e-12. Measured cost:
#: 1.7x the float32 time for a batch of 64 demo boxes.
DTYPE = "float64"
#: Outward slack of the constant sigmoid/tanh lines used beyond auto_LiRPA's ±500 limit.
FAR_SLACK = 1e-6
#: Rough memory budget (bytes) for one auto_LiRPA call; larger batches are split into chunks.
MEMORY_BUDGET = 128 * 2**20

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


@contextlib.contextmanager
def _recursion_room(n_layers: int):
    """auto_LiRPA walks its graph recursively; give deep networks room, then restore the limit."""
    old = sys.getrecursionlimit()
    need = 1000 + 20 * n_layers
    if need > old:
        sys.setrecursionlimit(need)
    try:
        yield
    finally:
        if need > old:
            sys.setrecursionlimit(old)


# --------------------------------------------------------------------------- bounder
_METHODS = {"crown": "CROWN", "crown-ibp": "CROWN-IBP", "alpha-crown": "alpha-CROWN"}


def _normalize_method(method: str) -> str:
    key = str(method).strip().lower()
    if key not in _METHODS:
        raise ValueError(f"unknown auto_LiRPA method {method!r}; choose one of {sorted(_METHODS.values())}")
    return _METHODS[key]


def widen(lower: np.ndarray, upper: np.ndarray, scale=0.0, rtol: float = RTOL, atol: float = ATOL):
    """``[l - tol(l), u + tol(u)]`` with ``tol(b) = rtol*(|b| + scale) + atol``.

    ``scale`` is the magnitude of the terms summed to get the value (``|W| max(|l|,|u|) + |b|`` of
    the layer's input), so that float32 cancellation is covered too, not only rounding of ``b``.
    """
    return (lower - (rtol * (np.abs(lower) + scale) + atol),
            upper + (rtol * (np.abs(upper) + scale) + atol))


@contextlib.contextmanager
def _default_dtype(dtype):
    """torch's default dtype set to ``dtype`` (auto_LiRPA creates tensors in it), then restored."""
    import torch
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _torch_model(network: Network, dtype):
    """``nn.Sequential`` of the network in ``dtype`` without the leading Flatten (inputs are flat)."""
    from torch import nn

    from ..network.torch_io import to_torch
    seq = to_torch(network, dtype=dtype)
    return nn.Sequential(*list(seq)[1:]).eval()


class CrownBounder:
    """auto_LiRPA's ``BoundedModule`` of one network, built once and reused for many boxes.

    ``CrownBounder(network).bounds(lower, upper)`` returns :class:`LayerBounds` on every value
    index for a box ``(n,)`` or a batch of boxes ``(B, n)``. Construction raises (e.g.
    :class:`LirpaUnavailable`) if auto_LiRPA cannot handle the network; :func:`crown_bounds`
    turns that into an interval fallback.

    ``sparse_intermediate_bounds=False`` (default) asks CROWN for every pre-activation neuron, so
    a box gets the same bounds alone or in a batch; ``True`` lets auto_LiRPA keep the interval
    bounds of ReLU inputs that interval arithmetic already shows stable (faster, looser).
    """

    def __init__(self, network: Network, *, sparse_intermediate_bounds: bool = False,
                 memory_budget: int = MEMORY_BUDGET, dtype: str = DTYPE):
        lirpa = load_auto_lirpa()
        import torch

        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.precision = dtype
        self._dtype = getattr(torch, dtype)
        # a copy sharing the layers: the cache maps a network weakly to its bounder, which must
        # therefore not keep that network alive
        self.network = Network(network.layers, network.input_shape, name=network.name)
        self.memory_budget = int(memory_budget)
        self._torch = torch
        self._lirpa = lirpa
        self._lock = threading.Lock()
        self._warned: set = set()
        model = _torch_model(network, self._dtype)
        dummy = torch.zeros(1, network.n_inputs, dtype=self._dtype)
        opts = {"sparse_intermediate_bounds": bool(sparse_intermediate_bounds)}
        with warnings.catch_warnings(), _recursion_room(len(network.layers)), _default_dtype(self._dtype):
            warnings.simplefilter("ignore")  # tracer / deprecation chatter from torch.jit
            self.module = lirpa.BoundedModule(model, dummy, bound_opts=opts, device="cpu", verbose=False)
        self._nodes = self._layer_nodes()
        # per-box float count of the largest linear-coefficient tensor CROWN creates
        sizes = network.sizes
        crowned = [i for i in network.activation_indices() if i > 0] + [len(network.layers)]
        self._per_box = max(sizes[p] * max(sizes[:p]) for p in crowned) + sum(sizes)

    def _layer_nodes(self) -> list:
        """The bound node computing each layer: walk back from the output through first inputs."""
        from auto_LiRPA.bound_ops import BoundInput, BoundLinear, BoundRelu, BoundSigmoid, BoundTanh

        kinds = {Affine: BoundLinear, ReLU: BoundRelu, Sigmoid: BoundSigmoid, Tanh: BoundTanh}
        chain = []
        node = self.module.final_node()
        while not isinstance(node, BoundInput):
            chain.append(node)
            if not node.inputs:
                raise RuntimeError(f"auto_LiRPA graph node {node} has no input")
            node = node.inputs[0]
        chain.reverse()
        layers = self.network.layers
        if len(chain) != len(layers) or not all(
                type(n) is kinds[type(l)] for n, l in zip(chain, layers)):
            raise RuntimeError(
                "auto_LiRPA graph does not match the network layers: "
                f"{[type(n).__name__ for n in chain]} vs {[type(l).__name__ for l in layers]}")
        return chain

    # ------------------------------------------------------------------ bounding
    def _chunk_size(self) -> int:
        # ~4 float32 tensors of the largest coefficient size live at once
        return max(1, int(self.memory_budget // (16 * self._per_box)))

    def _crown_chunk(self, lo: np.ndarray, hi: np.ndarray, method: str):
        """Raw CROWN bounds {value index: (lower, upper)} (float64 arrays) for a batch."""
        torch, lirpa = self._torch, self._lirpa
        xl = torch.as_tensor(lo, dtype=self._dtype)
        xu = torch.as_tensor(hi, dtype=self._dtype)
        # rounding the box to float32 could shrink it: round outward (a no-op in float64)
        xl = torch.where(xl.double() > torch.as_tensor(lo), torch.nextafter(xl, torch.tensor(-np.inf)), xl)
        xu = torch.where(xu.double() < torch.as_tensor(hi), torch.nextafter(xu, torch.tensor(np.inf)), xu)
        ptb = lirpa.PerturbationLpNorm(norm=np.inf, x_L=xl, x_U=xu)
        x = lirpa.BoundedTensor((xl + xu) / 2, ptb)
        optimized = method == "alpha-CROWN"
        ctx = torch.enable_grad() if optimized else torch.no_grad()
        with ctx, warnings.catch_warnings(), _recursion_room(len(self.network.layers)), \
                _default_dtype(self._dtype):
            warnings.simplefilter("ignore")
            lb, ub = self.module.compute_bounds(x=(x,), method=method)
        out = {len(self.network.layers): (lb, ub)}
        for i, node in enumerate(self._nodes[:-1]):
            l, u = getattr(node, "lower", None), getattr(node, "upper", None)
            if l is not None and u is not None:
                out[i + 1] = (l, u)
        return {k: (l.detach().double().numpy().reshape(len(lo), -1),
                    u.detach().double().numpy().reshape(len(lo), -1)) for k, (l, u) in out.items()}

    def raw_bounds(self, lo: np.ndarray, hi: np.ndarray, method: str = "CROWN") -> dict:
        """Unwidened CROWN bounds {value index: (lower, upper)} of shape (B, size) for boxes (B, n)."""
        method = _normalize_method(method)
        step = self._chunk_size()
        parts = []
        with self._lock:
            for s in range(0, lo.shape[0], step):
                parts.append(self._crown_chunk(lo[s:s + step], hi[s:s + step], method))
        keys = set(parts[0]).intersection(*parts[1:])
        return {k: (np.concatenate([p[k][0] for p in parts]), np.concatenate([p[k][1] for p in parts]))
                for k in sorted(keys)}

    def bounds(self, lower, upper, method: str = "CROWN") -> LayerBounds:
        """Sound bounds on every value for a box (n,) or a batch (B, n): CROWN (widened) on the
        pre-activations and the output, interval propagation elsewhere, never looser than interval."""
        lo, hi = check_box(lower, upper, self.network.n_inputs)
        single = lo.ndim == 1
        lo2, hi2 = np.atleast_2d(lo), np.atleast_2d(hi)
        raw = self.raw_bounds(lo2, hi2, method) if lo2.shape[0] else {}
        result = combine_with_interval(self.network, lo2, hi2, raw, _normalize_method(method).lower(),
                                       precision=self.precision)
        return result.pick(0) if single else result


def combine_with_interval(network: Network, lo: np.ndarray, hi: np.ndarray, raw: dict,
                          method: str, precision: str = "float32") -> LayerBounds:
    """Widen the CROWN bounds ``raw`` {value index: (l, u)}, computed in ``precision``, and merge them with interval
    propagation: the result is sound, covers every value index, and is never looser than plain
    interval bounds (it is intersected with them at every index).

    Widening of a CROWN bound on value k: ``rtol*(|b| + scale) + atol`` (see :func:`widen`) plus
    ``e_k``, the rigorous bound of :mod:`.rounding` on how far the copy CROWN bounds (weights
    rounded to ``precision``, sums in it) can be from the float64 IR at value k, carried
    layer by layer from the already merged bounds of the earlier values: weight rounding times the
    previous magnitude, the propagated error times ``|W|``, the activations' slopes, and float32
    accumulation (``γ_n`` times the summed magnitudes). So a network whose float64 weights are
    not float32-exact, or whose layers cancel, is not proved from a float32 artefact."""
    ibp = propagate(network, [lo], [hi])
    lower, upper = [lo], [hi]
    err = np.zeros_like(lo)
    for i, layer in enumerate(network.layers):
        pl, pu = lower[i], upper[i]
        if isinstance(layer, Affine):
            il, iu = affine_interval(layer, pl, pu)
            err = affine_error(layer, err, np.maximum(np.abs(pl), np.abs(pu)), precision, include_folded=False)
        else:
            il, iu = activation_interval(layer, pl, pu)
            err = activation_error(layer, err, pl, pu, precision)
        il, iu = np.maximum(il, ibp.lower[i + 1]), np.minimum(iu, ibp.upper[i + 1])
        if i + 1 in raw:
            mag = np.maximum(np.abs(pl), np.abs(pu))
            if isinstance(layer, Affine):
                scale = np.asarray(_abs(layer.W) @ mag.T).T + np.abs(layer.b)
            else:
                scale = mag
            cl, cu = widen(raw[i + 1][0], raw[i + 1][1], scale)
            cl, cu = cl - err, cu + err
            # fmax/fmin ignore NaN coming from a failed relaxation
            nl, nu = np.fmax(cl, il), np.fmin(cu, iu)
            bad = nl > nu
            if np.any(bad):  # disjoint from the interval bounds: CROWN was wrong here
                log.warning("auto_LiRPA bounds on value %d contradict interval bounds at %d entries; "
                            "using interval bounds there", i + 1, int(bad.sum()))
                nl, nu = np.where(bad, il, nl), np.where(bad, iu, nu)
            il, iu = nl, nu
        lower.append(il)
        upper.append(iu)
    return LayerBounds(lower, upper, method)


# --------------------------------------------------------------------------- cached entry point
_bounders: "weakref.WeakKeyDictionary[Network, object]" = weakref.WeakKeyDictionary()
_bounders_lock = threading.Lock()


class _Failed:
    """Cache marker: building the BoundedModule failed for this network. Keeps only the message
    (an exception's traceback would keep the network alive through its frames)."""

    def __init__(self, error: BaseException):
        self.message = f"{type(error).__name__}: {error}"
        self.warned = False


def get_bounder(network: Network):
    """The cached :class:`CrownBounder` of ``network`` (built on first use); raises if auto_LiRPA
    cannot handle it (the failure is cached too, so it is attempted once per network)."""
    with _bounders_lock:
        b = _bounders.get(network)
        if b is None:
            try:
                b = CrownBounder(network)
            except Exception as exc:  # noqa: BLE001 - any failure means "fall back"
                _bounders[network] = _Failed(exc)
                raise
            _bounders[network] = b
    if isinstance(b, _Failed):
        raise RuntimeError(f"building auto_LiRPA's model failed before: {b.message}")
    return b


def clear_cache() -> None:
    """Forget every cached BoundedModule (e.g. after monkeypatching in tests)."""
    with _bounders_lock:
        _bounders.clear()


def require_finite(lo: np.ndarray, hi: np.ndarray) -> None:
    """Raise :class:`BoxError` for an unbounded box (interval arithmetic would return NaN)."""
    bad = ~(np.isfinite(lo) & np.isfinite(hi))
    if np.any(bad):
        j = tuple(int(t) for t in np.argwhere(bad)[0])
        raise BoxError(f"box bounds must be finite, got [{lo[j]}, {hi[j]}] at index {j}")


def crown_bounds(network: Network, lower, upper, method: str = "CROWN") -> LayerBounds:
    """CROWN bounds (auto_LiRPA, float64 by default, widened) on every value of ``network.forward_all`` for
    one box ``(n,)`` or a batch ``(B, n)``; never looser than interval bounds.

    Falls back to interval bounds (``method='interval'``, warning on logger ``cegarnn.bounds``) if
    auto_LiRPA is unavailable or fails on this network or box (a failing 'alpha-CROWN' or
    'CROWN-IBP' is first retried as plain CROWN). Raises :class:`BoxError` for a malformed or
    unbounded box. ``method``: 'CROWN' (default), 'CROWN-IBP' or 'alpha-CROWN' (slower).
    """
    _normalize_method(method)
    lo, hi = check_box(lower, upper, network.n_inputs)
    require_finite(lo, hi)
    try:
        bounder = get_bounder(network)
    except Exception as exc:  # noqa: BLE001 - any failure means "fall back"
        with _bounders_lock:
            failed = _bounders.get(network)
            first = not getattr(failed, "warned", False)
            if failed is not None:
                failed.warned = True
        _warn_fallback(first, "could not be built for", network, method, exc)
        return interval_bounds(network, lo, hi)
    # a failing variant (alpha-CROWN's optimisation is fragile in 0.3) falls back to plain CROWN
    variants = [_normalize_method(method)] + ([] if _normalize_method(method) == "CROWN" else ["CROWN"])
    for k, variant in enumerate(variants):
        try:
            return bounder.bounds(lo, hi, variant)
        except Exception as exc:  # noqa: BLE001 - any failure means "fall back"
            key = (variant, type(exc).__name__)
            first = key not in bounder._warned
            bounder._warned.add(key)
            _warn_fallback(first, "failed on", network, variant, exc,
                           "plain CROWN" if k + 1 < len(variants) else "interval bounds")
    return interval_bounds(network, lo, hi)


def _warn_fallback(first: bool, what: str, network: Network, method: str, exc: BaseException,
                   instead: str = "interval bounds") -> None:
    # warn once per network and kind of failure; later repeats go to debug (CEGAR calls this a lot)
    (log.warning if first else log.debug)(
        "auto_LiRPA %s %s network %r (%s: %s); using %s instead",
        method, what, network.name or "<unnamed>", type(exc).__name__, exc, instead)
