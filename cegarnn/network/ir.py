"""Network intermediate representation: an ordered list of layers on flat float64 vectors.

Every network in cegarnn — loaded from torch or ONNX, composed, or with part of its input
fixed — is a :class:`Network`. Layers act on flat vectors (``Affine`` holds a dense or
scipy-sparse matrix; convolutions are lowered to sparse matrices by the loaders), so every later
stage (bounds, encoder, CEGAR) only has to know four layer kinds.

Index convention used throughout the project: ``network.forward_all(x)`` returns the list of
*values* ``v[0] = x, v[i+1] = layers[i](v[i])``. Bounds, encodings and decoded solutions use
the same indices, so ``v[i]`` of an activation layer ``i`` is its pre-activation and ``v[i+1]``
its post-activation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import scipy.sparse as sp

Matrix = Union[np.ndarray, sp.spmatrix, sp.sparray]


class NetworkError(ValueError):
    """A network is malformed: shapes do not chain, weights are not finite, unsupported layer."""


def _as_matrix(W) -> Matrix:
    if sp.issparse(W):
        return sp.csr_matrix(W, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise NetworkError(f"Affine weight must be 2-D (out, in), got shape {W.shape}")
    return W


@dataclass(frozen=True, eq=False)
class Affine:
    """``y = W x + b``; ``W`` of shape (out, in), dense ndarray or scipy CSR.

    ``folded``/``folded_terms``: when inputs were folded into ``b`` (:meth:`Network.fix_inputs`),
    the magnitude ``|W_fixed| |x_fixed|`` per output and the number of folded terms: the original
    model still sums them, which the rounding-error bound (:mod:`cegarnn.bounds.rounding`) needs.
    """

    W: Matrix
    b: np.ndarray
    folded: Optional[np.ndarray] = None
    folded_terms: int = 0

    def __post_init__(self):
        W = _as_matrix(self.W)
        b = np.asarray(self.b, dtype=np.float64).reshape(-1)
        if b.shape[0] != W.shape[0]:
            raise NetworkError(f"Affine bias has {b.shape[0]} entries but weight has {W.shape[0]} rows")
        data = W.data if sp.issparse(W) else W
        if not (np.all(np.isfinite(data)) and np.all(np.isfinite(b))):
            raise NetworkError("Affine layer has NaN or infinite weights or bias")
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)
        if self.folded is not None:
            folded = np.asarray(self.folded, dtype=np.float64).reshape(-1)
            if folded.shape != b.shape:
                raise NetworkError(f"Affine folded magnitude has {folded.shape[0]} entries, bias has {b.shape[0]}")
            object.__setattr__(self, "folded", folded)

    @property
    def in_size(self) -> int:
        return self.W.shape[1]

    @property
    def out_size(self) -> int:
        return self.W.shape[0]

    @property
    def is_sparse(self) -> bool:
        return sp.issparse(self.W)

    def dense_W(self) -> np.ndarray:
        return self.W.toarray() if sp.issparse(self.W) else self.W

    def __call__(self, x: np.ndarray) -> np.ndarray:
        # x: (batch, in) -> (batch, out)
        return np.asarray(self.W @ x.T).T + self.b


@dataclass(frozen=True)
class ReLU:
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable float64 logistic function."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


@dataclass(frozen=True)
class Sigmoid:
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(x)


@dataclass(frozen=True)
class Tanh:
    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)


Layer = Union[Affine, ReLU, Sigmoid, Tanh]
ACTIVATIONS = (ReLU, Sigmoid, Tanh)


@dataclass(frozen=True, eq=False)
class Network:
    """An ordered list of layers with a (flat) input size.

    ``input_shape`` is the shape the original model expects for one sample (e.g. ``(1, 28, 28)``)
    and is kept for export; computation always uses flat vectors of ``n_inputs`` entries.
    The constructor checks that sizes chain and weights are finite.
    """

    layers: tuple
    input_shape: tuple
    name: str = ""
    sizes: tuple = field(init=False, repr=False)

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise NetworkError("a network needs at least one layer")
        shape = tuple(int(s) for s in self.input_shape)
        n = int(np.prod(shape)) if shape else 1
        sizes = [n]
        for i, layer in enumerate(layers):
            if isinstance(layer, Affine):
                if layer.in_size != n:
                    raise NetworkError(
                        f"layer {i} (Affine {layer.out_size}x{layer.in_size}) expects {layer.in_size} inputs "
                        f"but receives {n}")
                n = layer.out_size
            elif not isinstance(layer, ACTIVATIONS):
                raise NetworkError(f"layer {i}: unsupported layer type {type(layer).__name__}")
            sizes.append(n)
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "sizes", tuple(sizes))

    # ----------------------------------------------------------------- basic facts
    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def __len__(self) -> int:
        return len(self.layers)

    def activation_indices(self, kind=ACTIVATIONS) -> list[int]:
        """Indices ``i`` of activation layers of the given kind(s); their pre-activation is value ``i``."""
        return [i for i, l in enumerate(self.layers) if isinstance(l, kind)]

    # ----------------------------------------------------------------- evaluation
    def _check_input(self, x) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1 or (x.shape == self.input_shape and len(self.input_shape) > 1)
        x2 = x.reshape(1, -1) if single else x.reshape(x.shape[0], -1)
        if x2.shape[1] != self.n_inputs:
            raise NetworkError(f"network expects {self.n_inputs} inputs per sample, got {x2.shape[1]}")
        return x2, single

    def forward_all(self, x) -> list[np.ndarray]:
        """All values ``v[0..len]`` in float64 (``v[0]`` the input); batch dim kept iff given."""
        x2, single = self._check_input(x)
        vals = [x2]
        for layer in self.layers:
            vals.append(layer(vals[-1]))
        return [v[0] for v in vals] if single else vals

    def forward(self, x) -> np.ndarray:
        """Float64 output for one sample (flat or ``input_shape``) or a batch ``(B, ...)``."""
        x2, single = self._check_input(x)
        v = x2
        for layer in self.layers:
            v = layer(v)
        return v[0] if single else v

    def vjp(self, x) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
        """Outputs ``y`` of a batch ``x`` (B, n) and ``back(g)``: the gradient with respect to
        ``x`` of ``sum_b g_b . y_b`` for a cotangent ``g`` (B, n_outputs) — reverse mode through
        the layers in float64, no torch. ReLU passes gradient where its input is > 0 (as torch)."""
        x2, _ = self._check_input(x)
        vals = [x2]
        for layer in self.layers:
            vals.append(layer(vals[-1]))

        def back(g: np.ndarray) -> np.ndarray:
            g = np.asarray(g, dtype=np.float64)
            for layer, v_in, v_out in zip(reversed(self.layers), reversed(vals[:-1]), reversed(vals[1:])):
                if isinstance(layer, Affine):
                    g = np.asarray(layer.W.T @ g.T).T
                elif isinstance(layer, ReLU):
                    g = g * (v_in > 0)
                elif isinstance(layer, Sigmoid):
                    g = g * v_out * (1.0 - v_out)
                else:
                    g = g * (1.0 - v_out * v_out)
            return g
        return vals[-1], back

    # ----------------------------------------------------------------- transformations
    def fix_inputs(self, fixed_mask, fixed_values) -> "Network":
        """Network on the free inputs only: inputs where ``fixed_mask`` is True take
        ``fixed_values`` (full-length or only the fixed entries) folded into the first layer's bias.

        The new network's input is ``x[~fixed_mask]`` in the original order; its output equals the
        original network's output on the completed input.
        """
        mask = np.asarray(fixed_mask, dtype=bool).reshape(-1)
        if mask.shape[0] != self.n_inputs:
            raise NetworkError(f"fixed_mask has {mask.shape[0]} entries, network has {self.n_inputs} inputs")
        vals = np.asarray(fixed_values, dtype=np.float64).reshape(-1)
        if vals.shape[0] == self.n_inputs:
            vals = vals[mask]
        if vals.shape[0] != mask.sum():
            raise NetworkError(f"{mask.sum()} inputs are fixed but {vals.shape[0]} values were given")
        if not np.all(np.isfinite(vals)):
            raise NetworkError("fixed input values must be finite")
        first = self.layers[0]
        if not isinstance(first, Affine):
            raise NetworkError("fix_inputs needs the first layer to be Affine")
        W = first.W.tocsc() if first.is_sparse else first.W
        Wf = W[:, np.flatnonzero(mask)]
        Wfree = W[:, np.flatnonzero(~mask)]
        b = first.b + np.asarray(Wf @ vals).reshape(-1)
        folded = np.asarray(abs(Wf) @ np.abs(vals)).reshape(-1)
        if first.folded is not None:
            folded = folded + first.folded
        if sp.issparse(Wfree):
            Wfree = Wfree.tocsr()
        new_first = Affine(Wfree, b, folded, first.folded_terms + int(mask.sum()))
        return Network((new_first,) + self.layers[1:], (int((~mask).sum()),), name=self.name)

    def simplified(self) -> "Network":
        """Equivalent network with consecutive Affine layers merged (identical function)."""
        out: list = []
        for layer in self.layers:
            if isinstance(layer, Affine) and out and isinstance(out[-1], Affine):
                prev = out.pop()
                W = layer.W @ prev.W
                if sp.issparse(W):
                    W = sp.csr_matrix(W)
                    if W.nnz > 0.3 * W.shape[0] * W.shape[1]:
                        W = W.toarray()
                b = np.asarray(layer.W @ prev.b).reshape(-1) + layer.b
                folded = None
                if prev.folded is not None or layer.folded is not None:
                    folded = (np.asarray(abs(layer.W) @ (prev.folded if prev.folded is not None
                                                          else np.zeros(prev.out_size))).reshape(-1)
                              + (layer.folded if layer.folded is not None else 0.0))
                terms = max(prev.folded_terms, layer.folded_terms) + (prev.in_size if prev.folded is not None else 0)
                out.append(Affine(W, b, folded, terms if folded is not None else 0))
            else:
                out.append(layer)
        return Network(tuple(out), self.input_shape, name=self.name)

    def with_output_layer(self, C, d=None) -> "Network":
        """Append ``y -> C y + d`` (e.g. class margins) as a last Affine layer, merged if possible."""
        C = np.asarray(C, dtype=np.float64)
        d = np.zeros(C.shape[0]) if d is None else d
        return Network(self.layers + (Affine(C, d),), self.input_shape, name=self.name).simplified()


def compose(first: Network, second: Network, name: str = "") -> Network:
    """``second ∘ first``: the output of ``first`` feeds ``second`` (sizes must match)."""
    if first.n_outputs != second.n_inputs:
        raise NetworkError(
            f"cannot compose: first network has {first.n_outputs} outputs, second expects {second.n_inputs} inputs")
    return Network(first.layers + second.layers, first.input_shape, name=name or f"{second.name}∘{first.name}")

