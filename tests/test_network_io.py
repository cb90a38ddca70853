"""Loaders and savers: torch <-> IR, ONNX -> IR (checked against onnxruntime), IR -> ONNX."""
import gzip
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import scipy.sparse as sp
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from cegarnn.network import (Affine, InputPart, Network, NetworkError, ReLU, Sigmoid, Tanh, conv2d_matrix,
                             from_torch, load_network, load_onnx, save_onnx, to_torch)

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
VNN2021 = BENCHMARKS / "vnncomp2021"
VNN_FILES = sorted(p for p in VNN2021.rglob("*") if p.name.endswith((".onnx", ".onnx.gz"))) if VNN2021.is_dir() else []


# ============================================================== helpers
def torch_out(module, x):
    with torch.no_grad():
        return module.double()(torch.as_tensor(x, dtype=torch.float64)).reshape(len(x), -1).numpy()


def randomise_batchnorm(module, gen):
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.2)
                if m.affine:
                    m.weight.copy_(torch.randn(m.num_features, generator=gen))
                    m.bias.copy_(torch.randn(m.num_features, generator=gen))
    return module.eval()


def ort_run(path_or_model, feeds):
    data = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def make_model(nodes, inputs, output, inits, opset=13):
    graph = helper.make_graph(nodes, "test", inputs, [output],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def fvi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def assert_close_to_ort(net_out, ort_out, rtol=1e-5):
    scale = max(1.0, float(np.max(np.abs(ort_out))))
    np.testing.assert_allclose(net_out, ort_out, rtol=rtol, atol=rtol * scale)


# ============================================================== convolution lowering
@pytest.mark.parametrize("stride,padding,dilation,groups", [
    ((1, 1), (0, 0), (1, 1), 1), ((2, 1), (1, 2), (1, 1), 1), ((2, 2), (1, 1), (2, 1), 1),
    ((1, 2), (0, 1), (1, 1), 2)])
def test_conv2d_matrix_matches_torch(stride, padding, dilation, groups):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 7, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, 3, 2, generator=gen, dtype=torch.float64)
    ref = torch.nn.functional.conv2d(x, w, None, stride, padding, dilation, groups).numpy()
    m, out = conv2d_matrix(w.numpy(), (4, 7, 6), stride, (padding[0], padding[1], padding[0], padding[1]),
                           dilation, groups)
    assert sp.issparse(m) and tuple(out) == ref.shape[1:]
    np.testing.assert_allclose((m @ x.numpy().reshape(2, -1).T).T, ref.reshape(2, -1), rtol=1e-12, atol=1e-12)


def test_conv2d_matrix_rejects_bad_shapes():
    with pytest.raises(NetworkError, match="channels"):
        conv2d_matrix(np.ones((2, 3, 3, 3)), (4, 5, 5))
    with pytest.raises(NetworkError, match="larger than"):
        conv2d_matrix(np.ones((2, 1, 7, 7)), (1, 5, 5))


# ============================================================== torch -> IR -> torch
def torch_models():
    return {
        "mlp": (nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.5),
                              nn.Sequential(nn.Linear(16, 12), nn.BatchNorm1d(12), nn.Sigmoid()),
                              nn.Identity(), nn.Linear(12, 10), nn.Tanh(), nn.Linear(10, 3)), (8,)),
        "bn_after_activation": (nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.BatchNorm1d(7), nn.Sigmoid(),
                                              nn.BatchNorm1d(7, affine=False), nn.Linear(7, 2)), (5,)),
        "cnn": (nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(2, 0), bias=False),
                              nn.Sigmoid(), nn.Flatten(), nn.Linear(6 * 8 * 3, 10), nn.ReLU(),
                              nn.Linear(10, 4)), (1, 12, 11)),
        "cnn_same_dilation_groups": (nn.Sequential(
            nn.Conv2d(2, 4, 3, padding="same"), nn.Tanh(), nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2),
            nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)), (2, 6, 6)),
        "conv1d": (nn.Sequential(nn.Conv1d(3, 5, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(5 * 5, 2)), (3, 10)),
    }


