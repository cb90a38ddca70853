"""Conversion between ONNX files and the IR (and the shared convolution lowering).

``load_onnx`` executes the graph symbolically: every tensor that depends on the network input is
kept as an affine function ``A v + c`` of the latest IR value ``v`` (``A`` dense, scipy-sparse, or
``None`` for the identity), together with its ONNX shape (batch dimension taken as 1). Affine
operators (Gemm, MatMul, Add/Sub/Mul/Div by constants, Conv, BatchNormalization, reshapes,
transposes, slices, concatenations …) only update ``A`` and ``c``; an activation turns the pending
affine map into an :class:`~cegarnn.network.ir.Affine` layer followed by the activation layer. So
consecutive affine operators are merged on the fly. Nodes whose inputs are all constant are
folded with ONNX's reference evaluator.

Only sequential networks can be represented: a node combining tensors computed after different
activations (a residual connection over an activation) raises :class:`NetworkError`.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .ir import Affine, Network, NetworkError, ReLU, Sigmoid, Tanh

_DENSE_FRACTION = 0.3  # sparse matrices denser than this are stored dense


# ===================================================================== convolution lowering
def conv2d_matrix(weight, in_shape, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                  groups: int = 1):
    """Lower a 2-D convolution (zero padding, no bias) to a sparse matrix.

    ``weight``: (C_out, C_in/groups, kH, kW); ``in_shape``: (C_in, H, W);
    ``padding``: (top, left, bottom, right). Returns ``(M, out_shape)`` with ``M`` a CSR matrix of
    shape (C_out*OH*OW, C_in*H*W) such that ``M @ x.ravel() == conv(x).ravel()`` (CHW order).
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise NetworkError(f"convolution weight must be 4-D, got shape {weight.shape}")
    c_out, cin_g, kh_n, kw_n = weight.shape
    if len(in_shape) != 3:
        raise NetworkError(f"convolution input must be (C, H, W), got shape {tuple(in_shape)}")
    c_in, h, w = (int(s) for s in in_shape)
    sh, sw = (int(s) for s in stride)
    dh, dw = (int(s) for s in dilation)
    pt, pl, pb, pr = (int(s) for s in padding)
    groups = int(groups)
    if groups < 1 or c_out % groups or cin_g * groups != c_in:
        raise NetworkError(f"convolution with weight {weight.shape} and groups={groups} does not fit "
                           f"an input with {c_in} channels")
    if min(sh, sw, dh, dw) < 1 or min(pt, pl, pb, pr) < 0:
        raise NetworkError("convolution strides/dilations must be >= 1 and paddings >= 0")
    oh_n = (h + pt + pb - dh * (kh_n - 1) - 1) // sh + 1
    ow_n = (w + pl + pr - dw * (kw_n - 1) - 1) // sw + 1
    if oh_n <= 0 or ow_n <= 0:
        raise NetworkError(f"convolution kernel {weight.shape[2:]} is larger than the padded input {(h, w)}")
    cout_g = c_out // groups
    co = np.arange(c_out).reshape(-1, 1, 1, 1)
    ci = (co // cout_g) * cin_g + np.arange(cin_g).reshape(1, 1, 1, -1)      # (C_out,1,1,Cin_g)
    oh = np.arange(oh_n).reshape(1, -1, 1, 1)
    ow = np.arange(ow_n).reshape(1, 1, -1, 1)
    full = (c_out, oh_n, ow_n, cin_g)
    row_ids = np.broadcast_to((co * oh_n + oh) * ow_n + ow, full)
    rows, cols, vals = [], [], []
    for kh in range(kh_n):
        ih = oh * sh - pt + kh * dh
        for kw in range(kw_n):
            iw = ow * sw - pl + kw * dw
            val = np.broadcast_to(weight[:, :, kh, kw].reshape(c_out, 1, 1, cin_g), full)
            keep = np.broadcast_to((ih >= 0) & (ih < h) & (iw >= 0) & (iw < w), full) & (val != 0)
            col = np.broadcast_to((ci * h + ih) * w + iw, full)
            rows.append(row_ids[keep])
            cols.append(col[keep])
            vals.append(val[keep])
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(c_out * oh_n * ow_n, c_in * h * w))
    return m, (c_out, oh_n, ow_n)


