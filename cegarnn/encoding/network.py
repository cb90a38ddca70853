"""Encode networks into a :class:`~cegarnn.encoding.program.Program` (sparse rows, built in bulk).

:func:`encode_network` adds one network to an existing program, so several copies of a network,
or two networks (sharing input variables through ``input_vars``), can live in one program.
Variables exist for every value ``v[i]`` of ``network.forward_all`` (``v[0]`` = input), with the
column bounds of the given :class:`~cegarnn.bounds.box.LayerBounds` (one box).

* ``Affine``: equality rows ``W v[i] - v[i+1] = -b`` (CSR/dense weights turned into COO in bulk).
* ``ReLU`` (``relu='exact'``): stable-active neurons ``y = x``, stable-inactive ``y`` fixed to 0,
  unstable ones big-M with one binary ``d``: ``y >= x, y >= 0, y <= x - l (1 - d), y <= u d``.
  ``relu='triangle'``: the LP relaxation ``y >= x, y >= 0, y <= u (x - l) / (u - l)``.
* ``Sigmoid``/``Tanh``: one segment per neuron by default, the four envelope rows of
  :func:`~cegarnn.abstraction.sigmoid.envelope` on ``[l, u]`` (pure LP), ``y`` bounded by
  ``[f(l), f(u)]``. A neuron with several segments ``t_0 < ... < t_K`` is a disjunction in
  convex-hull (perspective) form: binaries ``d_k`` (``sum d_k = 1``), copies ``x_k, y_k`` with
  ``x = sum x_k``, ``y = sum y_k``, ``t_k d_k <= x_k <= t_{k+1} d_k``,
  ``f(t_k) d_k <= y_k <= f(t_{k+1}) d_k`` (widened by ``eps``) and every envelope line in
  perspective form ``y_k <= slope x_k + offset d_k`` (resp. ``>=``).

Refinement is incremental (:meth:`NetworkEncoding.refine`, :meth:`NetworkEncoding.refine_many`):
the neuron's current rows are deactivated, its old auxiliary columns fixed to 0, and a fresh
disjunction over the new breakpoints is appended — a live HiGHS model syncs without a rebuild.
Each new segment keeps, besides its own four envelope lines (exact at its ends), those lines of
the old segment containing it that its own lines do not dominate, so refinement is monotone: the
abstraction after a refinement is contained in the one before (the abstract optimum never gets
worse) and is exact at every breakpoint (a refined point cannot come back).

Specifications: :func:`add_linear_objective` and :func:`add_output_constraints`, or add rows
directly with ``program.add_dense_rows(C, encoding.value_vars[-1], lo, hi)``.

The rows of each layer kind are built by :mod:`.layer_rows`; one layer's weights as variables
(repair) are in :mod:`.weights`, decoding in :mod:`.decode`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..abstraction.sigmoid import EPS, SShape, envelope, get_activation
from ..bounds.box import LayerBounds
from ..network.ir import Affine, Network, ReLU, Sigmoid, Tanh
from .errors import MAX_BIG_M, BigMError, EncodingError
from .layer_rows import (OWN_UPPER, Lines, affine_rows, encode_disjunction, envelope_rows, relu_rows,
                         segment_lines, segments_for_layer)
from .program import INF, Program


# --------------------------------------------------------------------------- state
@dataclass(eq=False)
class _SShapeLayer:
    """Per-neuron state of one sigmoid/tanh layer (``layer`` = index of the activation layer)."""

    layer: int
    act: SShape
    lower: np.ndarray
    upper: np.ndarray
    neurons: list            # SegmentedNeuron per neuron (breakpoints wanted)
    encoded: list            # breakpoints as currently encoded, per neuron
    lines: list              # Lines per neuron (as currently encoded)
    rows: list               # active row ids per neuron
    aux: list                # auxiliary columns (x_k, y_k, d_k) per neuron (empty: one segment)
    bins: list               # active segment binaries per neuron


@dataclass(eq=False)
class NetworkEncoding:
    """The variables and per-neuron state of one encoded network (see the module docstring).

    ``value_vars[i]``: variable indices of value ``v[i]``. ``relu_unstable[i]`` / ``relu_binaries[i]``:
    the unstable neurons of ReLU layer ``i`` and their binaries (exact mode). ``sshape[i]``: the
    state of sigmoid/tanh layer ``i``.
    """

    program: Program
    network: Network
    bounds: LayerBounds
    name: str
    relu: str
    eps: float
    tol: float
    value_vars: list = field(default_factory=list)
    relu_unstable: dict = field(default_factory=dict)
    relu_binaries: dict = field(default_factory=dict)
    sshape: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ facts
    @property
    def input_vars(self) -> np.ndarray:
        return self.value_vars[0]

    @property
    def output_vars(self) -> np.ndarray:
        return self.value_vars[-1]

    @property
    def binaries(self) -> np.ndarray:
        """Column indices of the binaries in use (ReLU and active sigmoid segments)."""
        parts = [np.asarray(b, dtype=np.int64) for b in self.relu_binaries.values()]
        for st in self.sshape.values():
            parts.extend(np.asarray(b, dtype=np.int64) for b in st.bins)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    @property
    def n_binaries(self) -> int:
        n = sum(len(b) for b in self.relu_binaries.values())
        for st in self.sshape.values():
            n += sum(len(b) for b in st.bins)
        return int(n)

    def _state(self, layer: int) -> _SShapeLayer:
        if layer not in self.sshape:
            raise EncodingError(f"layer {layer} is not a sigmoid/tanh layer of {self.name!r} "
                                f"(those are {sorted(self.sshape)})")
        return self.sshape[layer]

    def segments_of(self, layer: int, neuron: int) -> np.ndarray:
        """Breakpoints ``t_0 < ... < t_K`` of a sigmoid/tanh neuron (layer = activation layer index)."""
        return self._state(layer).neurons[int(neuron)].breakpoints

    def activation_errors(self, values: Sequence[np.ndarray]) -> dict:
        """For decoded ``values``: ``{layer: y - f(x)}`` per sigmoid/tanh layer (abstraction error)."""
        return {i: np.asarray(values[i + 1]) - st.act.f(values[i]) for i, st in self.sshape.items()}

    # ------------------------------------------------------------------ refinement
    def refine(self, layer_index: int, neuron_index: int, breakpoints) -> bool:
        """Add breakpoint(s) to one sigmoid/tanh neuron; returns whether its encoding changed."""
        t = np.atleast_1d(np.asarray(breakpoints, dtype=np.float64)).reshape(-1)
        return self.refine_many([(layer_index, neuron_index, t)]) > 0

    def refine_many(self, items: Iterable) -> int:
        """Add breakpoints to many neurons at once: ``items`` of ``(layer, neuron, t)`` with ``t`` a
        number or an array. Neurons whose breakpoint set changed are re-encoded in one block per
        layer (old rows deactivated, old segment binaries and copies fixed to 0). Returns the number
        of re-encoded neurons."""
        changed: dict = {}
        for layer, neuron, t in items:
            st = self._state(int(layer))
            j = int(neuron)
            if not 0 <= j < len(st.neurons):
                raise EncodingError(f"neuron {j} out of range for layer {layer} ({len(st.neurons)} neurons)")
            sn = st.neurons[j]
            for tt in np.atleast_1d(np.asarray(t, dtype=np.float64)).reshape(-1):
                if sn.add_breakpoint(tt):
                    changed.setdefault(int(layer), set()).add(j)
        prog = self.program
        total = 0
        for layer, js in changed.items():
            st = self.sshape[layer]
            js = np.array(sorted(js), dtype=np.int64)
            old_rows = np.concatenate([st.rows[j] for j in js])
            old_aux = np.concatenate([st.aux[j] for j in js])
            if old_rows.size:
                prog.deactivate_rows(old_rows)
            if old_aux.size:
                prog.set_col_bounds(old_aux, 0.0, 0.0)
            xv = self.value_vars[layer][js]
            yv = self.value_vars[layer + 1][js]
            bps = [st.neurons[j].breakpoints for j in js]
            lines = segment_lines(st.act, bps, [(st.encoded[j], st.lines[j]) for j in js], self.eps)
            rows, aux, bins = encode_disjunction(prog, st.act, xv, yv, bps, lines, self.eps,
                                                  f"{self.name}.L{layer}.refine")
            for p, j in enumerate(js):
                st.rows[j], st.aux[j], st.bins[j] = rows[p], aux[p], bins[p]
                st.encoded[j], st.lines[j] = bps[p], lines[p]
            total += len(js)
        return total


# --------------------------------------------------------------------------- helpers
def _single_box(bounds: LayerBounds, network: Network) -> tuple[list, list]:
    if bounds.batched:
        raise EncodingError("encode_network needs bounds of one box, got a batch; use bounds.pick(b)")
    if len(bounds.lower) != len(network.layers) + 1 or len(bounds.upper) != len(network.layers) + 1:
        raise EncodingError(f"bounds have {len(bounds.lower)} values but the network has "
                            f"{len(network.layers) + 1} (layers + input)")
    lo, hi = [], []
    for i, n in enumerate(network.sizes):
        l = np.asarray(bounds.lower[i], dtype=np.float64).reshape(-1)
        u = np.asarray(bounds.upper[i], dtype=np.float64).reshape(-1)
        if l.shape[0] != n or u.shape[0] != n:
            raise EncodingError(f"bounds of value {i} have {l.shape[0]} entries, the network has {n}")
        if np.any(np.isnan(l)) or np.any(np.isnan(u)):
            raise EncodingError(f"bounds of value {i} contain NaN")
        if np.any(l > u):
            j = int(np.argmax(l > u))
            raise EncodingError(f"bounds of value {i} are empty at neuron {j}: {l[j]} > {u[j]}")
        lo.append(l)
        hi.append(u)
    return lo, hi



# --------------------------------------------------------------------------- main entry
def encode_network(program: Program, network: Network, bounds: LayerBounds, input_vars=None,
                   relu: str = "exact", segments=None, name: str = "net", eps: float = EPS,
                   tol: float = 1e-6, max_big_m: float = MAX_BIG_M) -> NetworkEncoding:
    """Add ``network`` to ``program`` (see the module docstring) and return its encoding.

    ``bounds``: sound bounds of every value for ONE box (``LayerBounds``, e.g. ``interval_bounds``
    or CROWN); they become column bounds and big-M constants. ``input_vars``: reuse existing input
    variables (their bounds are intersected with ``bounds.lower[0]/upper[0]``). ``relu``:
    ``'exact'`` (big-M, binaries only for unstable neurons) or ``'triangle'`` (LP). ``segments``
    for sigmoid/tanh layers: None (one segment per neuron), an int K (K uniform segments for every
    neuron), or a dict ``{layer: K | list of per-neuron breakpoint arrays}`` and/or
    ``{(layer, neuron): breakpoints}``; breakpoints outside ``(l, u)`` are ignored, the ends are
    always ``l`` and ``u``. ``eps``: outward shift of envelope lines; ``tol``: minimal distance
    between breakpoints. ``max_big_m``: an unstable ReLU whose pre-activation bound is infinite, or
    (``relu='exact'``) larger in magnitude than this (default :data:`MAX_BIG_M` = 1e9), raises
    :class:`BigMError` naming the layer, neuron and bound.
    """
    if relu not in ("exact", "triangle"):
        raise EncodingError(f"relu must be 'exact' or 'triangle', got {relu!r}")
    lo, hi = _single_box(bounds, network)
    if isinstance(segments, dict):
        ok = set(network.activation_indices((Sigmoid, Tanh)))
        for key in segments:
            li = key[0] if isinstance(key, tuple) else key
            if not isinstance(li, (int, np.integer)) or int(li) not in ok:
                raise EncodingError(f"segments key {key!r}: layer {li!r} is not a sigmoid/tanh layer "
                                    f"(those are {sorted(ok)})")
    enc = NetworkEncoding(program, network, LayerBounds(lo, hi, bounds.method), name, relu, eps, tol)
    n0 = network.n_inputs
    if input_vars is None:
        xv = program.add_vars(n0, lo[0], hi[0], name=f"{name}.v0")
    else:
        xv = np.asarray(input_vars, dtype=np.int64).reshape(-1)
        if xv.shape[0] != n0:
            raise EncodingError(f"input_vars has {xv.shape[0]} variables, the network has {n0} inputs")
        cl, ch = program.col_lo[xv], program.col_hi[xv]
        nl, nh = np.maximum(cl, lo[0]), np.minimum(ch, hi[0])
        if np.any(nl > nh):
            raise EncodingError("input_vars' bounds do not intersect the box of bounds.lower[0]/upper[0]")
        if np.any(nl != cl) or np.any(nh != ch):
            program.set_col_bounds(xv, nl, nh)
    enc.value_vars.append(xv)
    for i, layer in enumerate(network.layers):
        x = enc.value_vars[i]
        nm = f"{name}.L{i}"
        l, u = lo[i], hi[i]
        if isinstance(layer, Affine):
            y = program.add_vars(layer.out_size, lo[i + 1], hi[i + 1], name=f"{nm}.v")
            affine_rows(program, layer, x, y, nm)
        elif isinstance(layer, ReLU):
            ylo = np.maximum(lo[i + 1], np.maximum(l, 0.0))
            yhi = np.minimum(hi[i + 1], np.maximum(u, 0.0))
            ylo = np.where(u <= 0, 0.0, np.minimum(ylo, yhi))
            yhi = np.where(u <= 0, 0.0, yhi)
            y = program.add_vars(x.shape[0], ylo, yhi, name=f"{nm}.v")
            iu, bins = relu_rows(program, x, y, l, u, relu, nm, i, max_big_m)
            if relu == "exact":
                enc.relu_unstable[i], enc.relu_binaries[i] = iu, bins
        elif isinstance(layer, (Sigmoid, Tanh)):
            act = get_activation(layer)
            if not (np.all(np.isfinite(l)) and np.all(np.isfinite(u))):
                raise EncodingError(f"{nm}: sigmoid/tanh pre-activation bounds must be finite")
            ylo = np.maximum(lo[i + 1], act.f(l) - eps)
            yhi = np.minimum(hi[i + 1], act.f(u) + eps)
            ylo = np.minimum(ylo, yhi)
            y = program.add_vars(x.shape[0], ylo, yhi, name=f"{nm}.v")
            n = x.shape[0]
            neurons = segments_for_layer(segments, i, n, l, u, tol)
            rows: list = [None] * n
            lines: list = [None] * n
            encoded = [sn.breakpoints for sn in neurons]
            empty = np.zeros(0, dtype=np.int64)
            aux: list = [empty] * n
            bins: list = [empty] * n
            multi = np.array([sn.n_segments > 1 for sn in neurons], dtype=bool)
            one = np.flatnonzero(~multi)
            if one.size:
                env = envelope(act, l[one], u[one], eps)
                r1 = envelope_rows(program, x[one], y[one], env, f"{nm}.env")
                seg0 = np.zeros(4, dtype=np.int64)
                for p, j in enumerate(one):
                    rows[j] = r1[p]
                    lines[j] = Lines(seg0, OWN_UPPER, np.concatenate([env.upper_slope[p], env.lower_slope[p]]),
                                     np.concatenate([env.upper_offset[p], env.lower_offset[p]]))
            many = np.flatnonzero(multi)
            if many.size:
                bps = [encoded[j] for j in many]
                lns = segment_lines(act, bps, None, eps)
                rr, aa, bb = encode_disjunction(program, act, x[many], y[many], bps, lns, eps, f"{nm}.seg")
                for p, j in enumerate(many):
                    rows[j], aux[j], bins[j], lines[j] = rr[p], aa[p], bb[p], lns[p]
            enc.sshape[i] = _SShapeLayer(i, act, l.copy(), u.copy(), neurons, encoded, lines, rows, aux, bins)
        else:  # pragma: no cover - Network rejects other layers
            raise EncodingError(f"layer {i}: unsupported {type(layer).__name__}")
        enc.value_vars.append(y)
    return enc


def add_linear_objective(program: Program, encoding: NetworkEncoding, value_index: int, coeffs,
                         sense: str = "min", offset: float = 0.0) -> None:
    """Set the objective to ``coeffs @ v[value_index] + offset`` (replaces any objective)."""
    vv = encoding.value_vars[value_index]
    coeffs = np.asarray(coeffs, dtype=np.float64).reshape(-1)
    if coeffs.shape[0] != vv.shape[0]:
        raise EncodingError(f"objective has {coeffs.shape[0]} coefficients, value {value_index} has {vv.shape[0]}")
    program.set_objective(vv, coeffs, sense, offset)


def add_output_constraints(program: Program, encoding: NetworkEncoding, C, lo=-INF, hi=INF,
                           value_index: int = -1, name: str = "spec") -> np.ndarray:
    """Rows ``lo <= C @ v[value_index] <= hi`` (e.g. margins ``y_t - y_j >= 0``); returns row ids."""
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    vv = encoding.value_vars[value_index]
    if C.shape[1] != vv.shape[0]:
        raise EncodingError(f"constraint matrix has {C.shape[1]} columns, value {value_index} has {vv.shape[0]}")
    m = C.shape[0]
    return program.add_dense_rows(C, vv, np.broadcast_to(np.asarray(lo, dtype=float), (m,)),
                                  np.broadcast_to(np.asarray(hi, dtype=float), (m,)), name=name)


__all__ = ["NetworkEncoding", "EncodingError", "BigMError", "MAX_BIG_M", "Lines", "encode_network",
           "add_linear_objective", "add_output_constraints"]