@pytest.mark.parametrize("key", list(torch_models()))
def test_from_torch_equals_module_and_round_trips(key):
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    module, shape = torch_models()[key]
    randomise_batchnorm(module, gen)
    net = from_torch(module, shape)
    assert isinstance(net, Network) and net.input_shape == shape
    x = np.random.default_rng(0).uniform(-1, 1, size=(16, *shape))
    ref = torch_out(module, x)
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-10, atol=1e-10)
    back = to_torch(net)
    np.testing.assert_allclose(torch_out(back, x), ref, rtol=1e-10, atol=1e-10)
    # affine modules between activations are merged: Affine and activation layers alternate
    kinds = [isinstance(l, Affine) for l in net.layers]
    assert all(a != b for a, b in zip(kinds, kinds[1:]))


def test_from_torch_conv_layers_are_sparse():
    net = from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 26 * 26, 3)),
                     (1, 28, 28))
    assert net.layers[0].is_sparse and net.layers[0].W.nnz <= 2 * 26 * 26 * 9


def test_from_torch_infers_shape_from_linear_and_requires_it_otherwise():
    net = from_torch(nn.Sequential(nn.Flatten(), nn.Linear(6, 2)))
    assert net.input_shape == (6,)
    with pytest.raises(NetworkError, match="input_shape"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_from_torch_unsupported_module_named():
    module = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.LeakyReLU()), nn.Linear(4, 2))
    with pytest.raises(NetworkError, match=r"module '1\.1' \(position 2, LeakyReLU\).*unsupported"):
        from_torch(module, (4,))
    with pytest.raises(NetworkError, match="expects 5 input features"):
        from_torch(nn.Sequential(nn.Linear(5, 2)), (4,))
    with pytest.raises(NetworkError, match="track_running_stats"):
        from_torch(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False)), (3,))


# ============================================================== ONNX: the vnncomp2021 networks
@pytest.mark.skipif(not VNN_FILES, reason=f"VNN-COMP 2021 benchmarks not found under {VNN2021}")
@pytest.mark.parametrize("path", VNN_FILES, ids=lambda p: p.name)
def test_vnncomp2021_network_matches_onnxruntime(path):
    net = load_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
    assert net.n_inputs == int(np.prod(shape))
    rng = np.random.default_rng(0)
    for _ in range(8):
        x = rng.uniform(0, 1, size=shape).astype(np.float32)
        y = sess.run(None, {inp.name: x})[0].reshape(-1)
        assert_close_to_ort(net.forward(x.reshape(-1)), y)


def test_vnncomp_folder_is_where_the_tests_expect():
    if not BENCHMARKS.parent.is_dir():
        pytest.skip(f"no shared folder at {BENCHMARKS.parent}")
    if BENCHMARKS.is_dir():
        assert VNN_FILES, f"{VNN2021} holds no .onnx files"