def same_padding(size: int, kernel: int, stride: int, dilation: int, upper: bool = True) -> tuple[int, int]:
    """(begin, end) padding so that the output has ``ceil(size / stride)`` entries."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


# ===================================================================== symbolic tensors
def _tidy(m):
    if sp.issparse(m):
        m = sp.csr_matrix(m)
        if m.nnz > _DENSE_FRACTION * m.shape[0] * m.shape[1]:
            return m.toarray()
        return m
    return np.asarray(m, dtype=np.float64)


def _is_identity(m) -> bool:
    if m is None:
        return True
    if m.shape[0] != m.shape[1]:
        return False
    if sp.issparse(m):
        m = sp.csr_matrix(m)
        return m.nnz == m.shape[0] and (m != sp.identity(m.shape[0], format="csr")).nnz == 0
    return bool(np.array_equal(m, np.eye(m.shape[0])))


@dataclass
class _Sym:
    """A tensor equal to ``A @ v[base] + c`` reshaped to ``shape`` (``A`` None = identity)."""

    base: int
    A: object
    c: np.ndarray
    shape: tuple

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def mapped(self, m, d=None, shape=None) -> "_Sym":
        """The tensor ``m @ self + d`` (``m`` of shape (new, size))."""
        a = m if self.A is None else m @ self.A
        c = np.asarray(m @ self.c).reshape(-1)
        if d is not None:
            c = c + d
        return _Sym(self.base, _tidy(a), c, tuple(shape) if shape is not None else self.shape)

    def scaled(self, s, d=None, shape=None) -> "_Sym":
        """The tensor ``s * self + d`` elementwise (``s``, ``d`` flat of the same size)."""
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if self.A is None:
            a = sp.diags(s, format="csr")
        elif sp.issparse(self.A):
            a = sp.diags(s, format="csr") @ self.A
        else:
            a = s[:, None] * self.A
        c = s * self.c + (0.0 if d is None else d)
        return _Sym(self.base, _tidy(a), c, tuple(shape) if shape is not None else self.shape)

    def selected(self, idx, shape) -> "_Sym":
        """Entries ``self[idx]`` (flat indices, ``-1`` = zero) reshaped to ``shape``."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if np.array_equal(idx, np.arange(self.size)):
            return _Sym(self.base, self.A, self.c, tuple(shape))
        keep = idx >= 0
        c = np.where(keep, self.c[np.maximum(idx, 0)], 0.0)
        if self.A is not None and not sp.issparse(self.A):
            a = self.A[np.maximum(idx, 0)]
            a[~keep] = 0.0
            return _Sym(self.base, a, c, tuple(shape))
        sel = sp.csr_matrix((np.ones(int(keep.sum())), (np.flatnonzero(keep), idx[keep])),
                            shape=(idx.shape[0], self.size))
        a = sel if self.A is None else sel @ self.A
        return _Sym(self.base, _tidy(a), c, tuple(shape))

    def matrix(self, n_base: int):
        return sp.identity(n_base, format="csr") if self.A is None else self.A


def _size(shape) -> int:
    return int(np.prod(shape)) if len(shape) else 1


def _positions(shape) -> np.ndarray:
    return np.arange(_size(shape), dtype=np.int64).reshape(shape)


# ===================================================================== the loader
@dataclass(frozen=True)
class InputPart:
    """One graph input inside the network's flat input vector: ``x[start:stop]`` reshaped to ``shape``."""

    name: str
    shape: tuple
    start: int
    stop: int


