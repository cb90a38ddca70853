"""CROWN bounds through auto_LiRPA — with :mod:`.lirpa_load`, the ONLY modules of cegarnn that
import auto_LiRPA.

auto_LiRPA 0.3 is imported through :func:`.lirpa_load.load_auto_lirpa`, which patches it for
today's torch/NumPy (and one soundness and one alpha-CROWN bug; see that module).

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
import logging
import sys
import threading
import warnings
import weakref

import numpy as np

from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh
from .box import BoxError, LayerBounds, check_box
from .interval import _abs, activation_interval, affine_interval, interval_bounds, propagate
from .lirpa_load import _PATCHES_APPLIED, FAR_SLACK, LirpaUnavailable, load_auto_lirpa  # noqa: F401 - re-exported
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
#: Rough memory budget (bytes) for one auto_LiRPA call; larger batches are split into chunks.
MEMORY_BUDGET = 128 * 2**20

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
        # a call that raised inside alpha-CROWN's optimisation leaves the activations in the 'opt'
        # stage with that call's alphas: every later call (plain CROWN included) would then use
        # them, so start each call, and leave it, with the optimisation stage cleared
        self._end_optimisation()
        try:
            with ctx, warnings.catch_warnings(), _recursion_room(len(self.network.layers)), \
                    _default_dtype(self._dtype):
                warnings.simplefilter("ignore")
                lb, ub = self.module.compute_bounds(x=(x,), method=method)
        finally:
            self._end_optimisation()
        out = {len(self.network.layers): (lb, ub)}
        for i, node in enumerate(self._nodes[:-1]):
            l, u = getattr(node, "lower", None), getattr(node, "upper", None)
            if l is not None and u is not None:
                out[i + 1] = (l, u)
        return {k: (l.detach().double().numpy().reshape(len(lo), -1),
                    u.detach().double().numpy().reshape(len(lo), -1)) for k, (l, u) in out.items()}

    def _end_optimisation(self) -> None:
        """Put every optimisable activation back in plain-CROWN mode (auto_LiRPA's ``opt_end``)."""
        for node in getattr(self.module, "optimizable_activations", ()):
            node.opt_end()

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
