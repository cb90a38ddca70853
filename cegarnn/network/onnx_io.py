"""Conversion between ONNX files and the IR: loading (the graph walker) and saving.

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

The operators themselves are converted in :mod:`.onnx_ops` (symbolic tensors, one method per
operator); convolutions are lowered in :mod:`.conv`.

Reading without ``onnx`` (start-up time): :func:`load_onnx` first decodes the file with
:mod:`.onnx_wire` (no ``import onnx``, which takes about a second) and runs the same converter on
it. It imports onnx only when needed: a node folded with the reference evaluator (that node alone
is re-read by onnx from its own bytes), and, reading the whole file again with onnx (the slow
path, exactly the previous loader), for external data, anything :mod:`.onnx_wire` leaves to onnx
(:class:`~.onnx_wire.WireUnsupported`: other element types, reference attributes, protobuf
constructs it does not reproduce ...) and for bytes it cannot decode or that hold no graph (so
the messages for broken files are the previous ones). In-memory ``onnx.ModelProto`` models and
:func:`save_onnx` use onnx as before.

The output-shape cross-check (:func:`_check_output_shape`) compares the size of our converted
output with ONNX shape inference. It guards the converter (a wrong shape computation) and models
whose declared output disagrees with their graph, not only malformed files, so it is kept on both
paths. ONNX shape inference keeps a declared graph-output shape whose non-batch dimensions are
all static, so when the model declares such a shape and our size equals it, the check would pass
and the fast path stops there without onnx; in every other case (no declared shape, symbolic
dimensions, or a disagreement) it runs the real check on the model parsed by onnx, so the outcome
is the same as before in all cases.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import onnx_wire
from .ir import Affine, Network, NetworkError, ReLU, Sigmoid, Tanh
from .onnx_ops import OnnxOperators, _is_identity, _size, _Sym


# ===================================================================== the loader
@dataclass(frozen=True)
class InputPart:
    """One graph input inside the network's flat input vector: ``x[start:stop]`` reshaped to ``shape``."""

    name: str
    shape: tuple
    start: int
    stop: int


class _Converter(OnnxOperators):
    """Walks an ONNX graph node by node; the operators are the ``op_*`` methods of
    :class:`~.onnx_ops.OnnxOperators`."""

    def __init__(self, model, where: str, wire: bool = False):
        self.model = model
        self.where = where
        self.wire = wire          # model read by onnx_wire (else an onnx.ModelProto)
        if wire:
            self.to_array, self.attribute_value = onnx_wire.to_array, onnx_wire.attribute_value
        else:
            from onnx import helper, numpy_helper
            self.to_array, self.attribute_value = numpy_helper.to_array, helper.get_attribute_value
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
        g = self.model.graph
        if len(g.output) != 1:
            raise self.err(f"the graph has {len(g.output)} outputs; only single-output networks are supported")
        for t in g.initializer:
            self.vals[t.name] = self.to_array(t)
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
    def attributes(self, node) -> dict:
        out = {}
        for a in node.attribute:
            v = self.attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            out[a.name] = v
        return out

    def constant_node(self, node):
        for a in node.attribute:
            if a.name == "value":
                return self.to_array(a.t)
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
        import onnx
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        opsets = list(self.model.opset_import)
        if self.wire:             # the node and opsets as onnx protos, from the node's own bytes
            try:
                node = onnx.NodeProto.FromString(node.raw())
            except Exception as e:  # noqa: BLE001
                raise onnx_wire.WireUnsupported(f"onnx cannot parse node {node.name!r}: {e}") from None
            opsets = [helper.make_opsetid(o.domain, o.version) for o in opsets]
        feeds = {n: np.asarray(v) for n, v in zip(node.input, ins) if n}
        try:
            inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                      for n, v in feeds.items()]
            outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
            graph = helper.make_graph([node], "fold", inputs, outputs)
            model = helper.make_model(graph, opset_imports=opsets)
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


# ===================================================================== file handling
def _read_bytes(p: Path) -> bytes:
    from ..fileio import read_maybe_gzip
    data = read_maybe_gzip(p, "ONNX file", NetworkError)
    if not data:
        raise NetworkError(f"{p}: the file is empty")
    return data


