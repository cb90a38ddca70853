"""Verification problems: a network over *free* inputs, a box on them, an unsafe output region,
and the original model(s) against which every counterexample is confirmed.

Builders:
- :func:`box_problem` — any network, input box, unsafe region (VNN-LIB semantics);
- :func:`classification_problem` — L-infinity ball around ``x`` clipped to the input domain;
- :func:`generative_problem` — ``C(G(x, z))`` keeps label ``y`` for every ``z`` in a latent box,
  the box given directly or as ``mu ± delta·sigma`` from a prior network ``x -> (mu, log sigma^2)``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..bounds.box import BoxError, check_box
from ..network.ir import Network, NetworkError, compose
from .property import SpecError, UnsafeRegion, classification_unsafe

Reference = Callable[[np.ndarray], np.ndarray]


@dataclass(eq=False)
class Problem:
    """``network`` maps free inputs (``lower <= z <= upper``) to outputs; unsafe outputs ``unsafe``.

    ``reference(z_batch) -> outputs`` evaluates the *original* model(s) (torch/ONNX) on free
    inputs; ``full_input(z) -> x_full`` embeds free inputs into the original model's input (for
    reports and VNN-LIB answers). ``meta`` holds JSON-friendly facts (label, latent size, ...).

    ``strict_lower`` / ``strict_upper`` (optional boolean masks over the free inputs): the bound
    is strict (``lower < z`` / ``z < upper``, VNN-LIB ``<``/``>``). The box stays closed for
    bounds and proofs (conservative); only a counterexample must lie strictly inside such a bound.

    ``precision``: the arithmetic the model is executed in, which a proof must cover —
    'float32' (default: ONNX under onnxruntime, float32 torch) or 'float64' (a float64 torch
    model, or the IR itself); see :mod:`cegarnn.bounds.rounding`. ``None``: proofs cover only the
    float64 IR in real arithmetic (no padding for the executed model — the reading of most
    published verifiers; say so when you report such a result).

    ``rotation`` (an :class:`~cegarnn.specs.rotation.InputRotation`, made only by
    :func:`~cegarnn.specs.rotation.rotated_problem`): the free inputs are rotated coordinates of
    another problem's; proofs are padded for the difference, counterexamples confirmed there.
    """

    network: Network
    lower: np.ndarray
    upper: np.ndarray
    unsafe: UnsafeRegion
    reference: Optional[Reference] = None
    full_input: Optional[Callable[[np.ndarray], np.ndarray]] = None
    name: str = ""
    meta: dict = field(default_factory=dict)
    strict_lower: Optional[np.ndarray] = None
    strict_upper: Optional[np.ndarray] = None
    precision: Optional[str] = "float32"
    rotation: Optional[object] = None

    def __post_init__(self):
        if self.precision not in ("float32", "float64", None):
            raise SpecError(f"precision must be 'float32', 'float64' or None, got {self.precision!r}")
        self.lower, self.upper = check_box(self.lower, self.upper, self.network.n_inputs)
        if self.lower.ndim != 1:
            raise BoxError("a problem's box must be one box (1-D lower/upper)")
        for attr in ("strict_lower", "strict_upper"):
            m = getattr(self, attr)
            if m is None:
                continue
            m = np.asarray(m)
            if m.dtype != np.bool_ or m.shape != self.lower.shape:
                raise SpecError(f"{attr} must be a boolean mask of shape {self.lower.shape}, "
                                f"got {m.dtype} {m.shape}")
            if np.any(m & (self.lower == self.upper)):
                i = int(np.flatnonzero(m & (self.lower == self.upper))[0])
                raise SpecError(f"empty input region: free input {i} has a strict bound at "
                                f"lower == upper == {self.lower[i]!r}")
            setattr(self, attr, m.copy() if m.any() else None)
        if self.unsafe.n_outputs != self.network.n_outputs:
            raise SpecError(f"unsafe region is over {self.unsafe.n_outputs} outputs, "
                            f"network has {self.network.n_outputs}")

    @property
    def n_free(self) -> int:
        return self.network.n_inputs


def box_problem(network: Network, lower, upper, unsafe: UnsafeRegion, reference: Optional[Reference] = None,
                name: str = "") -> Problem:
    return Problem(network, lower, upper, unsafe, reference=reference, name=name)


def classification_problem(network: Network, x, label: int, eps: float, clip=(0.0, 1.0),
                           reference: Optional[Reference] = None, name: str = "") -> Problem:
    """L-infinity robustness of ``label`` in the ball ``|x' - x| <= eps`` intersected with ``clip``."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.shape[0] != network.n_inputs:
        raise SpecError(f"image has {x.shape[0]} values, network has {network.n_inputs} inputs")
    if not eps >= 0:
        raise SpecError(f"eps must be >= 0, got {eps}")
    lo, hi = x - eps, x + eps
    if clip is not None:
        lo, hi = np.clip(lo, *clip), np.clip(hi, *clip)
    from ..network.reference import check_onnx_problem      # IR vs onnxruntime when the reference is ONNX
    return check_onnx_problem(Problem(network, lo, hi, classification_unsafe(network.n_outputs, label),
                   reference=reference, name=name, meta={"label": int(label), "eps": float(eps)}))