# ============================================================== ONNX: hand-made graphs vs onnxruntime
def test_onnx_conv_normalisation_graph_matches_onnxruntime():
    rng = np.random.default_rng(2)
    f32 = np.float32
    inits = {
        "mean": rng.uniform(0, 1, size=(1, 2, 1, 1)).astype(f32), "std": rng.uniform(0.5, 2, size=(1, 2, 1, 1)).astype(f32),
        "W1": rng.normal(size=(4, 2, 3, 3)).astype(f32), "b1": rng.normal(size=4).astype(f32),
        "scale": rng.normal(size=4).astype(f32), "bnb": rng.normal(size=4).astype(f32),
        "bnm": rng.normal(size=4).astype(f32), "bnv": rng.uniform(0.5, 2, size=4).astype(f32),
        "W2": rng.normal(size=(4, 2, 2, 2)).astype(f32),
        "shape": np.array([1, -1], dtype=np.int64), "M": rng.normal(size=(4 * 4 * 5, 5)).astype(f32),
        "c": rng.normal(size=5).astype(f32), "G": rng.normal(size=(5, 3)).astype(f32),
        "gc": rng.normal(size=(1, 3)).astype(f32), "ax": np.array([0], dtype=np.int64),
    }
    nodes = [
        helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, f32))),
        helper.make_node("Sub", ["x", "mean"], ["s"], name="sub"),
        helper.make_node("Div", ["s", "std"], ["d"], name="div"),
        helper.make_node("Mul", ["two", "d"], ["m"], name="mul"),
        helper.make_node("Conv", ["m", "W1", "b1"], ["c1"], name="conv1", pads=[1, 0, 2, 1], strides=[2, 1],
                         dilations=[2, 1]),
        helper.make_node("BatchNormalization", ["c1", "scale", "bnb", "bnm", "bnv"], ["bn"], name="bn", epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], name="conv2", group=2, auto_pad="SAME_UPPER"),
        helper.make_node("Transpose", ["c2"], ["t"], name="tr", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["flat"], name="reshape"),
        helper.make_node("MatMul", ["flat", "M"], ["mm"], name="matmul"),
        helper.make_node("Add", ["c", "mm"], ["a"], name="add"),
        helper.make_node("Sigmoid", ["a"], ["sg"], name="sig"),
        helper.make_node("Squeeze", ["sg", "ax"], ["sq"], name="squeeze"),
        helper.make_node("Unsqueeze", ["sq", "ax"], ["us"], name="unsqueeze"),
        helper.make_node("Gemm", ["us", "G", "gc"], ["g"], name="gemm", alpha=0.5, beta=2.0),
        helper.make_node("Tanh", ["g"], ["y"], name="tanh"),
    ]
    model = make_model(nodes, [fvi("x", ["N", 2, 8, 6])], fvi("y", [1, 3]), inits)
    net = network_from_model(model)
    assert net.input_shape == (2, 8, 6)
    assert [type(l).__name__ for l in net.layers] == ["Affine", "ReLU", "Affine", "Sigmoid", "Affine", "Tanh"]
    assert net.layers[0].is_sparse
    for x in rng.uniform(0, 1, size=(5, 1, 2, 8, 6)).astype(f32):
        assert_close_to_ort(net.forward(x.reshape(-1)), ort_run(model, {"x": x}).reshape(-1))


def network_from_model(model, **kw):
    from cegarnn.network import network_from_onnx_model
    return network_from_onnx_model(model, **kw)


def test_onnx_concatenated_inputs_and_constant_side_ops():
    rng = np.random.default_rng(3)
    f32 = np.float32
    inits = {"W": rng.normal(size=(6, 9)).astype(f32), "b": rng.normal(size=6).astype(f32),
             "k": rng.normal(size=(1, 9)).astype(f32), "L": rng.normal(size=(4, 6)).astype(f32),
             "starts": np.array([1], np.int64), "ends": np.array([5], np.int64), "axes": np.array([1], np.int64),
             "idx": np.array([2, 0, 1], np.int64)}
    nodes = [
        helper.make_node("Concat", ["x2", "x1"], ["xc"], name="cat", axis=1),     # not graph order
        helper.make_node("Sub", ["k", "xc"], ["s"], name="ksub"),                 # constant - x
        helper.make_node("Gemm", ["s", "W", "b"], ["h"], name="gemm", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["rt"], name="tr"),                  # (6, 1)
        helper.make_node("MatMul", ["L", "rt"], ["lm"], name="lmm"),              # constant @ x -> (4, 1)
        helper.make_node("Flatten", ["lm"], ["lf"], name="fl", axis=0),           # (1, 4)
        helper.make_node("Slice", ["lf", "starts", "ends", "axes"], ["sl"], name="slice"),
        helper.make_node("Gather", ["sl", "idx"], ["y"], name="gather", axis=1),
    ]
    model = make_model(nodes, [fvi("x1", [1, 4]), fvi("x2", [1, 5])], fvi("y", [1, 3]), inits)
    net, parts = network_from_model(model, return_input_parts=True)
    assert parts == [InputPart("x1", (4,), 0, 4), InputPart("x2", (5,), 4, 9)]
    assert net.n_inputs == 9 and net.n_outputs == 3
    for _ in range(5):
        x1, x2 = rng.normal(size=(1, 4)).astype(f32), rng.normal(size=(1, 5)).astype(f32)
        flat = np.concatenate([x1.reshape(-1), x2.reshape(-1)])
        assert_close_to_ort(net.forward(flat), ort_run(model, {"x1": x1, "x2": x2}).reshape(-1))


