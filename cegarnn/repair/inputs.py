"""Checked inputs of the repair algorithms: the network, the layer, the inputs, the rows, and
the float32 slack of each row. Everything here raises :class:`RepairInputError` on bad input
before any work is done."""
from __future__ import annotations

import numpy as np

from ..bounds.rounding import output_padding
from ..network.ir import Affine, Network
from .check import float32_outputs
from .constraints import OutputConstraints, RepairInputError, ensure

def as_network(network) -> Network:
    """A :class:`Network` from an IR network, a torch module, or an ONNX/torch file path."""
    if isinstance(network, Network):
        return network
    from ..network import load_network
    try:
        return load_network(network)
    except Exception as exc:            # noqa: BLE001 - re-raised with the input named
        raise RepairInputError(f"cannot read the network {network!r}: {exc}") from exc


def affine_layer_index(network: Network, layer: int) -> int:
    """Index in ``network.layers`` of Affine layer number ``layer`` (0 = the first Affine layer,
    -1 = the last, as with a list), or :class:`RepairInputError`."""
    affine = [i for i, l in enumerate(network.layers) if isinstance(l, Affine)]
    try:
        k = int(layer)
    except (TypeError, ValueError):
        raise RepairInputError(f"layer must be an integer, got {layer!r}") from None
    if not -len(affine) <= k < len(affine):
        raise RepairInputError(f"layer {layer} out of range: the network has {len(affine)} Affine layers "
                               f"(0..{len(affine) - 1}, or -1 for the last)")
    return affine[k]


def as_inputs(network: Network, inputs, what: str = "inputs") -> np.ndarray:
    """``inputs`` as a finite float64 (N, n_in) array (each input flat or in ``input_shape``)."""
    X = np.asarray(inputs, dtype=np.float64)
    if X.size == 0:
        raise RepairInputError(f"{what}: the set of inputs is empty: nothing to repair")
    shape = tuple(network.input_shape)
    if X.shape[1:] == shape or (X.ndim == 2 and X.shape[1] == network.n_inputs):
        X = X.reshape(X.shape[0], -1)
    elif X.shape == shape or (X.ndim == 1 and X.size == network.n_inputs):
        X = X.reshape(1, -1)
    else:
        raise RepairInputError(f"{what} have shape {X.shape}; the network takes {shape} "
                               f"(or {network.n_inputs} flat values) per input")
    if not np.all(np.isfinite(X)):
        raise RepairInputError(f"{what} must be finite")
    return X


def as_constraints(network: Network, spec, n: int) -> OutputConstraints:
    cons = spec if isinstance(spec, OutputConstraints) else ensure(spec, network.n_outputs)
    if cons.n_inputs != n:
        raise RepairInputError(f"{n} inputs but constraints for {cons.n_inputs}")
    if cons.n_outputs != network.n_outputs:
        raise RepairInputError(f"the constraints have {cons.n_outputs} outputs, the network {network.n_outputs}")
    return cons


SLACK_MODES = ("measured", "rigorous")
#: default change box of a last-layer / phase-keeping change: this many times max(1, max |W|)
LARGE_BOUND = 1e3


def float32_slack(network: Network, X: np.ndarray, cons: OutputConstraints, factor: float = 2.0,
                  mode: str = "rigorous") -> np.ndarray:
    """(N, K) slack per row for float32 execution, summed over the outputs with ``|C|``:
    ``'rigorous'``: ``factor`` times a rigorous bound on ``|ŷ - y|`` per output at each input
    (``bounds.rounding.output_padding`` on the point); ``'measured'``: ``4 * factor`` times the
    difference of the network's float32 ONNX export and the IR there. Both at least 1e-7 times
    the size of the outputs (1e-6 when measured)."""
    vals = network.forward_all(X)
    if mode == "rigorous":
        pad = output_padding(network, np.eye(network.n_outputs), vals, vals)      # (N, n_out)
        floor_rel = 1e-7
    else:
        pad = 4.0 * np.abs(float32_outputs(network, X) - vals[-1])
        floor_rel = 1e-6
    floor = floor_rel * np.maximum(1.0, np.abs(vals[-1]).max(axis=1, keepdims=True))
    return factor * np.einsum("nkj,nj->nk", np.abs(cons.C), pad) + floor


__all__ = ["as_network", "affine_layer_index", "as_inputs", "as_constraints", "float32_slack", "SLACK_MODES",
           "LARGE_BOUND"]