def _as_network(obj, input_shape=None) -> Network:
    if isinstance(obj, Network):
        return obj
    from ..network import load_network
    return load_network(obj, input_shape=input_shape)


def model_reference(obj):
    """A float64 callable for an nn.Module / ONNX path / Network (the 'original model')."""
    torch = sys.modules.get("torch")        # an nn.Module can only exist if torch is already imported
    if torch is not None and isinstance(obj, torch.nn.Module):
        mod = obj

        def run(a):
            with torch.no_grad():
                p = next(mod.parameters(), None)
                dt = p.dtype if p is not None else torch.float32
                return mod(torch.as_tensor(np.asarray(a), dtype=dt)).double().numpy()
        return run
    if isinstance(obj, (str,)) or hasattr(obj, "__fspath__"):
        from ..network.reference import onnx_reference
        return onnx_reference(str(obj))
    if isinstance(obj, Network):
        return obj.forward
    raise SpecError(f"cannot use {type(obj).__name__} as a model")


def generative_problem(generator, classifier, x, label: int, *, latent_lower=None, latent_upper=None,
                       prior=None, delta: Optional[float] = None, latent_dim: Optional[int] = None,
                       name: str = "", generator_reference=None, classifier_reference=None) -> Problem:
    """Does ``classifier(generator([x, z]))`` keep ``label`` for all ``z`` in the latent box?

    ``generator``: torch module, ONNX path or Network taking ``[x_flat, z]`` (image first, latent
    last), ending in a sigmoid. ``classifier``: idem on the generator's output; ``None`` if the
    generator is already an end-to-end network ``[x, z] -> logits`` (e.g. one concatenated ONNX).
    Latent box: ``latent_lower/upper``, or ``prior`` (``x -> (mu, log sigma^2)``, 2·k outputs) with
    radius ``delta``: ``mu ± delta·sigma``.
    The returned problem's network has only ``z`` as input (``x`` is folded into the first bias).
    ``generator_reference`` / ``classifier_reference``: float64 callables of the original models
    (default: ``model_reference`` of ``generator`` / ``classifier``); pass them when building many
    problems from the same loaded networks, so the original models are not reloaded each time.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if prior is not None:
        if delta is None or not delta >= 0:
            raise SpecError("a prior needs a radius delta >= 0 (the box is mu ± delta·sigma)")
        pnet = _as_network(prior)
        if pnet.n_inputs != x.shape[0]:
            raise SpecError(f"prior expects {pnet.n_inputs} inputs, image has {x.shape[0]}")
        out = pnet.forward(x)
        if out.shape[0] % 2:
            raise SpecError(f"prior must output (mu, log sigma^2) of equal sizes, got {out.shape[0]} outputs")
        k = out.shape[0] // 2
        mu, logvar = out[:k], out[k:]
        sigma = np.exp(0.5 * logvar)
        latent_lower, latent_upper = mu - delta * sigma, mu + delta * sigma
    if latent_lower is None or latent_upper is None:
        if latent_dim is None:
            raise SpecError("give the latent box (latent_lower/latent_upper) or a prior with delta")
        latent_lower = -np.ones(latent_dim) if latent_lower is None else latent_lower
        latent_upper = np.ones(latent_dim) if latent_upper is None else latent_upper
    zl, zu = check_box(latent_lower, latent_upper)
    k = zl.shape[0]
    gnet = _as_network(generator)
    if gnet.n_inputs != x.shape[0] + k:
        raise SpecError(f"generator expects {gnet.n_inputs} inputs but image ({x.shape[0]}) + latent box ({k}) "
                        f"give {x.shape[0] + k}")
    if classifier is not None:
        cnet = _as_network(classifier)
        if cnet.n_inputs != gnet.n_outputs:
            raise SpecError(f"generator outputs {gnet.n_outputs} values but classifier expects {cnet.n_inputs}")
        full = compose(gnet, cnet, name=name or "classifier∘generator")
    else:
        full = gnet
    mask = np.zeros(full.n_inputs, dtype=bool)
    mask[: x.shape[0]] = True
    try:
        net = full.fix_inputs(mask, x)
    except NetworkError as e:
        raise SpecError(f"cannot fold the image into the generator: {e}") from None

    gref = generator_reference if generator_reference is not None else model_reference(generator)
    cref = None
    if classifier is not None:
        cref = classifier_reference if classifier_reference is not None else model_reference(classifier)

    def full_input(z):
        z = np.asarray(z, dtype=np.float64)
        z2 = z.reshape(-1, k)
        return np.concatenate([np.broadcast_to(x, (z2.shape[0], x.shape[0])), z2], axis=1)

    def reference(z):
        g = gref(full_input(z))
        return cref(g) if cref is not None else g

    from ..network.reference import check_onnx_problem      # IR vs onnxruntime when a model is ONNX
    return check_onnx_problem(Problem(net, zl, zu, classification_unsafe(net.n_outputs, label), reference=reference,
                   full_input=full_input, name=name,
                   meta={"label": int(label), "latent_dim": int(k), "delta": None if delta is None else float(delta)}),
                   gref, cref)