class _Converter:
    def __init__(self, model, where: str):
        import onnx  # noqa: F401  (imported here so that the IR does not need onnx)
        self.model = model
        self.where = where
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.vals: dict = {}
        self.layers: list = []
        self.sizes: list = []
        self.node = None

    # ------------------------------------------------------------ helpers
    def err(self, msg: str) -> NetworkError:
        node = self.node
        if node is not None:
            msg = f"{self.where}: node '{node.name or '<unnamed>'}' ({node.op_type}): {msg}"
        else:
            msg = f"{self.where}: {msg}"
        return NetworkError(msg)

    def const(self, i: int, required: bool = True, what: str = "input"):
        node = self.node
        if i >= len(node.input) or not node.input[i]:
            if required:
                raise self.err(f"missing {what} {i}")
            return None
        v = self.vals[node.input[i]]
        if isinstance(v, _Sym):
            raise self.err(f"{what} {i} ('{node.input[i]}') must be a constant, but it depends on the network input")
        return v

    def flush(self, s: _Sym) -> _Sym:
        """Materialise the pending affine map of ``s`` as an IR layer; ``s`` becomes the identity."""
        if s.base != len(self.layers):
            raise self.err("the graph is not sequential: it combines a tensor computed before an activation "
                           "with one computed after it")
        if _is_identity(s.A) and not np.any(s.c):
            return _Sym(s.base, None, np.zeros(s.size), s.shape)
        self.layers.append(Affine(s.matrix(self.sizes[-1]), s.c))
        self.sizes.append(s.size)
        return _Sym(len(self.layers), None, np.zeros(s.size), s.shape)

    def activate(self, s: _Sym, layer) -> _Sym:
        s = self.flush(s)
        self.layers.append(layer)
        self.sizes.append(s.size)
        return _Sym(len(self.layers), None, np.zeros(s.size), s.shape)

    def same_base(self, a: _Sym, b: _Sym):
        if a.base != b.base:
            raise self.err("the graph is not sequential: it combines tensors computed after different activations")

    # ------------------------------------------------------------ inputs
    def graph_inputs(self):
        g = self.model.graph
        init_names = {t.name for t in g.initializer}
        parts = []
        start = 0
        for vi in g.input:
            if vi.name in init_names:
                continue
            tt = vi.type.tensor_type
            if not vi.type.HasField("tensor_type"):
                raise self.err(f"graph input '{vi.name}' is not a tensor")
            if tt.elem_type not in (1, 10, 11, 16):   # float, float16, double, bfloat16
                raise self.err(f"graph input '{vi.name}' has a non-floating element type ({tt.elem_type})")
            dims = []
            for k, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                elif k == 0:
                    dims.append(1)           # batch dimension
                else:
                    raise self.err(f"graph input '{vi.name}' has an unknown dimension "
                                   f"'{d.dim_param or '?'}' at position {k}")
            full = tuple(dims)
            sample = full[1:] if len(full) >= 2 and full[0] == 1 else full
            n = _size(full)
            parts.append((vi.name, full, InputPart(vi.name, sample, start, start + n)))
            start += n
        if not parts:
            raise self.err("the graph has no (non-constant) input")
        return parts, start

    # ------------------------------------------------------------ main loop
    def run(self):
        from onnx import numpy_helper
        g = self.model.graph
        if len(g.output) != 1:
            raise self.err(f"the graph has {len(g.output)} outputs; only single-output networks are supported")
        for t in g.initializer:
            self.vals[t.name] = numpy_helper.to_array(t)
        parts, n_in = self.graph_inputs()
        self.sizes = [n_in]
        for name, full, part in parts:
            if len(parts) == 1:
                a = None
            else:
                a = sp.csr_matrix((np.ones(part.stop - part.start),
                                   (np.arange(part.stop - part.start), np.arange(part.start, part.stop))),
                                  shape=(part.stop - part.start, n_in))
            self.vals[name] = _Sym(0, a, np.zeros(part.stop - part.start), full)
        for node in g.node:
            self.node = node
            for name in node.input:
                if name and name not in self.vals:
                    raise self.err(f"input '{name}' is not produced by any earlier node, initializer or graph input")
            ins = [self.vals[n] if n else None for n in node.input]
            if node.domain not in ("", "ai.onnx"):
                raise self.err(f"unsupported operator {node.domain}.{node.op_type}")
            if node.op_type == "Constant":
                outs = [self.constant_node(node)]
            elif not any(isinstance(v, _Sym) for v in ins) and node.op_type not in ("Shape", "Size"):
                outs = self.fold(node, ins)
            else:
                handler = getattr(self, "op_" + node.op_type, None)
                if handler is None:
                    raise self.err(f"unsupported ONNX operator {node.op_type} on a tensor that depends on the "
                                   f"network input (supported: affine operators, Relu, Sigmoid, Tanh)")
                attrs = self.attributes(node)
                res = handler(ins, attrs)
                outs = res if isinstance(res, list) else [res]
            for name, v in zip(node.output, outs):
                if name:
                    self.vals[name] = v
        self.node = None
        out_name = g.output[0].name
        if out_name not in self.vals:
            raise self.err(f"graph output '{out_name}' is not computed by any node")
        out = self.vals[out_name]
        if not isinstance(out, _Sym):
            raise self.err(f"graph output '{out_name}' does not depend on the network input")
        out = self.flush(out)
        if not self.layers:
            self.layers.append(Affine(sp.identity(n_in, format="csr"), np.zeros(n_in)))
        if len(parts) == 1:
            input_shape = parts[0][2].shape
        else:
            input_shape = (n_in,)
        return self.layers, input_shape, [p[2] for p in parts], out.shape

    # ------------------------------------------------------------ constants
    @staticmethod
    def attributes(node) -> dict:
        from onnx import helper
        out = {}
        for a in node.attribute:
            v = helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            out[a.name] = v
        return out

    def constant_node(self, node):
        from onnx import numpy_helper
        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
            if a.name == "value_float":
                return np.array(a.f, dtype=np.float32)
            if a.name == "value_floats":
                return np.array(list(a.floats), dtype=np.float32)
            if a.name == "value_int":
                return np.array(a.i, dtype=np.int64)
            if a.name == "value_ints":
                return np.array(list(a.ints), dtype=np.int64)
        raise self.err("Constant node without a supported value attribute")

    def fold(self, node, ins):
        """Evaluate a node whose inputs are all constants (ONNX reference implementation)."""
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        feeds = {n: np.asarray(v) for n, v in zip(node.input, ins) if n}
        try:
            inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for n, v in feeds.items()]
            outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
            graph = helper.make_graph([node], "fold", inputs, outputs)
            model = helper.make_model(graph, opset_imports=list(self.model.opset_import))
            res = ReferenceEvaluator(model).run(None, feeds)
        except Exception as e:  # noqa: BLE001 - any failure of the evaluator is a model problem
            raise self.err(f"cannot evaluate this constant node ({type(e).__name__}: {e})") from None
        res = iter(res)
        return [np.asarray(next(res)) if n else None for n in node.output]

    def floats(self, v):
        v = np.asarray(v)
        if not np.issubdtype(v.dtype, np.floating) and not np.issubdtype(v.dtype, np.integer):
            raise self.err(f"constant of type {v.dtype} cannot be combined with the network input")
        return v.astype(np.float64)

    # ------------------------------------------------------------ operators on symbolic tensors
    def op_Identity(self, ins, attrs):
        return ins[0]

    def op_Dropout(self, ins, attrs):
        return [ins[0], None]

    def op_Cast(self, ins, attrs):
        if attrs.get("to") not in (1, 10, 11, 16):
            raise self.err("casting the network's values to a non-floating type is not supported")
        return ins[0]

    def op_Relu(self, ins, attrs):
        return self.activate(ins[0], ReLU())

    def op_Sigmoid(self, ins, attrs):
        return self.activate(ins[0], Sigmoid())

    def op_Tanh(self, ins, attrs):
        return self.activate(ins[0], Tanh())

    def op_Shape(self, ins, attrs):
        x = ins[0]
        shape = np.asarray(x.shape if isinstance(x, _Sym) else np.shape(x), dtype=np.int64)
        start, end = attrs.get("start", 0), attrs.get("end", None)
        return shape[start:end]

    def op_Size(self, ins, attrs):
        x = ins[0]
        return np.array(x.size if isinstance(x, _Sym) else np.size(x), dtype=np.int64)

    def op_Flatten(self, ins, attrs):
        x = ins[0]
        axis = attrs.get("axis", 1)
        if axis < 0:
            axis += len(x.shape)
        if not 0 <= axis <= len(x.shape):
            raise self.err(f"axis {attrs.get('axis')} out of range for shape {x.shape}")
        return _Sym(x.base, x.A, x.c, (_size(x.shape[:axis]), _size(x.shape[axis:])))

    def op_Reshape(self, ins, attrs):
        x = ins[0]
        target = [int(t) for t in np.asarray(self.const(1, what="shape input")).reshape(-1)]
        allowzero = attrs.get("allowzero", 0)
        shape = []
        for k, t in enumerate(target):
            if t == 0 and not allowzero:
                if k >= len(x.shape):
                    raise self.err(f"cannot copy dimension {k} of shape {x.shape}")
                t = x.shape[k]
            shape.append(t)
        if shape.count(-1) > 1:
            raise self.err(f"reshape target {target} has more than one -1")
        if -1 in shape:
            known = _size([t for t in shape if t != -1])
            if known == 0 or x.size % known:
                raise self.err(f"cannot reshape {x.shape} to {target}")
            shape[shape.index(-1)] = x.size // known
        if _size(shape) != x.size:
            raise self.err(f"cannot reshape {x.shape} ({x.size} values) to {target}")
        return _Sym(x.base, x.A, x.c, tuple(shape))

    def _axes(self, ins, attrs):
        """The ``axes`` of Squeeze/Unsqueeze: an attribute (opset < 13) or a constant input; or None."""
        if "axes" in attrs:
            return [int(a) for a in attrs["axes"]]
        if len(ins) > 1 and ins[1] is not None:
            return [int(a) for a in np.asarray(self.const(1, what="axes input")).reshape(-1)]
        return None

    def op_Squeeze(self, ins, attrs):
        x = ins[0]
        rank = len(x.shape)
        axes = self._axes(ins, attrs)
        if axes is None:
            shape = tuple(d for d in x.shape if d != 1)
        else:
            axes = [a + rank if a < 0 else a for a in axes]
            if any(not 0 <= a < rank or x.shape[a] != 1 for a in axes):
                raise self.err(f"cannot squeeze axes {axes} of shape {x.shape}")
            shape = tuple(d for k, d in enumerate(x.shape) if k not in axes)
        return _Sym(x.base, x.A, x.c, shape)

    def op_Unsqueeze(self, ins, attrs):
        x = ins[0]
        axes = self._axes(ins, attrs)
        if axes is None:
            raise self.err("Unsqueeze without axes")
        rank = len(x.shape) + len(axes)
        shape = list(x.shape)
        for a in sorted(a + rank if a < 0 else a for a in axes):
            if not 0 <= a <= len(shape):
                raise self.err(f"cannot unsqueeze axis {a} of shape {x.shape}")
            shape.insert(a, 1)
        return _Sym(x.base, x.A, x.c, tuple(shape))

    def op_Transpose(self, ins, attrs):
        x = ins[0]
        perm = attrs.get("perm", list(range(len(x.shape)))[::-1])
        if sorted(perm) != list(range(len(x.shape))):
            raise self.err(f"perm {perm} does not fit shape {x.shape}")
        idx = _positions(x.shape).transpose(perm)
        return x.selected(idx, idx.shape)

    def op_Gather(self, ins, attrs):
        x = ins[0]
        if isinstance(ins[1], _Sym):
            raise self.err("gather indices must be constant")
        axis = attrs.get("axis", 0)
        ind = np.asarray(ins[1], dtype=np.int64)
        ind = np.where(ind < 0, ind + x.shape[axis], ind)
        idx = np.take(_positions(x.shape), ind, axis=axis)
        return x.selected(idx, idx.shape)

    def op_Slice(self, ins, attrs):
        x = ins[0]
        rank = len(x.shape)
        if self.opset < 10:
            starts, ends = attrs["starts"], attrs["ends"]
            axes = attrs.get("axes", list(range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts = np.asarray(self.const(1, what="starts")).reshape(-1)
            ends = np.asarray(self.const(2, what="ends")).reshape(-1)
            axes = self.const(3, required=False)
            axes = list(range(len(starts))) if axes is None else np.asarray(axes).reshape(-1)
            steps = self.const(4, required=False)
            steps = [1] * len(starts) if steps is None else np.asarray(steps).reshape(-1)
        sl = [slice(None)] * rank
        for a, s, e, st in zip(axes, starts, ends, steps):
            a = int(a) + rank if a < 0 else int(a)
            big = np.iinfo(np.int64).max // 2
            e = int(e)
            sl[a] = slice(int(s), None if (e >= big or (int(st) < 0 and e < -big)) else e, int(st))
        idx = _positions(x.shape)[tuple(sl)]
        return x.selected(idx, idx.shape)

    def op_Concat(self, ins, attrs):
        syms = [v for v in ins if isinstance(v, _Sym)]
        for s in syms[1:]:
            self.same_base(syms[0], s)
        base = syms[0].base
        n_base = self.sizes[base]
        shapes = [v.shape if isinstance(v, _Sym) else np.shape(v) for v in ins]
        rank = len(shapes[0])
        axis = attrs.get("axis", 0)
        axis = axis + rank if axis < 0 else axis
        blocks, cs, pos, off = [], [], [], 0
        any_dense = any(isinstance(s, _Sym) and s.A is not None and not sp.issparse(s.A) for s in syms)
        for v, shape in zip(ins, shapes):
            n = _size(shape)
            if isinstance(v, _Sym):
                blocks.append(v.matrix(n_base))
                cs.append(v.c)
            else:
                blocks.append(sp.csr_matrix((n, n_base)))
                cs.append(self.floats(v).reshape(-1))
            pos.append(off + _positions(shape))
            off += n
        try:
            idx = np.concatenate(pos, axis=axis)
        except ValueError as e:
            raise self.err(f"cannot concatenate shapes {shapes} on axis {axis}: {e}") from None
        if any_dense:
            a = np.vstack([b.toarray() if sp.issparse(b) else b for b in blocks])
        else:
            a = sp.vstack(blocks, format="csr")
        stacked = _Sym(base, a, np.concatenate(cs), (off,))
        return stacked.selected(idx, idx.shape)

    # ------------------------------------------------------------ arithmetic
    def _broadcast(self, x: _Sym, shape) -> _Sym:
        shape = tuple(shape)
        if shape == x.shape:
            return x
        idx = np.broadcast_to(_positions(x.shape), shape)
        return x.selected(idx, shape)

    def _binary(self, ins, kind: str):
        a, b = ins[0], ins[1]
        sa = a.shape if isinstance(a, _Sym) else np.shape(a)
        sb = b.shape if isinstance(b, _Sym) else np.shape(b)
        try:
            shape = np.broadcast_shapes(tuple(sa), tuple(sb))
        except ValueError:
            raise self.err(f"shapes {tuple(sa)} and {tuple(sb)} do not broadcast") from None
        if isinstance(a, _Sym) and isinstance(b, _Sym):
            if kind in ("Mul", "Div"):
                raise self.err(f"{kind} of two tensors that depend on the network input is not affine")
            self.same_base(a, b)
            a, b = self._broadcast(a, shape), self._broadcast(b, shape)
            n_base = self.sizes[a.base]
            sign = 1.0 if kind == "Add" else -1.0
            ma, mb = a.matrix(n_base), b.matrix(n_base)
            return _Sym(a.base, _tidy(ma + sign * mb), a.c + sign * b.c, shape)
        sym_first = isinstance(a, _Sym)
        x = self._broadcast(a if sym_first else b, shape)
        k = np.broadcast_to(self.floats(b if sym_first else a), shape).reshape(-1)
        if kind == "Add":
            return x.scaled(np.ones(x.size), k)
        if kind == "Sub":
            return x.scaled(np.ones(x.size), -k) if sym_first else x.scaled(-np.ones(x.size), k)
        if kind == "Mul":
            return x.scaled(k)
        if not sym_first:
            raise self.err("division by a tensor that depends on the network input is not affine")
        return x.scaled(1.0 / k)

    def op_Add(self, ins, attrs):
        return self._binary(ins, "Add")

    def op_Sub(self, ins, attrs):
        return self._binary(ins, "Sub")

    def op_Mul(self, ins, attrs):
        return self._binary(ins, "Mul")

    def op_Div(self, ins, attrs):
        return self._binary(ins, "Div")

    def op_Neg(self, ins, attrs):
        x = ins[0]
        return x.scaled(-np.ones(x.size))

    def _matmul(self, a, b) -> _Sym:
        """``a @ b`` (numpy semantics) where exactly one of them is symbolic."""
        if isinstance(a, _Sym) and isinstance(b, _Sym):
            raise self.err("product of two tensors that depend on the network input is not affine")
        if isinstance(a, _Sym):
            x, w = a, self.floats(b)
            while w.ndim > 2 and w.shape[0] == 1:
                w = w[0]
            if w.ndim > 2 or x.shape == ():
                raise self.err(f"cannot multiply shapes {x.shape} and {w.shape}")
            vec = w.ndim == 1
            w2 = w.reshape(-1, 1) if vec else w
            if x.shape[-1] != w2.shape[0]:
                raise self.err(f"cannot multiply shapes {x.shape} and {w.shape}")
            lead = x.shape[:-1]
            m = w2.T if _size(lead) == 1 else sp.kron(sp.identity(_size(lead), format="csr"), w2.T, format="csr")
            shape = lead if vec else lead + (w2.shape[1],)
            return x.mapped(m, shape=shape)
        w, x = self.floats(a), b
        while w.ndim > 2 and w.shape[0] == 1:
            w = w[0]
        if w.ndim > 2 or x.shape == ():
            raise self.err(f"cannot multiply shapes {w.shape} and {x.shape}")
        if len(x.shape) == 1:
            if w.shape[-1] != x.shape[0]:
                raise self.err(f"cannot multiply shapes {w.shape} and {x.shape}")
            return x.mapped(w.reshape(-1, x.shape[0]), shape=w.shape[:-1])
        lead, (mm, n) = x.shape[:-2], x.shape[-2:]
        w2 = w.reshape(1, -1) if w.ndim == 1 else w
        if w2.shape[1] != mm:
            raise self.err(f"cannot multiply shapes {w.shape} and {x.shape}")
        m = sp.kron(w2, sp.identity(n, format="csr"), format="csr")
        if _size(lead) > 1:
            m = sp.kron(sp.identity(_size(lead), format="csr"), m, format="csr")
        shape = lead + ((n,) if w.ndim == 1 else (w2.shape[0], n))
        return x.mapped(m, shape=shape)

    def op_MatMul(self, ins, attrs):
        return self._matmul(ins[0], ins[1])

    def op_Gemm(self, ins, attrs):
        a, b = ins[0], ins[1]
        if attrs.get("transA", 0):
            if isinstance(a, _Sym):
                raise self.err("Gemm with transA=1 on the network input is not supported")
            a = self.floats(a).T
        if attrs.get("transB", 0):
            if isinstance(b, _Sym):
                raise self.err("Gemm with transB=1 on the network input is not supported")
            b = self.floats(b).T
        for v in (a, b):
            shape = v.shape if isinstance(v, _Sym) else np.shape(v)
            if len(shape) != 2:
                raise self.err(f"Gemm operands must be 2-D, got shape {tuple(shape)}")
        y = self._matmul(a, b)
        alpha = float(attrs.get("alpha", 1.0))
        if alpha != 1.0:
            y = y.scaled(np.full(y.size, alpha))
        if len(ins) > 2 and ins[2] is not None:
            c = self.const(2, what="bias C")
            try:
                c = np.broadcast_to(self.floats(c), y.shape).reshape(-1)
            except ValueError:
                raise self.err(f"bias C of shape {np.shape(c)} does not broadcast to {y.shape}") from None
            y = _Sym(y.base, y.A, y.c + float(attrs.get("beta", 1.0)) * c, y.shape)
        return y

    def op_BatchNormalization(self, ins, attrs):
        x = ins[0]
        scale, bias, mean, var = (self.floats(self.const(i, what=w)) for i, w in
                                  ((1, "scale"), (2, "bias"), (3, "mean"), (4, "var")))
        if attrs.get("training_mode", 0):
            raise self.err("BatchNormalization in training mode is not supported")
        if len(x.shape) < 2 or x.shape[1] != scale.shape[0]:
            raise self.err(f"BatchNormalization with {scale.shape[0]} channels on shape {x.shape}")
        s = scale / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        t = bias - mean * s
        cshape = (1, -1) + (1,) * (len(x.shape) - 2)
        return x.scaled(np.broadcast_to(s.reshape(cshape), x.shape).reshape(-1),
                        np.broadcast_to(t.reshape(cshape), x.shape).reshape(-1))

    def op_Conv(self, ins, attrs):
        x = ins[0]
        w = self.floats(self.const(1, what="weight"))
        b = self.const(2, required=False, what="bias")
        spatial = w.ndim - 2
        if spatial not in (1, 2) or len(x.shape) != w.ndim or x.shape[0] != 1:
            raise self.err(f"only 1-D and 2-D convolutions of a single sample are supported "
                           f"(input {x.shape}, weight {w.shape})")
        ksz = list(w.shape[2:])
        if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != ksz:
            raise self.err(f"kernel_shape {attrs['kernel_shape']} does not match weight {w.shape}")
        strides = list(attrs.get("strides", [1] * spatial))
        dil = list(attrs.get("dilations", [1] * spatial))
        pads = list(attrs.get("pads", [0] * (2 * spatial)))
        auto = attrs.get("auto_pad", "NOTSET")
        insz = list(x.shape[2:])
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pp = [same_padding(insz[k], ksz[k], strides[k], dil[k], auto == "SAME_UPPER") for k in range(spatial)]
            pads = [p[0] for p in pp] + [p[1] for p in pp]
        elif auto == "VALID":
            pads = [0] * (2 * spatial)
        elif auto != "NOTSET":
            raise self.err(f"unknown auto_pad {auto}")
        if spatial == 1:       # treat as 2-D with height 1
            w = w[:, :, None, :]
            insz, strides, dil = [1] + insz, [1] + strides, [1] + dil
            pads = [0, pads[0], 0, pads[1]]
        m, out = conv2d_matrix(w, (x.shape[1], *insz), strides, pads, dil, attrs.get("group", 1))
        if spatial == 1:
            out = (out[0], out[2])
        d = None
        if b is not None:
            d = np.repeat(self.floats(b).reshape(-1), _size(out[1:]))
        return x.mapped(m, d, shape=(1,) + tuple(out))


# ===================================================================== file handling
def _read_model(path):
    import onnx
    from ..fileio import read_maybe_gzip
    p = Path(path)
    data = read_maybe_gzip(p, "ONNX file", NetworkError)
    if not data:
        raise NetworkError(f"{p}: the file is empty")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf raises several kinds of errors
        raise NetworkError(f"{p}: not an ONNX model (cannot be parsed: {type(e).__name__})") from None
    if not model.graph.node or not model.graph.output:
        raise NetworkError(f"{p}: not an ONNX model (no graph nodes/outputs found)")
    from onnx import external_data_helper
    if any(external_data_helper.uses_external_data(t) for t in model.graph.initializer):
        try:
            external_data_helper.load_external_data_for_model(model, str(p.parent))
        except Exception as e:  # noqa: BLE001
            raise NetworkError(f"{p}: cannot load the model's external data ({e})") from None
    return model


def _check_output_shape(model, out_shape, where):
    """Cross-check our output size against ONNX shape inference (when it knows the shape)."""
    import onnx
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - inference is only a cross-check
        return
    out = inferred.graph.output[0]
    dims = out.type.tensor_type.shape.dim
    if not dims:
        return
    vals = []
    for k, d in enumerate(dims):
        if d.HasField("dim_value"):
            vals.append(d.dim_value)
        elif k == 0:
            vals.append(1)
        else:
            return
    if _size(vals) != _size(out_shape):
        raise NetworkError(f"{where}: computed output shape {out_shape} disagrees with ONNX shape inference {vals}")


def network_from_onnx_model(model, name: str = "", return_input_parts: bool = False):
    """Like :func:`load_onnx` for an in-memory ``onnx.ModelProto``."""
    conv = _Converter(model, name or model.graph.name or "ONNX model")
    layers, input_shape, parts, out_shape = conv.run()
    _check_output_shape(model, out_shape, conv.where)
    net = Network(tuple(layers), input_shape, name=name or model.graph.name).simplified()
    return (net, parts) if return_input_parts else net


def load_onnx(path, return_input_parts: bool = False):
    """Load an ONNX (or gzipped ONNX) network as a :class:`Network`.

    Supported operators on tensors that depend on the input: Gemm, MatMul (with a constant),
    Add/Sub/Mul/Div/Neg with constants (broadcast), Conv (1-D/2-D, lowered to sparse matrices),
    BatchNormalization (inference), Relu, Sigmoid, Tanh, Flatten, Reshape, Squeeze, Unsqueeze,
    Transpose, Gather/Slice with constant indices, Concat, Identity, Dropout, Cast (to float),
    Shape/Size; any node whose inputs are all constant is folded. The batch dimension is taken as
    1 and dropped. Several graph inputs are concatenated (flattened, in graph order) into the
    network's single input; with ``return_input_parts=True`` the result is ``(network, parts)``
    with one :class:`InputPart` per graph input. Errors raise :class:`NetworkError`.
    """
    p = Path(path)
    model = _read_model(p)
    stem = p.name[:-len(".onnx.gz")] if p.name.endswith(".onnx.gz") else p.stem
    return network_from_onnx_model(model, name=stem, return_input_parts=return_input_parts)


# ===================================================================== export
def save_onnx(network: Network, path, dtype=np.float32, opset: int = 13,
              input_name: str = "input", output_name: str = "output"):
    """Write ``network`` as an ONNX graph (Gemm, Relu, Sigmoid, Tanh; sparse layers densified).

    The input has shape ``[1, n]`` for a flat network, or ``[1, *input_shape]`` followed by a
    Flatten node; the output ``[1, n_outputs]``. ``dtype`` is float32 (default) or float64.
    A path ending in ``.gz`` is gzipped. Returns the ``onnx.ModelProto``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise NetworkError(f"save_onnx supports float32 and float64, not {dtype}")
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    shape = tuple(network.input_shape)
    nodes, inits = [], []
    cur = input_name
    if len(shape) > 1:
        in_dims = [1, *shape]
        nodes.append(helper.make_node("Flatten", [cur], ["flat_input"], name="flatten_input", axis=1))
        cur = "flat_input"
    else:
        in_dims = [1, network.n_inputs]
    for i, layer in enumerate(network.layers):
        out = output_name if i == len(network.layers) - 1 else f"v{i + 1}"
        if isinstance(layer, Affine):
            wn, bn = f"layer{i}.weight", f"layer{i}.bias"
            inits.append(numpy_helper.from_array(layer.dense_W().astype(dtype), wn))
            inits.append(numpy_helper.from_array(layer.b.astype(dtype), bn))
            nodes.append(helper.make_node("Gemm", [cur, wn, bn], [out], name=f"gemm{i}", transB=1))
        else:
            op = {ReLU: "Relu", Sigmoid: "Sigmoid", Tanh: "Tanh"}[type(layer)]
            nodes.append(helper.make_node(op, [cur], [out], name=f"{op.lower()}{i}"))
        cur = out
    graph = helper.make_graph(
        nodes, network.name or "cegarnn_network",
        [helper.make_tensor_value_info(input_name, elem, in_dims)],
        [helper.make_tensor_value_info(output_name, elem, [1, network.n_outputs])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="cegarnn")
    model.ir_version = 8
    onnx.checker.check_model(model)
    p = Path(path)
    data = model.SerializeToString()
    if p.suffix == ".gz":
        with gzip.open(p, "wb") as f:
            f.write(data)
    else:
        p.write_bytes(data)
    return model