def test_onnx_residual_over_activation_is_rejected():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Add", ["x", "r"], ["y"], name="skip")]
    model = make_model(nodes, [fvi("x", [1, 3])], fvi("y", [1, 3]), {})
    with pytest.raises(NetworkError, match=r"'skip' \(Add\).*not sequential"):
        network_from_model(model)


@pytest.mark.parametrize("op,extra", [("Softmax", {}), ("LSTM", {"hidden_size": 2})])
def test_onnx_unsupported_operator_named(tmp_path, op, extra):
    inputs = ["h"] if op == "Softmax" else ["h3", "Wl", "Rl"]
    nodes = [helper.make_node("Gemm", ["x", "W"], ["h"], name="dense", transB=1),
             helper.make_node("Unsqueeze", ["h", "ax"], ["h3"], name="unsq"),
             helper.make_node(op, inputs, ["y"], name=f"my_{op.lower()}", **extra)]
    inits = {"W": np.ones((4, 3), np.float32), "ax": np.array([0], np.int64),
             "Wl": np.ones((1, 8, 4), np.float32), "Rl": np.ones((1, 8, 2), np.float32)}
    path = tmp_path / "bad.onnx"
    onnx.save(make_model(nodes, [fvi("x", [1, 3])], fvi("y", None), inits), str(path))
    with pytest.raises(NetworkError, match=rf"'my_{op.lower()}' \({op}\).*unsupported ONNX operator {op}"):
        load_onnx(path)


def test_onnx_bad_files(tmp_path):
    with pytest.raises(NetworkError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")
    good = tmp_path / "good.onnx"
    net = Network((Affine(np.ones((2, 3)), np.zeros(2)), ReLU()), (3,))
    save_onnx(net, good)
    data = gzip.compress(good.read_bytes())
    trunc = tmp_path / "trunc.onnx.gz"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(NetworkError, match="truncated or corrupt gzip"):
        load_onnx(trunc)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(NetworkError, match="not an ONNX model"):
        load_onnx(garbage)
    text = tmp_path / "text.onnx"
    text.write_text("this is not a network\n")
    with pytest.raises(NetworkError, match="not an ONNX model"):
        load_onnx(text)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(NetworkError, match="empty"):
        load_onnx(empty)
    fake_gz = tmp_path / "fake.onnx.gz"
    fake_gz.write_bytes(good.read_bytes())
    with pytest.raises(NetworkError, match="not a gzip file"):
        load_onnx(fake_gz)
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(NetworkError, match="not an ONNX model"):
        load_onnx(cut)


# ============================================================== IR -> ONNX
def ir_net(rng):
    W0 = rng.normal(size=(6, 16))
    W0[rng.random(W0.shape) < 0.6] = 0
    return Network((Affine(sp.csr_matrix(W0), rng.normal(size=6)), ReLU(),
                    Affine(rng.normal(size=(5, 6)), rng.normal(size=5)), Sigmoid(),
                    Affine(rng.normal(size=(4, 5)), rng.normal(size=4)), Tanh(),
                    Affine(rng.normal(size=(3, 4)), rng.normal(size=3))), (1, 4, 4), name="ir")


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("suffix", [".onnx", ".onnx.gz"])
def test_save_onnx_round_trip(tmp_path, dtype, tol, suffix):
    rng = np.random.default_rng(4)
    net = ir_net(rng)
    path = tmp_path / f"net{suffix}"
    save_onnx(net, path, dtype=dtype)
    back = load_onnx(path)
    assert back.input_shape == net.input_shape and back.sizes == net.sizes
    x = rng.uniform(0, 1, size=(6, 1, 4, 4))
    ref = net.forward(x)
    np.testing.assert_allclose(back.forward(x), ref, rtol=tol, atol=tol)
    model = onnx.load_model_from_string(gzip.decompress(path.read_bytes()) if suffix.endswith(".gz")
                                        else path.read_bytes())
    for xi, ri in zip(x, ref):
        y = ort_run(model, {"input": xi[None].astype(dtype)}).reshape(-1)
        np.testing.assert_allclose(y, ri, rtol=tol, atol=tol)


def test_save_onnx_flat_input(tmp_path):
    net = Network((Affine(np.arange(6.0).reshape(2, 3), [1.0, -1.0]), ReLU()), (3,))
    model = save_onnx(net, tmp_path / "flat.onnx")
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3]
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Relu"]
    y = ort_run(model, {"input": np.array([[1.0, -2.0, 0.5]], np.float32)})
    np.testing.assert_allclose(y.reshape(-1), [0.0, 0.0])
    np.testing.assert_allclose(net.forward([1.0, -2.0, 0.5]), [0.0, 0.0])
    y = ort_run(model, {"input": np.array([[1.0, 2.0, 0.5]], np.float32)})
    np.testing.assert_allclose(y.reshape(-1), [4.0, 12.5])


