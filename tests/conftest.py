"""Small networks that several test files use (fixtures; each returns a factory)."""
from __future__ import annotations

import numpy as np
import pytest

from cegarnn.network import Affine, Network, ReLU, save_onnx

N_X, N_Z = 4, 2           # generative_case: image part and latent part of the generator's input


def relu_net(seed: int = 0, sizes=(3, 6, 2)) -> Network:
    """``sizes[0] -> sizes[1] ReLU -> sizes[2]``, weights and biases standard normal from ``seed``."""
    rng = np.random.default_rng(seed)
    n_in, hidden, n_out = sizes
    return Network((Affine(rng.normal(size=(hidden, n_in)), rng.normal(size=hidden)), ReLU(),
                    Affine(rng.normal(size=(n_out, hidden)), rng.normal(size=n_out))), (n_in,))


@pytest.fixture
def tiny_onnx(tmp_path):
    """Factory ``(name="tiny.onnx", seed=0, sizes=(3, 6, 2), directory=tmp_path) -> (net, path)``:
    a seeded one-hidden-layer ReLU network (``relu_net``) saved as ONNX."""
    def make(name: str = "tiny.onnx", seed: int = 0, sizes=(3, 6, 2), directory=None):
        net = relu_net(seed, sizes)
        path = (directory or tmp_path) / name
        save_onnx(net, path)
        return net, path
    return make


def _tiny_generative_models(seed: int):
    """A generator [x(4), z(2)] -> 10 ReLU -> 6 sigmoid and a 6 -> 8 ReLU -> 3 classifier (float64 torch)."""
    import torch
    from torch import nn
    torch.manual_seed(seed)
    G = nn.Sequential(nn.Linear(N_X + N_Z, 10), nn.ReLU(), nn.Linear(10, 6), nn.Sigmoid()).double()
    with torch.no_grad():
        G[0].weight[:, N_X:] *= 3.0       # make the latent matter
        G[2].weight *= 4.0                # wide sigmoid pre-activations: one segment is loose
    C = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    with torch.no_grad():
        C[0].weight *= 4.0
    return G.eval(), C.eval()


def _generative_case(seed: int, radius: float):
    from cegarnn.specs.problem import generative_problem
    import torch
    G, C = _tiny_generative_models(seed)
    x = np.random.default_rng(seed).random(N_X)
    with torch.no_grad():
        label = int(C(G(torch.as_tensor(np.concatenate([x, np.zeros(N_Z)])[None]))).argmax())
    lo, hi = -radius * np.ones(N_Z), radius * np.ones(N_Z)
    prob = generative_problem(G, C, x, label, latent_lower=lo, latent_upper=hi, name=f"s{seed}r{radius}")
    return prob, G, C, x, label, lo, hi


def _grid_margin(G, C, x, label, lo, hi, n: int = 161):
    """Min classification margin over a dense n x n latent grid, and its arg-min."""
    import torch
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    z = np.stack([g1.ravel(), g2.ravel()], 1)
    inp = np.concatenate([np.tile(x, (len(z), 1)), z], 1)
    with torch.no_grad():
        out = C(G(torch.as_tensor(inp))).numpy()
    m = out[:, label] - np.delete(out, label, axis=1).max(1)
    return float(m.min()), z[int(np.argmin(m))]


@pytest.fixture
def generative_case():
    """Factory ``(seed, radius) -> (problem, G, C, x, label, lo, hi)``: tiny torch generator and
    classifier (latent dimension 2), the problem "C(G(x, z)) keeps the label for z in [-radius, radius]^2"."""
    return _generative_case


@pytest.fixture
def grid_margin():
    """``(G, C, x, label, lo, hi, n=161) -> (min margin, arg-min z)`` on a dense latent grid: the
    ground truth of a ``generative_case``."""
    return _grid_margin
