"""The onnx-free ONNX reader (cegarnn.network.onnx_wire) and load_onnx's fast path: the same IR
as the onnx-based path (bit for bit) on every benchmark and committed model, to_array /
attribute values as onnx's helpers, broken bytes as NetworkError, what goes to the slow path."""
from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper

import cegarnn.network.onnx_io as onnx_io
from cegarnn.fileio import read_maybe_gzip
from cegarnn.network import Affine, Network, NetworkError, ReLU, load_onnx, network_from_onnx_model, save_onnx
from cegarnn.network import onnx_wire as wire
from test_network_io import fvi as _fvi, make_model

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT.parent / "shared" / "benchmarks"
BENCH_FILES = sorted(p for p in BENCHMARKS.rglob("*") if p.name.endswith((".onnx", ".onnx.gz"))) \
    if BENCHMARKS.is_dir() else []


def _committed_models():
    try:
        out = subprocess.run(["git", "ls-files", "*.onnx", "*.onnx.gz"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(ROOT.glob("experiments/models/**/*.onnx"))
    return [ROOT / ln for ln in out.splitlines() if ln]


MODELS = BENCH_FILES + _committed_models()
SLOW_PATH: set = set()        # names of files expected to need onnx (none today)


# ------------------------------------------------------------------------ helpers
class _Spy:
    """Counts the calls of onnx_io._read_model (the slow path)."""

    def __init__(self, monkeypatch):
        self.calls = 0
        orig = onnx_io._read_model

        def read(*a, **k):
            self.calls += 1
            return orig(*a, **k)
        monkeypatch.setattr(onnx_io, "_read_model", read)


def _dense(m):
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def assert_same_network(a: Network, b: Network):
    assert a.input_shape == b.input_shape and a.name == b.name and len(a.layers) == len(b.layers)
    for x, y in zip(a.layers, b.layers):
        assert type(x) is type(y)
        if isinstance(x, Affine):
            assert type(x.W) is type(y.W) and x.W.dtype == y.W.dtype and x.b.dtype == y.b.dtype
            assert np.array_equal(_dense(x.W), _dense(y.W)) and np.array_equal(x.b, y.b)
            assert x.folded_terms == y.folded_terms and (x.folded is None) == (y.folded is None)
        else:
            assert x == y


def _onnx_path(path: Path, **kw):
    """The loader on the model parsed by onnx (the previous path)."""
    model = onnx_io._read_model(path, read_maybe_gzip(path, "ONNX file", NetworkError))
    stem = path.name[:-len(".onnx.gz")] if path.name.endswith(".onnx.gz") else path.stem
    return network_from_onnx_model(model, name=stem, **kw)


def _both(path: Path, monkeypatch):
    spy = _Spy(monkeypatch)
    net, parts = load_onnx(path, return_input_parts=True)
    calls = spy.calls
    ref, ref_parts = _onnx_path(path, return_input_parts=True)
    assert parts == ref_parts
    assert_same_network(net, ref)
    return calls


def _save(model, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _model(nodes, inputs, outputs, inits, opset=13):
    (output,) = outputs
    return make_model(nodes, inputs, output, inits, opset)


# ------------------------------------------------------------------------ whole models
def test_there_are_models_to_compare():
    assert len(_committed_models()) >= 10
    if BENCHMARKS.is_dir():
        assert len(BENCH_FILES) >= 5


@pytest.mark.parametrize("path", MODELS, ids=lambda p: str(p.relative_to(p.parents[2])))
def test_wire_path_gives_the_same_network_as_onnx(path, monkeypatch):
    calls = _both(path, monkeypatch)
    assert calls == (1 if path.name in SLOW_PATH else 0)


def test_gzipped_model(tmp_path, monkeypatch):
    src = ROOT / "experiments" / "models" / "shifts" / "classifier_conv.onnx"
    gz = tmp_path / "classifier_conv.onnx.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    assert _both(gz, monkeypatch) == 0


def test_constant_folding_uses_onnx_for_that_node_only(tmp_path, monkeypatch):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (older torch exports): folded by onnx's
    reference evaluator, on the node re-read from its own bytes; the file is read once, by onnx_wire."""
    W = np.random.default_rng(6).normal(size=(2, 12)).astype(np.float32)
    nodes = [helper.make_node("Shape", ["x"], ["shp"], name="shape"),
             helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
             helper.make_node("Gather", ["shp", "zero"], ["n"], name="gather_batch", axis=0),
             helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0]),
             helper.make_node("Constant", [], ["m1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
             helper.make_node("Concat", ["n1", "m1"], ["target"], name="cat", axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),
             helper.make_node("Gemm", ["flat", "W"], ["y"], name="gemm", transB=1)]
    path = _save(_model(nodes, [_fvi("x", [1, 3, 2, 2])], [_fvi("y", [1, 2])], {"W": W}, opset=11),
                 tmp_path / "fold.onnx")
    assert _both(path, monkeypatch) == 0


def test_external_data_goes_through_the_slow_path(tmp_path, monkeypatch):
    W = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
    model = _model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)], [_fvi("x", [1, 3])],
                   [_fvi("y", [1, 4])], {"W": W})
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    assert wire.uses_external_data(wire.parse_model(path.read_bytes()).graph.initializer[0])
    assert _both(path, monkeypatch) == 1
    assert np.array_equal(load_onnx(path).layers[0].W, W.astype(np.float64))


def test_unsupported_element_type_goes_through_the_slow_path(tmp_path, monkeypatch):
    """A bfloat16 weight (onnx needs ml_dtypes for it): read by onnx, same result."""
    W = helper.make_tensor("W", TensorProto.BFLOAT16, [2, 3], [1.0, 2.0, -0.5, 0.25, 3.0, 4.0])
    graph = helper.make_graph([helper.make_node("Cast", ["W"], ["Wf"], to=TensorProto.FLOAT),
                               helper.make_node("Gemm", ["x", "Wf"], ["y"], transB=1)], "bf",
                              [_fvi("x", [1, 3])], [_fvi("y", [1, 2])], [W])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = _save(model, tmp_path / "bf16.onnx")
    assert _both(path, monkeypatch) == 1


def test_output_shape_cross_check(tmp_path, monkeypatch):
    W = np.ones((3, 4), np.float32)
    gemm = [helper.make_node("Gemm", ["x", "W"], ["y"], transB=1)]
    wrong = _save(_model(gemm, [_fvi("x", [1, 4])], [_fvi("y", [1, 5])], {"W": W}), tmp_path / "wrong.onnx")
    with pytest.raises(NetworkError, match=r"computed output shape \(1, 3\) disagrees with ONNX shape inference"):
        load_onnx(wrong)
    for decl in (None, [1, "k"], ["N", 3]):      # undeclared / symbolic (onnx's inference runs) / declared
        path = _save(_model(gemm, [_fvi("x", [1, 4])], [_fvi("y", decl)], {"W": W}), tmp_path / "o.onnx")
        assert _both(path, monkeypatch) == 0
        assert load_onnx(path).n_outputs == 3


# ------------------------------------------------------------------------ tensors and attributes
def _tensor(t: onnx.TensorProto):
    return wire.parse(wire.TensorProto, t.SerializeToString())


def assert_same_array(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32, np.float16, np.int8, np.uint8,
                                   np.int16, np.uint16, np.uint32, np.uint64, np.bool_])
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3, 4)])
def test_to_array_equals_numpy_helper(dtype, shape):
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        v = (rng.normal(size=shape) * 100).astype(dtype)
    elif dtype is np.bool_:
        v = rng.random(shape) < 0.5
    else:
        info = np.iinfo(dtype)
        v = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    raw = numpy_helper.from_array(v, "t")
    fields = helper.make_tensor("t", helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape, v.reshape(-1))
    assert not fields.HasField("raw_data")
    for t in (raw, fields):
        assert_same_array(wire.to_array(_tensor(t)), numpy_helper.to_array(t))


def test_to_array_special_values_and_unpacked_fields():
    v = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4e38], np.float32)
    t = helper.make_tensor("f", TensorProto.FLOAT, [7], v)
    assert_same_array(wire.to_array(_tensor(t)), numpy_helper.to_array(t))
    ints = helper.make_tensor("i", TensorProto.INT64, [3], [-1, -(2 ** 63), 2 ** 63 - 1])
    assert_same_array(wire.to_array(_tensor(ints)), numpy_helper.to_array(ints))
    # dims (field 1) and float_data (field 4) not packed: one tag per element, as old writers did
    data = bytes([0x08, 2, 0x08, 1, 0x10, 1]) + b"".join(b"\x25" + np.float32(x).tobytes() for x in (1.5, -2.0))
    ref = onnx.TensorProto.FromString(data)
    assert_same_array(wire.to_array(wire.parse(wire.TensorProto, data)), numpy_helper.to_array(ref))


def test_to_array_unsupported():
    for t in (helper.make_tensor("b", TensorProto.BFLOAT16, [2], [1.0, 2.0]),
              helper.make_tensor("s", TensorProto.STRING, [1], [b"x"]),
              helper.make_tensor("c", TensorProto.COMPLEX64, [1], [1 + 2j]),
              onnx.TensorProto(name="u", dims=[1])):
        with pytest.raises(wire.WireUnsupported):
            wire.to_array(_tensor(t))
    ext = numpy_helper.from_array(np.ones(2, np.float32), "e")
    ext.data_location = TensorProto.EXTERNAL
    with pytest.raises(wire.WireUnsupported, match="external"):
        wire.to_array(_tensor(ext))


def test_attribute_values_equal_onnx_helper():
    t = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3))
    node = helper.make_node("Foo", ["a"], ["b"], f=0.1, i=-7, s="same", ints=[1, -2, 2 ** 40], floats=[0.5, 1e-3],
                            strings=["x", "yz"], t=t)
    node.attribute.append(helper.make_attribute("empty_ints", [], attr_type=onnx.AttributeProto.INTS))
    node.attribute.append(onnx.AttributeProto(name="untyped", i=3))                 # type UNDEFINED: None
    w = wire.parse(wire.NodeProto, node.SerializeToString())
    assert (w.op_type, list(w.input), list(w.output)) == ("Foo", ["a"], ["b"])
    for a, b in zip(w.attribute, node.attribute):
        va, vb = wire.attribute_value(a), helper.get_attribute_value(b)
        if b.type == onnx.AttributeProto.TENSOR:
            assert_same_array(wire.to_array(va), numpy_helper.to_array(vb))
        else:
            assert va == vb and type(va) is type(vb)
            if isinstance(va, list):
                assert [type(x) for x in va] == [type(x) for x in vb]
    assert onnx.NodeProto.FromString(w.raw()) == node


# ------------------------------------------------------------------------ broken bytes
def _small_model_bytes():
    return save_onnx(Network((Affine(np.ones((2, 3)), np.zeros(2)), ReLU()), (3,)), None).SerializeToString()


def test_truncated_and_garbled_bytes_raise_network_error(tmp_path):
    data = _small_model_bytes()
    cut_in_weights = data.index(np.ones(6, np.float32).tobytes()) + 5
    with pytest.raises(NetworkError):
        wire.parse_model(data[:cut_in_weights])
    rng = np.random.default_rng(0)
    for k in list(range(len(data))) + [None] * 300:
        if k is None:
            b = bytearray(data)
            b[rng.integers(len(b))] = rng.integers(256)
            b = bytes(b)
        else:
            b = data[:k]
        try:
            wire.parse_model(b)
        except NetworkError:
            pass
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:cut_in_weights])
    with pytest.raises(NetworkError, match="not an ONNX model"):
        load_onnx(path)
    path.write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + data)        # a length far past the end
    with pytest.raises(NetworkError, match="not an ONNX model"):
        load_onnx(path)