# ============================================================== load_network
def test_load_network_dispatch(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2))
    x = np.random.default_rng(5).normal(size=(3, 4))
    ref = torch_out(module, x)
    net = load_network(module)
    np.testing.assert_allclose(net.forward(x), ref, rtol=1e-10)
    assert load_network(net) is net
    pt = tmp_path / "model.pt"
    torch.save(module, pt)
    np.testing.assert_allclose(load_network(pt).forward(x), ref, rtol=1e-10)
    onnx_path = tmp_path / "model.onnx"
    save_onnx(net, onnx_path, dtype=np.float64)
    np.testing.assert_allclose(load_network(str(onnx_path)).forward(x), ref, rtol=1e-10)
    sd = tmp_path / "weights.pt"
    torch.save(module.state_dict(), sd)
    with pytest.raises(NetworkError, match="not a whole nn.Module"):
        load_network(sd)
    with pytest.raises(NetworkError, match="not found"):
        load_network(tmp_path / "nothing.pt")
    with pytest.raises(NetworkError, match="unknown model format"):
        load_network(_touch(tmp_path / "m.h5"))
    with pytest.raises(NetworkError, match="cannot make a network"):
        load_network(42)
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(b"garbage")
    with pytest.raises(NetworkError, match="cannot be read"):
        load_network(bad_pt)


def _touch(p):
    p.write_bytes(b"")
    return p


def test_onnx_constant_folding_of_shape_computations_opset11():
    """The Shape -> Gather -> Unsqueeze -> Concat -> Reshape pattern of older torch exports."""
    rng = np.random.default_rng(6)
    W = rng.normal(size=(2, 12)).astype(np.float32)
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"], name="shape"),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["shp", "zero"], ["n"], name="gather_batch", axis=0),
        helper.make_node("Unsqueeze", ["n"], ["n1"], name="unsq", axes=[0]),
        helper.make_node("Constant", [], ["minus1"], value=numpy_helper.from_array(np.array([-1], np.int64))),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="reshape"),
        helper.make_node("Gemm", ["flat", "W"], ["g"], name="gemm", transB=1),
        helper.make_node("Squeeze", ["g"], ["y"], name="squeeze", axes=[0]),
    ]
    model = make_model(nodes, [fvi("x", [1, 3, 2, 2])], fvi("y", [2]), {"W": W}, opset=11)
    net = network_from_model(model)
    assert net.n_inputs == 12 and net.n_outputs == 2 and len(net.layers) == 1
    x = rng.normal(size=(1, 3, 2, 2)).astype(np.float32)
    assert_close_to_ort(net.forward(x.reshape(-1)), ort_run(model, {"x": x}).reshape(-1))
