"""A reader of ONNX files that does not import ``onnx`` (whose import takes about a second).

It decodes the protobuf wire format (varint, 64-bit, length-delimited, 32-bit fields; packed and
unpacked repeated scalars) for the messages :mod:`.onnx_io` reads (field numbers as in onnx's
``onnx.proto``) into light objects with the protobuf attribute names (``model.graph.node``,
``node.op_type``, ``tensor.raw_data`` ...), ``HasField``, and ``raw()`` (the message's own bytes).
Repeated numbers are numpy arrays; unknown fields are skipped, as protobuf does.

What it does not reproduce exactly raises :class:`WireUnsupported` (unexpected wire types, groups,
a singular message given twice (protobuf merges), unknown enum values, invalid UTF-8, external
data, segments, element types beyond the plain numpy ones); bytes that are not protobuf raise
:class:`WireMalformed`. Both are :class:`~.ir.NetworkError`; ``load_onnx`` then asks onnx.
"""
from __future__ import annotations

import struct
import sys

import numpy as np

from .ir import NetworkError

__all__ = ["WireError", "WireMalformed", "WireUnsupported", "parse", "parse_model", "to_array", "attribute_value",
           "uses_external_data"]


class WireError(NetworkError):
    """The bytes cannot be read by this module (base class)."""


class WireMalformed(WireError):
    """Not valid protobuf data (truncated, impossible wire type or length)."""


class WireUnsupported(WireError):
    """Valid data that uses something this module leaves to the ``onnx`` package."""


