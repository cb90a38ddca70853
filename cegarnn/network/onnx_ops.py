"""ONNX operators on symbolic tensors: the operator half of the ONNX loader (:mod:`.onnx_io`).

A tensor that depends on the network input is a :class:`_Sym`: an affine function ``A v + c`` of
the latest IR value ``v`` (``A`` dense, scipy-sparse, or ``None`` for the identity) with its ONNX
shape. :class:`OnnxOperators` holds one method ``op_<OpType>(ins, attrs)`` per supported operator;
affine operators only update ``A`` and ``c``, an activation materialises the pending map as an IR
layer. It is mixed into the graph walker ``onnx_io._Converter``, which provides ``err``,
``const``, ``floats``, ``activate``, ``same_base``, ``opset`` and ``sizes``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .conv import conv2d_matrix, same_padding
from .ir import ReLU, Sigmoid, Tanh

_DENSE_FRACTION = 0.3  # sparse matrices denser than this are stored dense


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


class OnnxOperators:
    """The ``op_<OpType>`` methods of the ONNX converter (see the module docstring)."""

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