def _read_model(p: Path, data: bytes):
    """The slow path: ``data`` (the bytes of file ``p``) parsed by onnx, external data loaded."""
    import onnx
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


def _declared_output_agrees(model, out_shape) -> bool:
    """Whether graph output 0 declares a static shape (non-batch dimensions all known) of our
    size. ONNX shape inference keeps such a declared shape as it is, so then
    :func:`_check_output_shape` would pass; otherwise that check has to run."""
    out = model.graph.output[0]
    if not out.type.HasField("tensor_type") or not out.type.tensor_type.HasField("shape"):
        return False
    dims = list(out.type.tensor_type.shape.dim)
    if not dims or not all(d.HasField("dim_value") for d in dims[1:]):
        return False
    vals = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    return _size(vals) == _size(out_shape)


def network_from_onnx_model(model, name: str = "", return_input_parts: bool = False):
    """Like :func:`load_onnx` for an in-memory ``onnx.ModelProto`` (or a model read by
    :func:`.onnx_wire.parse_model`)."""
    wire = isinstance(model, onnx_wire.ModelProto)
    conv = _Converter(model, name or model.graph.name or "ONNX model", wire=wire)
    layers, input_shape, parts, out_shape = conv.run()
    if wire and not _declared_output_agrees(model, out_shape):
        import onnx                 # the full check, on the model parsed by onnx
        try:
            proto = onnx.load_model_from_string(model.raw())
        except Exception as e:  # noqa: BLE001
            raise onnx_wire.WireUnsupported(f"onnx cannot parse the model: {e}") from None
        _check_output_shape(proto, out_shape, conv.where)
    elif not wire:
        _check_output_shape(model, out_shape, conv.where)
    net = Network(tuple(layers), input_shape, name=name or model.graph.name).simplified()
    return (net, parts) if return_input_parts else net


def _load_wire(data: bytes, stem: str, return_input_parts: bool):
    """The fast path (no onnx import): raises :class:`.onnx_wire.WireError` for whatever it leaves
    to onnx, :class:`NetworkError` for a model the converter rejects."""
    model = onnx_wire.parse_model(data)
    if not model.graph.node or not model.graph.output:
        raise onnx_wire.WireUnsupported("no graph nodes/outputs")   # onnx gives today's message
    if any(onnx_wire.uses_external_data(t) for t in model.graph.initializer):
        raise onnx_wire.WireUnsupported("external data")
    return network_from_onnx_model(model, name=stem, return_input_parts=return_input_parts)


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
    data = _read_bytes(p)
    stem = p.name[:-len(".onnx.gz")] if p.name.endswith(".onnx.gz") else p.stem
    try:
        return _load_wire(data, stem, return_input_parts)
    except onnx_wire.WireError:
        pass                        # left to onnx: the slow path below decides, as before
    model = _read_model(p, data)
    return network_from_onnx_model(model, name=stem, return_input_parts=return_input_parts)


# ===================================================================== export
def save_onnx(network: Network, path, dtype=np.float32, opset: int = 13,
              input_name: str = "input", output_name: str = "output", batch=1):
    """Write ``network`` as an ONNX graph (Gemm, Relu, Sigmoid, Tanh; sparse layers densified).

    The input has shape ``[batch, n]`` for a flat network, or ``[batch, *input_shape]`` followed by
    a Flatten node; the output ``[batch, n_outputs]``. ``batch`` is 1 (default), another size, or
    a name (e.g. ``"N"``) for a dynamic batch. ``dtype`` is float32 (default) or float64.
    A path ending in ``.gz`` is gzipped; ``path=None`` writes nothing. Returns the
    ``onnx.ModelProto``.
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
        in_dims = [batch, *shape]
        nodes.append(helper.make_node("Flatten", [cur], ["flat_input"], name="flatten_input", axis=1))
        cur = "flat_input"
    else:
        in_dims = [batch, network.n_inputs]
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
        [helper.make_tensor_value_info(output_name, elem, [batch, network.n_outputs])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="cegarnn")
    model.ir_version = 8
    onnx.checker.check_model(model)
    if path is None:
        return model
    p = Path(path)
    data = model.SerializeToString()
    if p.suffix == ".gz":
        with gzip.open(p, "wb") as f:
            f.write(data)
    else:
        p.write_bytes(data)
    return model