def _varint(buf: bytes, pos: int, end: int):
    result = shift = 0
    while True:
        if pos >= end:
            raise WireMalformed("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise WireMalformed("varint longer than 10 bytes")


def _packed_varints(chunk: bytes) -> np.ndarray:
    """All varints of a packed field (uint64, vectorised)."""
    a = np.frombuffer(chunk, dtype=np.uint8)
    if a.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if a[-1] & 0x80:
        raise WireMalformed("truncated packed varint")
    ends = np.flatnonzero(a < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lens = ends - starts + 1
    if lens.max() > 10:
        raise WireMalformed("varint longer than 10 bytes")
    shift = (7 * (np.arange(a.size) - np.repeat(starts, lens))).astype(np.uint64)
    return np.add.reduceat((a & 0x7F).astype(np.uint64) << shift, starts)   # disjoint bits: sum = or


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


# kind -> (wire type of one element, numpy dtype of a repeated field); decoding of one element
_SCALAR = {"i64": (0, np.int64), "i32": (0, np.int32), "u64": (0, np.uint64), "f32": (5, np.float32),
           "f64": (1, np.float64)}
_CONVERT = {"i64": lambda v: _signed(v, 64), "i32": lambda v: _signed(v, 32), "u64": lambda v: v,
            "f32": lambda b: struct.unpack("<f", b)[0], "f64": lambda b: struct.unpack("<d", b)[0]}


class _Message:
    """Base of the message classes: ``_fields`` maps a field number to
    ``(name, kind, repeated, oneof)``; kind is a scalar kind, 'str', 'bytes', 'skip' (recognised,
    not decoded), a frozenset (closed enum: its values) or a message class."""

    _fields: dict = {}
    _names: dict = {}

    def __init__(self, buf=b"", start=0, end=0):
        self._present = set()
        self._span = (buf, start, end)

    def __getattr__(self, name):        # defaults of absent fields, made on first access
        spec = type(self)._names.get(name)
        if spec is None:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        _, kind, rep, _ = spec
        if rep:
            v = np.zeros(0, _SCALAR[kind][1]) if kind in _SCALAR else []
        else:
            v = kind() if isinstance(kind, type) else {"str": "", "bytes": b"", "f32": 0.0, "f64": 0.0}.get(kind, 0)
        setattr(self, name, v)
        return v

    def HasField(self, name: str) -> bool:  # noqa: N802 - protobuf's name
        return name in self._present

    def raw(self) -> bytes:
        return bytes(self._span[0][self._span[1]:self._span[2]])


def _message(name: str, *fields) -> type:
    specs = {}
    for f in fields:
        num, fname, kind = f[:3]
        specs[num] = (fname, kind, "rep" in f[3:], next((x for x in f[3:] if x != "rep"), None))
    return type(name, (_Message,), {"_fields": specs, "_names": {s[0]: s for s in specs.values()}})


def _parse(cls, buf: bytes, pos: int, end: int, depth: int = 0):
    if depth > 64:
        raise WireUnsupported("messages nested too deeply")
    msg = cls(buf, pos, end)
    fields, chunks, d = cls._fields, {}, msg.__dict__
    while pos < end:
        key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if num == 0 or num >= 1 << 29:
            raise WireMalformed(f"invalid field number {num}")
        if wt == 0:
            val, pos = _varint(buf, pos, end)
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4
            if pos + n > end:
                raise WireMalformed("truncated fixed-width field")
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 2:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise WireMalformed(f"field {num} of {cls.__name__} runs past the end of its message")
            val, pos = (pos, pos + n), pos + n
        elif wt in (3, 4):
            raise WireUnsupported("protobuf groups")
        else:
            raise WireMalformed(f"invalid wire type {wt}")
        spec = fields.get(num)
        if spec is None:
            continue                                            # unknown field: skipped
        name, kind, rep, oneof = spec
        if oneof is not None:
            for other in cls._names.values():
                if other[3] == oneof and other[0] != name:
                    msg._present.discard(other[0])
                    d.pop(other[0], None)
        if kind in _SCALAR:
            ewt, dtype = _SCALAR[kind]
            if rep and wt == 2:                                 # packed
                chunk = buf[val[0]:val[1]]
                if ewt == 0:
                    arr = _packed_varints(chunk)            # two's complement, like protobuf:
                    arr = arr.astype(np.uint32).view(np.int32) if kind == "i32" else arr.view(dtype)
                else:
                    if len(chunk) % (8 if ewt == 1 else 4):
                        raise WireMalformed("packed field length is not a multiple of its element size")
                    arr = np.frombuffer(chunk, dtype=np.dtype(dtype).newbyteorder("<"))
                chunks.setdefault(name, []).append(arr)
                continue
            if wt != ewt:
                raise WireUnsupported(f"field {cls.__name__}.{name} with wire type {wt}")
            val = _CONVERT[kind](val)
            if rep:
                chunks.setdefault(name, []).append(np.array([val], dtype=dtype))
                continue
        elif wt != (0 if isinstance(kind, frozenset) else 2):
            raise WireUnsupported(f"field {cls.__name__}.{name} with wire type {wt}")
        elif isinstance(kind, frozenset):
            val = _signed(val, 32)
            if val not in kind:
                raise WireUnsupported(f"value {val} of enum field {cls.__name__}.{name}")
        elif kind == "bytes":
            val = bytes(buf[val[0]:val[1]])
        elif kind == "str":
            try:
                val = bytes(buf[val[0]:val[1]]).decode("utf-8")
            except UnicodeDecodeError:
                raise WireUnsupported(f"invalid UTF-8 in {cls.__name__}.{name}") from None
        elif kind == "skip":
            val = None                                          # recognised, not decoded
        else:                                                   # a message
            if not rep and name in msg._present:
                raise WireUnsupported(f"{cls.__name__}.{name} given twice (protobuf merges them)")
            val = _parse(kind, buf, val[0], val[1], depth + 1)
        if rep:
            d.setdefault(name, []).append(val)
        else:
            d[name] = val
            msg._present.add(name)
    for name, parts in chunks.items():
        dtype = _SCALAR[cls._names[name][1]][1]
        d[name] = parts[0] if len(parts) == 1 else np.concatenate(parts).astype(dtype, copy=False)
    return msg


_S = "str"                     # fields not listed here (doc strings, metadata, functions ...) are skipped
StringStringEntryProto = _message("StringStringEntryProto", (1, "key", _S), (2, "value", _S))
TensorProto = _message(
    "TensorProto", (1, "dims", "i64", "rep"), (2, "data_type", "i32"), (3, "segment", "skip"),
    (4, "float_data", "f32", "rep"), (5, "int32_data", "i32", "rep"), (6, "string_data", "bytes", "rep"),
    (7, "int64_data", "i64", "rep"), (8, "name", _S), (9, "raw_data", "bytes"), (10, "double_data", "f64", "rep"),
    (11, "uint64_data", "u64", "rep"), (13, "external_data", StringStringEntryProto, "rep"),
    (14, "data_location", frozenset({0, 1})))
Dimension = _message("Dimension", (1, "dim_value", "i64", "value"), (2, "dim_param", _S, "value"))
TensorShapeProto = _message("TensorShapeProto", (1, "dim", Dimension, "rep"))
TypeProtoTensor = _message("TypeProtoTensor", (1, "elem_type", "i32"), (2, "shape", TensorShapeProto))
TypeProto = _message("TypeProto", (1, "tensor_type", TypeProtoTensor, "value"), *(
    (k, n, "skip", "value") for k, n in ((4, "sequence_type"), (5, "map_type"), (7, "opaque_type"),
                                         (8, "sparse_tensor_type"), (9, "optional_type"))))
ValueInfoProto = _message("ValueInfoProto", (1, "name", _S), (2, "type", TypeProto))
AttributeProto = _message(
    "AttributeProto", (1, "name", _S), (2, "f", "f32"), (3, "i", "i64"), (4, "s", "bytes"), (5, "t", TensorProto),
    (7, "floats", "f32", "rep"), (8, "ints", "i64", "rep"), (9, "strings", "bytes", "rep"),
    (10, "tensors", TensorProto, "rep"), (20, "type", frozenset(range(15))), (21, "ref_attr_name", _S))
NodeProto = _message("NodeProto", (1, "input", _S, "rep"), (2, "output", _S, "rep"), (3, "name", _S),
                     (4, "op_type", _S), (5, "attribute", AttributeProto, "rep"), (7, "domain", _S))
GraphProto = _message("GraphProto", (1, "node", NodeProto, "rep"), (2, "name", _S),
                      (5, "initializer", TensorProto, "rep"), (11, "input", ValueInfoProto, "rep"),
                      (12, "output", ValueInfoProto, "rep"), (13, "value_info", ValueInfoProto, "rep"))
AttributeProto._fields[6] = ("g", GraphProto, False, None)      # recursive: subgraphs of If/Loop/Scan
AttributeProto._names["g"] = AttributeProto._fields[6]
OperatorSetIdProto = _message("OperatorSetIdProto", (1, "domain", _S), (2, "version", "i64"))
ModelProto = _message("ModelProto", (1, "ir_version", "i64"), (2, "producer_name", _S), (7, "graph", GraphProto),
                      (8, "opset_import", OperatorSetIdProto, "rep"))


def parse(cls, data):
    """The message of class ``cls`` (e.g. :class:`TensorProto`) encoded in ``data`` (bytes)."""
    return _parse(cls, bytes(data), 0, len(data))


def parse_model(data) -> ModelProto:
    return parse(ModelProto, data)


# ------------------------------------------------------------------------ values
# ONNX element type -> (numpy dtype, field holding the values when there is no raw_data, its dtype)
_DTYPES = {1: (np.float32, "float_data", np.float32), 2: (np.uint8, "int32_data", np.int32),
           3: (np.int8, "int32_data", np.int32), 4: (np.uint16, "int32_data", None),
           5: (np.int16, "int32_data", None), 6: (np.int32, "int32_data", np.int32),
           7: (np.int64, "int64_data", np.int64), 9: (np.bool_, "int32_data", None),
           10: (np.float16, "int32_data", None), 11: (np.float64, "double_data", np.float64),
           12: (np.uint32, "uint64_data", np.uint64), 13: (np.uint64, "uint64_data", np.uint64)}


def uses_external_data(t) -> bool:
    return t.data_location == 1 or len(t.external_data) > 0


def to_array(t) -> np.ndarray:
    """The array of a :class:`TensorProto`: what ``onnx.numpy_helper.to_array`` gives (same dtype,
    shape and values; raw data read as little-endian). Element types other than float16/32/64,
    (u)int8/16/32/64 and bool, external data and segments raise :class:`WireUnsupported`."""
    if sys.byteorder != "little":
        raise WireUnsupported("big-endian machine")
    if t.HasField("segment"):
        raise WireUnsupported("tensor segments")
    if uses_external_data(t):
        raise WireUnsupported(f"tensor '{t.name}' has external data")
    if t.data_type not in _DTYPES:
        raise WireUnsupported(f"tensor '{t.name}' has element type {t.data_type}")
    dtype, field, storage = _DTYPES[t.data_type]
    dims = tuple(int(k) for k in t.dims)
    if t.HasField("raw_data"):
        return np.frombuffer(t.raw_data, dtype=dtype).reshape(dims)
    data = np.asarray(getattr(t, field))
    if storage is None:                     # 16-bit types and bool: bit patterns in int32_data
        small = np.uint8 if dtype is np.bool_ else np.uint16
        return data.astype(np.int32).view(np.uint32).astype(small).reshape(dims).view(dtype)
    return np.asarray(data, dtype=storage).astype(dtype).reshape(dims)


_ATTR_FIELDS = {1: "f", 2: "i", 3: "s", 4: "t", 5: "g"}
_ATTR_LISTS = {6: "floats", 7: "ints", 8: "strings", 9: "tensors"}


def attribute_value(a):
    """``onnx.helper.get_attribute_value`` for an :class:`AttributeProto` (numbers as Python
    numbers, lists as lists; tensors and graphs as this module's messages)."""
    if a.ref_attr_name:
        raise WireUnsupported("reference attribute")
    if a.type in _ATTR_FIELDS:
        return getattr(a, _ATTR_FIELDS[a.type])
    if a.type in _ATTR_LISTS:
        v = getattr(a, _ATTR_LISTS[a.type])
        return v.tolist() if isinstance(v, np.ndarray) else list(v)
    if a.type != 0:
        raise WireUnsupported(f"attribute '{a.name}' of type {a.type}")
    return None
