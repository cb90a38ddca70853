"""One Affine layer's weights as decision variables: the encoding repair and fine-tuning build on.

:func:`encode_weight_layer` is the public entry point (see its docstring); it returns a
:class:`WeightEncoding` that holds the change variables and can decode, apply and penalise the
change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp

from ..abstraction.sigmoid import EPS
from ..bounds.interval import interval_bounds
from ..network.ir import Affine, Network, ReLU
from .errors import EncodingError
from .network import encode_network
from .program import INF, Program


def _as_inputs(network: Network, inputs) -> np.ndarray:
    """``inputs`` as a finite float64 (N, n_in) array, or :class:`EncodingError`."""
    X = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    X = X.reshape(X.shape[0], -1)
    if X.shape[1] != network.n_inputs:
        raise EncodingError(f"inputs have {X.shape[1]} features, the network has {network.n_inputs} inputs")
    if not np.all(np.isfinite(X)):
        raise EncodingError("inputs must be finite")
    return X


@dataclass(eq=False)
class WeightEncoding:
    """Variables of :func:`encode_weight_layer`.

    ``dW``: (out, in) column indices of the weight changes (-1 where a weight is frozen);
    ``db``: (out,) columns of the bias changes (-1 if frozen); ``layer_outputs``: (N, out) columns
    of the chosen layer's outputs per input; ``outputs``: (N, n_out) columns of the network outputs
    per input; ``hidden``: (N, in) the (constant) inputs of the chosen layer; ``encodings``: the
    encodings of the layers after it per input (None if the layer is the last one).
    """

    program: Program
    network: Network
    layer_index: int
    dW: np.ndarray
    db: np.ndarray
    layer_outputs: np.ndarray
    outputs: np.ndarray
    hidden: np.ndarray
    encodings: list
    delta: float = 1.0
    delta_bias: float = 1.0
    relu: str = "exact"
    segments: object = None
    name: str = "wt"
    eps: float = EPS

    @property
    def n_inputs(self) -> int:
        return self.outputs.shape[0]

    def add_inputs(self, inputs, delta: Optional[float] = None) -> np.ndarray:
        """Encode more inputs under the same change variables; returns their output columns
        (N_new, n_out), also appended to ``outputs`` (and ``layer_outputs``, ``hidden``,
        ``encodings``). ``delta`` (default: the encoding's) bounds ``|dW|`` and ``|db|`` when the
        new inputs' layer outputs are bounded — pass a smaller one only if the change variables are
        (or will be) held within it."""
        network, layer_index, program, name = self.network, self.layer_index, self.program, self.name
        layer = network.layers[layer_index]
        X = _as_inputs(network, inputs)
        d_w = self.delta if delta is None else min(float(delta), self.delta)
        d_b = self.delta_bias if delta is None else min(float(delta), self.delta_bias)
        train_bias = bool(np.any(self.db >= 0))
        mask = self.dW >= 0
        m = mask.shape[0]
        first = self.n_inputs
        N = X.shape[0]
        if N == 0:
            return np.zeros((0, network.n_outputs), dtype=np.int64)
        H = network.forward_all(X)[layer_index]                       # (N, in)
        C = np.asarray(layer.W @ H.T).T + layer.b                      # (N, m) unchanged outputs
        reach = np.abs(H) @ mask.T.astype(np.float64)                  # (N, m) sum of |h| over free weights
        with np.errstate(invalid="ignore"):
            rad = np.where(reach > 0, d_w * reach, 0.0) + (d_b if train_bias else 0.0)
        zlo, zhi = C - rad, C + rad
        Z = program.add_vars(N * m, zlo.reshape(-1), zhi.reshape(-1),
                             name=f"{name}.z").reshape(N, m)
        # rows z_nj - sum_k h_nk dW_jk - db_j = C_nj
        jj, kk = np.nonzero(mask)
        for nidx in range(N):
            h = H[nidx]
            keep = h[kk] != 0.0
            j1, k1 = jj[keep], kk[keep]
            r = [np.arange(m), j1]
            c = [Z[nidx], self.dW[j1, k1]]
            v = [np.ones(m), -h[k1]]
            if train_bias:
                r.append(np.arange(m))
                c.append(self.db)
                v.append(-np.ones(m))
            program.add_rows(np.concatenate(r), np.concatenate(c), np.concatenate(v), C[nidx], C[nidx],
                             name=f"{name}.z[{first + nidx}]")
        rest = network.layers[layer_index + 1:]
        encs: list = []
        if rest:
            sub = Network(tuple(rest), (m,), name=f"{network.name}[{layer_index + 1}:]")
            with np.errstate(invalid="ignore"):
                bb = interval_bounds(sub, zlo, zhi)
            # an unbounded change (delta = inf) gives inf - inf = NaN further on: unbounded there
            bb.lower = [np.where(np.isnan(v), -np.inf, v) for v in bb.lower]
            bb.upper = [np.where(np.isnan(v), np.inf, v) for v in bb.upper]
            relu = self.relu
            if relu == "pattern":
                # keep every ReLU after the layer in its phase at each input: clip its pre-activation
                # bounds to that side, so it is stable (linear) in the encoding
                vals = sub.forward_all(C)
                for i in sub.activation_indices(ReLU):
                    active = vals[i] > 0
                    bb.lower[i] = np.where(active, np.maximum(bb.lower[i], 0.0), bb.lower[i])
                    bb.upper[i] = np.where(active, bb.upper[i], np.minimum(bb.upper[i], 0.0))
                relu = "exact"
            outs = []
            for nidx in range(N):
                e = encode_network(program, sub, bb.pick(nidx), input_vars=Z[nidx], relu=relu,
                                   segments=self.segments, name=f"{name}.after[{first + nidx}]", eps=self.eps)
                encs.append(e)
                outs.append(e.value_vars[-1])
            outputs = np.stack(outs)
        else:
            encs = [None] * N
            outputs = Z
        self.layer_outputs = np.concatenate([self.layer_outputs, Z])
        self.outputs = np.concatenate([self.outputs, outputs])
        self.hidden = np.concatenate([self.hidden, H])
        self.encodings = list(self.encodings) + encs
        return outputs

    def change_vars(self) -> np.ndarray:
        v = np.concatenate([self.dW.reshape(-1), self.db])
        return v[v >= 0]

    def add_change_objective(self, norm: str = "l1", sense_weight: float = 1.0) -> np.ndarray:
        """Minimise the size of the change: ``'l1'`` (sum |dW| + sum |db|, one auxiliary variable
        per free parameter) or ``'linf'`` (max |.|, one auxiliary variable). Returns the auxiliary
        columns; replaces the objective."""
        v = self.change_vars()
        prog = self.program
        k = v.shape[0]
        # |v| <= max(|lo|, |hi|) already: the same bound on t keeps every column bounded (a
        # solver's Farkas ray, exact only to rounding, certifies nothing through a free column)
        reach = np.maximum(np.abs(prog.col_lo[v]), np.abs(prog.col_hi[v]))
        if norm == "l1":
            t = prog.add_vars(k, 0.0, reach, name="abs_change")
            tt = np.repeat(t, 2)
        elif norm == "linf":
            t = prog.add_vars(1, 0.0, float(reach.max(initial=0.0)), name="max_change")
            tt = np.full(2 * k, t[0])
        else:
            raise EncodingError(f"norm must be 'l1' or 'linf', got {norm!r}")
        # t - v >= 0 ; t + v >= 0
        r = np.repeat(np.arange(2 * k), 2)
        c = np.stack([tt, np.repeat(v, 2)], 1).reshape(-1)
        vals = np.stack([np.ones(2 * k), np.tile([-1.0, 1.0], k)], 1).reshape(-1)
        prog.add_rows(r, c, vals, np.zeros(2 * k), np.full(2 * k, INF), name=f"{norm}_change")
        prog.set_objective(t, np.full(t.shape[0], float(sense_weight)), "min")
        return t

    def decode(self, solution_x) -> tuple[np.ndarray, np.ndarray]:
        """``(dW, db)`` as dense arrays (0 where frozen)."""
        x = np.asarray(solution_x, dtype=np.float64)
        dW = np.where(self.dW >= 0, x[np.maximum(self.dW, 0)], 0.0)
        db = np.where(self.db >= 0, x[np.maximum(self.db, 0)], 0.0)
        return dW, db

    def apply(self, solution_x) -> Network:
        """The network with ``W + dW, b + db`` in the chosen layer."""
        dW, db = self.decode(solution_x)
        layer = self.network.layers[self.layer_index]
        W = layer.W
        W = (sp.csr_matrix(W.toarray() + dW) if sp.issparse(W) else W + dW)
        layers = list(self.network.layers)
        layers[self.layer_index] = Affine(W, layer.b + db)
        return Network(tuple(layers), self.network.input_shape, name=self.network.name)


def encode_weight_layer(program: Program, network: Network, layer_index: int, inputs, delta: float = 1.0,
                        delta_bias: Optional[float] = None, weight_mask=None, train_bias: bool = True,
                        relu: str = "exact", segments=None, name: str = "wt", eps: float = EPS) -> WeightEncoding:
    """Make the weights of one Affine layer decision variables, for a finite set of inputs.

    The public entry point of repair and fine-tuning. After you add rows on ``outputs`` (e.g. the
    correct class wins for every input) and an objective (e.g. the smallest change), a solution
    is a change ``dW, db`` within the box below under which the changed network meets those rows
    on every input — exactly if the layers after the chosen one are Affine/ReLU with
    ``relu='exact'``; sigmoid/tanh layers (and ``relu='triangle'``) are over-approximated, so a
    solution must then be checked on the changed network (:meth:`WeightEncoding.apply`).

    Parameters
    ----------
    program : Program
        The program to add to (it may already hold other variables and rows).
    network : Network
        The network to change; it is not modified.
    layer_index : int
        Index in ``network.layers`` of the Affine layer whose ``W``, ``b`` become ``W + dW``,
        ``b + db``. Any other kind of layer raises :class:`EncodingError`.
    inputs : array (N, n_in)
        The inputs the change is checked on (finite; flattened per row).
    delta, delta_bias : float
        Box on the change: ``|dW| <= delta``, ``|db| <= delta_bias`` (default ``delta``).
    weight_mask : bool array (out, in), optional
        Which weights may change (default all); ``train_bias=False`` freezes the bias.
    relu, segments, eps
        How the layers after the chosen one are encoded, as in :func:`encode_network`; in
        addition ``relu='pattern'`` keeps every ReLU after the layer in its phase at each input
        (an LP whose solutions are exact; it misses changes that flip a phase).
    name : str
        Prefix of the variable and row names.

    How it is encoded
    -----------------
    Layers before the chosen one are evaluated exactly (float64 constants ``h_n``); the chosen
    layer's outputs are ``z_n = (W + dW) h_n + b + db`` — linear in ``dW`` for fixed ``h_n`` — with
    column bounds ``W h_n + b ± (delta * sum_k |h_nk| + delta_bias)``; the layers after it are
    encoded per input with :func:`encode_network` on interval bounds propagated from that box
    (ReLU big-M or triangle, sigmoid/tanh envelopes). Changing the last Affine layer therefore
    gives an LP; an earlier one a MILP (exact ReLU) or a relaxation (sigmoid/tanh).

    Returns
    -------
    WeightEncoding
        The change columns (``dW``, ``db``), the chosen layer's outputs and the network outputs per
        input (``outputs[n]``, to constrain with ``program.add_dense_rows``), and helpers:
        :meth:`WeightEncoding.add_change_objective` (minimal l1/linf change),
        :meth:`WeightEncoding.decode` and :meth:`WeightEncoding.apply` (the changed network).
    """
    layer = network.layers[layer_index] if 0 <= layer_index < len(network.layers) else None
    if not isinstance(layer, Affine):
        raise EncodingError(f"layer {layer_index} is not an Affine layer of the network")
    X = _as_inputs(network, inputs)
    delta = float(delta)
    delta_bias = delta if delta_bias is None else float(delta_bias)
    if not (delta >= 0 and delta_bias >= 0):
        raise EncodingError("delta and delta_bias must be >= 0 (inf allowed)")
    m, n_in = layer.W.shape
    mask = np.ones((m, n_in), dtype=bool) if weight_mask is None else np.asarray(weight_mask, dtype=bool)
    if mask.shape != (m, n_in):
        raise EncodingError(f"weight_mask has shape {mask.shape}, the layer's weight has {(m, n_in)}")
    dW = np.full((m, n_in), -1, dtype=np.int64)
    free = np.flatnonzero(mask.reshape(-1))
    dW.reshape(-1)[free] = program.add_vars(free.size, -delta, delta, name=f"{name}.dW")
    db = (program.add_vars(m, -delta_bias, delta_bias, name=f"{name}.db") if train_bias
          else np.full(m, -1, dtype=np.int64))
    we = WeightEncoding(program, network, layer_index, dW, db, np.zeros((0, m), dtype=np.int64),
                        np.zeros((0, network.n_outputs), dtype=np.int64), np.zeros((0, n_in)), [],
                        delta=delta, delta_bias=delta_bias if train_bias else 0.0, relu=relu, segments=segments,
                        name=name, eps=eps)
    we.add_inputs(X)
    return we


__all__ = ["WeightEncoding", "encode_weight_layer"]
