"""Conversion between the IR and torch modules.

``from_torch`` reads a (possibly nested) ``nn.Sequential`` of Linear, Conv1d/Conv2d, Flatten,
Unflatten, BatchNorm1d/2d, ReLU, Sigmoid, Tanh, Identity and Dropout modules; convolutions become
sparse ``Affine`` layers, batch norms use their running (eval-mode) statistics, and consecutive
affine layers are merged. ``to_torch`` goes the other way.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .conv import conv2d_matrix, same_padding
from .ir import Affine, Network, NetworkError, ReLU, Sigmoid, Tanh

_SKIPPED = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
            nn.FeatureAlphaDropout)
_ACTIVATIONS = {nn.ReLU: ReLU, nn.Sigmoid: Sigmoid, nn.Tanh: Tanh}


def to_torch(network: Network, dtype=torch.float64) -> nn.Sequential:
    """The IR as ``nn.Sequential(Flatten, Linear/ReLU/Sigmoid/Tanh...)`` computing the same function
    (sparse layers are densified). Input: (B, n_inputs) or (B, *input_shape)."""
    mods: list[nn.Module] = [nn.Flatten()]
    for layer in network.layers:
        if isinstance(layer, Affine):
            # created directly in ``dtype``: copying float64 weights into a float32 layer and
            # converting afterwards would round them
            lin = nn.Linear(layer.in_size, layer.out_size, dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(layer.dense_W(), dtype=dtype))
                lin.bias.copy_(torch.as_tensor(layer.b, dtype=dtype))
            mods.append(lin)
        elif isinstance(layer, ReLU):
            mods.append(nn.ReLU())
        elif isinstance(layer, Sigmoid):
            mods.append(nn.Sigmoid())
        elif isinstance(layer, Tanh):
            mods.append(nn.Tanh())
    return nn.Sequential(*mods).to(dtype).eval()


def _leaves(module: nn.Module, prefix: str = ""):
    """(qualified name, module) of the leaves of nested ``nn.Sequential`` containers, in order."""
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix or "<root>", module


def _np(t) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _conv(mod, shape, where):
    """Sparse matrix, bias and output shape of a Conv1d/Conv2d on a per-sample ``shape``."""
    one_d = isinstance(mod, nn.Conv1d)
    if mod.padding_mode != "zeros":
        raise NetworkError(f"{where}: padding_mode '{mod.padding_mode}' is not supported (only 'zeros')")
    if len(shape) != (2 if one_d else 3):
        raise NetworkError(f"{where}: expects a {'(C, L)' if one_d else '(C, H, W)'} input, got shape {shape}")
    w = _np(mod.weight)
    stride, dil = list(mod.stride), list(mod.dilation)
    spatial = list(shape[1:])
    if isinstance(mod.padding, str):
        if mod.padding == "valid":
            pads = [(0, 0)] * len(spatial)
        else:  # 'same' (torch puts the odd extra pad at the end)
            pads = [same_padding(spatial[k], w.shape[2 + k], 1, dil[k], upper=True) for k in range(len(spatial))]
    else:
        pads = [(int(p), int(p)) for p in mod.padding]
    if one_d:
        w = w[:, :, None, :]
        spatial, stride, dil, pads = [1] + spatial, [1] + stride, [1] + dil, [(0, 0)] + pads
    m, out = conv2d_matrix(w, (shape[0], *spatial), stride,
                           (pads[0][0], pads[1][0], pads[0][1], pads[1][1]), dil, mod.groups)
    if one_d:
        out = (out[0], out[2])
    n_pix = int(np.prod(out[1:]))
    b = np.repeat(_np(mod.bias), n_pix) if mod.bias is not None else np.zeros(m.shape[0])
    return m, b, tuple(out)


def _batchnorm(mod, shape, where):
    if mod.running_mean is None or mod.running_var is None:
        raise NetworkError(f"{where}: BatchNorm without running statistics (track_running_stats=False) "
                           "cannot be evaluated per sample")
    expected = {nn.BatchNorm1d: (1, 2), nn.BatchNorm2d: (3,)}[type(mod)]
    if len(shape) not in expected or shape[0] != mod.num_features:
        raise NetworkError(f"{where}: {type(mod).__name__}({mod.num_features}) cannot take an input of shape {shape}")
    s = 1.0 / np.sqrt(_np(mod.running_var) + mod.eps)
    t = -_np(mod.running_mean) * s
    if mod.affine:
        g = _np(mod.weight)
        s, t = s * g, t * g + _np(mod.bias)
    per = int(np.prod(shape[1:]))
    return sp.diags(np.repeat(s, per), format="csr"), np.repeat(t, per)


def from_torch(module: nn.Module, input_shape=None, name: str = "") -> Network:
    """Convert a (nested) ``nn.Sequential`` to a :class:`Network` computing the same function.

    ``input_shape`` is the per-sample shape, e.g. ``(1, 28, 28)`` or ``(784,)``; it may be omitted
    when the first layer is a Linear. BatchNorm layers use their running statistics (eval mode).
    Unsupported modules raise :class:`NetworkError` naming the module and its position.
    """
    if not isinstance(module, nn.Module):
        raise NetworkError(f"from_torch expects an nn.Module, got {type(module).__name__}")
    leaves = list(_leaves(module))
    if input_shape is None:
        first = next((m for _, m in leaves if not isinstance(m, _SKIPPED + (nn.Flatten,))), None)
        if isinstance(first, nn.Linear):
            input_shape = (first.in_features,)
        else:
            raise NetworkError("from_torch needs input_shape (the per-sample input shape, e.g. (1, 28, 28))")
    shape = tuple(int(s) for s in input_shape)
    n0 = int(np.prod(shape)) if shape else 1
    layers: list = []
    for pos, (qual, mod) in enumerate(leaves):
        where = f"module '{qual}' (position {pos}, {type(mod).__name__})"
        if isinstance(mod, _SKIPPED):
            continue
        if isinstance(mod, nn.Linear):
            if not shape or shape[-1] != mod.in_features:
                raise NetworkError(f"{where}: expects {mod.in_features} input features, receives shape {shape}")
            w, b = _np(mod.weight), (_np(mod.bias) if mod.bias is not None else np.zeros(mod.out_features))
            lead = int(np.prod(shape[:-1]))
            if lead > 1:
                w, b = sp.kron(sp.identity(lead), w, format="csr"), np.tile(b, lead)
            layers.append(Affine(w, b))
            shape = shape[:-1] + (mod.out_features,)
        elif isinstance(mod, (nn.Conv1d, nn.Conv2d)):
            m, b, shape = _conv(mod, shape, where)
            layers.append(Affine(m, b))
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            layers.append(Affine(*_batchnorm(mod, shape, where)))
        elif isinstance(mod, nn.Flatten):
            full = (1,) + shape
            start, end = mod.start_dim % len(full), mod.end_dim % len(full)
            if start == 0:
                raise NetworkError(f"{where}: flattening the batch dimension is not supported")
            shape = full[1:start] + (int(np.prod(full[start:end + 1])),) + full[end + 1:]
        elif isinstance(mod, nn.Unflatten):
            full = list((1,) + shape)
            dim = mod.dim % len(full)
            if dim == 0 or full[dim] != int(np.prod(mod.unflattened_size)):
                raise NetworkError(f"{where}: cannot unflatten dimension {mod.dim} of shape {shape}")
            full[dim:dim + 1] = list(mod.unflattened_size)
            shape = tuple(full[1:])
        elif type(mod) in _ACTIVATIONS:
            layers.append(_ACTIVATIONS[type(mod)]())
        else:
            raise NetworkError(f"{where}: unsupported module type {type(mod).__name__} "
                               "(supported: Linear, Conv1d/2d, BatchNorm1d/2d, Flatten, Unflatten, ReLU, "
                               "Sigmoid, Tanh, Identity, Dropout, nested Sequential)")
    if not layers:  # e.g. only Flatten/Identity: the identity function
        layers.append(Affine(sp.identity(n0, format="csr"), np.zeros(n0)))
    return Network(tuple(layers), tuple(input_shape), name=name or type(module).__name__).simplified()
