"""Networks: the IR (``ir``), ONNX loading/saving (``onnx_io``, operators in ``onnx_ops``), torch
conversion (``torch_io``), convolution lowering shared by both (``conv``) and the check of a
converted network against onnxruntime (``reference``).

``from_torch`` and ``to_torch`` are imported lazily so that ``import cegarnn.network`` does not
import torch.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .ir import (ACTIVATIONS, Affine, Layer, Network, NetworkError, ReLU, Sigmoid, Tanh, compose,
                 sigmoid)
from .conv import conv2d_matrix
from .onnx_io import InputPart, load_onnx, network_from_onnx_model, save_onnx

__all__ = [
    "ACTIVATIONS", "Affine", "InputPart", "Layer", "Network", "NetworkError", "ReLU", "Sigmoid", "Tanh",
    "compose", "conv2d_matrix", "from_torch", "load_network", "load_onnx", "network_from_onnx_model",
    "save_onnx", "sigmoid", "to_torch",
]


def __getattr__(name):
    if name in ("from_torch", "to_torch"):
        from . import torch_io
        return getattr(torch_io, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_network(obj_or_path, input_shape=None) -> Network:
    """A :class:`Network` from a Network (returned as is), an ``nn.Module`` (needs ``input_shape``
    unless it starts with a Linear), a ``.onnx``/``.onnx.gz`` file, or a ``.pt``/``.pth`` file
    holding a whole pickled ``nn.Module`` (loaded with ``weights_only=False``: only open files you
    trust). Errors raise :class:`NetworkError`."""
    if isinstance(obj_or_path, Network):
        return obj_or_path
    if isinstance(obj_or_path, (str, Path)) or hasattr(obj_or_path, "__fspath__"):
        p = Path(obj_or_path)
        name = p.name.lower()
        if name.endswith(".onnx") or name.endswith(".onnx.gz"):
            return load_onnx(p)
        if name.endswith(".pt") or name.endswith(".pth"):
            if not p.is_file():
                raise NetworkError(f"model file not found: {p}")
            import torch
            try:
                obj = torch.load(p, map_location="cpu", weights_only=False)
            except Exception as e:  # noqa: BLE001 - torch raises many kinds of errors on bad files
                raise NetworkError(f"{p}: cannot be read by torch.load ({type(e).__name__}: {e})") from None
            if not isinstance(obj, torch.nn.Module):
                raise NetworkError(f"{p} holds a {type(obj).__name__}, not a whole nn.Module "
                                   "(a state_dict needs its model class; save the module itself)")
            from .torch_io import from_torch
            return from_torch(obj, input_shape, name=p.stem)
        if not p.exists():
            raise NetworkError(f"model file not found: {p}")
        raise NetworkError(f"{p}: unknown model format (expected .onnx, .onnx.gz, .pt or .pth)")
    torch = sys.modules.get("torch")  # an nn.Module can only exist if torch is already imported
    if torch is not None and isinstance(obj_or_path, torch.nn.Module):
        from .torch_io import from_torch
        return from_torch(obj_or_path, input_shape)
    raise NetworkError(f"cannot make a network from a {type(obj_or_path).__name__}")
