"""Conversion between the IR and torch modules."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from .ir import Affine, Network, ReLU, Sigmoid, Tanh


def to_torch(network: Network, dtype=torch.float64) -> nn.Sequential:
    """The IR as ``nn.Sequential(Flatten, Linear/ReLU/Sigmoid/Tanh...)`` computing the same function
    (sparse layers are densified). Input: (B, n_inputs) or (B, *input_shape)."""
    mods: list[nn.Module] = [nn.Flatten()]
    for layer in network.layers:
        if isinstance(layer, Affine):
            lin = nn.Linear(layer.in_size, layer.out_size)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(layer.dense_W()))
                lin.bias.copy_(torch.as_tensor(layer.b))
            mods.append(lin)
        elif isinstance(layer, ReLU):
            mods.append(nn.ReLU())
        elif isinstance(layer, Sigmoid):
            mods.append(nn.Sigmoid())
        elif isinstance(layer, Tanh):
            mods.append(nn.Tanh())
    return nn.Sequential(*mods).to(dtype).eval()
