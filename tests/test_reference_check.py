"""A loaded ONNX network is checked against onnxruntime before any proof: a mis-converted IR is a
typed error (and `cegarnn vnnlib` answers `error`, not `unsat`); every committed model passes."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import cegarnn.network as network_pkg  # noqa: E402
from cegarnn.network import Affine, Network, NetworkError, ReLU, load_onnx, save_onnx  # noqa: E402
from cegarnn.network.reference import (ConversionMismatch, check_against_reference,  # noqa: E402
                                       check_points, check_problem_reference, is_onnx_reference,
                                       onnx_reference)
from cegarnn.specs.problem import classification_problem, generative_problem  # noqa: E402
from cegarnn.cli.commands import main  # noqa: E402
from cegarnn.vnncomp.runner import read_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = sorted((ROOT / "experiments" / "models").rglob("*.onnx"))


def _perturbed(net: Network, layer: int, row: int, delta: float, bias: bool = False) -> Network:
    """A copy of ``net`` with one weight row (or bias entry) of an affine layer changed."""
    layers = list(net.layers)
    lay = layers[layer]
    assert isinstance(lay, Affine)
    W = lay.W.toarray() if hasattr(lay.W, "toarray") else np.array(lay.W)
    b = lay.b.copy()
    if bias:
        b[row] += delta
    else:
        W[row] += delta
    layers[layer] = Affine(W, b)
    return Network(tuple(layers), net.input_shape, name=net.name)


def _tiny(tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    net = Network((Affine(rng.normal(size=(6, 3)), rng.normal(size=6)), ReLU(),
                   Affine(rng.normal(size=(2, 6)), rng.normal(size=2))), (3,))
    path = tmp_path / "tiny.onnx"
    save_onnx(net, path)
    return path


def test_check_points_cover_centre_corners_and_random_points():
    lo, hi = np.zeros(3), np.ones(3)
    pts = check_points(lo, hi, n=8)
    assert pts.shape == (1 + 8 + 8, 3)
    np.testing.assert_array_equal(pts[0], [0.5, 0.5, 0.5])
    assert {tuple(p) for p in pts[1:9]} == {(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)}
    assert np.all((pts >= lo) & (pts <= hi))
    big = check_points(np.zeros(40), np.ones(40), n=8)
    np.testing.assert_array_equal(big[1], np.zeros(40))
    np.testing.assert_array_equal(big[2], np.ones(40))
    assert check_points(lo, hi, n=0).shape == (1, 3)


@pytest.mark.parametrize("path", MODELS, ids=[str(p.relative_to(ROOT / "experiments" / "models")) for p in MODELS])
def test_every_committed_onnx_model_passes(path):
    net, parts = load_onnx(path, return_input_parts=True)
    ref = onnx_reference(path, parts)
    assert is_onnx_reference(ref)
    for lo, hi in [(np.zeros(net.n_inputs), np.ones(net.n_inputs)),
                   (-3 * np.ones(net.n_inputs), 3 * np.ones(net.n_inputs))]:
        # centre + 8 corners (all 2^n when fewer, e.g. the 2-input Brusselator model) + 8 random points
        assert check_against_reference(net, ref, lo, hi) == 1 + min(8, 2 ** net.n_inputs) + 8


@pytest.mark.parametrize("bias", [True, False])
def test_a_mis_converted_network_is_a_typed_error(bias):
    path = ROOT / "experiments" / "models" / "classifier.onnx"
    if not path.exists():
        pytest.skip("committed classifier absent")
    net, parts = load_onnx(path, return_input_parts=True)
    ref = onnx_reference(path, parts)
    last = max(i for i, l in enumerate(net.layers) if isinstance(l, Affine))
    bad = _perturbed(net, last if bias else 0, 3, 0.05 if bias else 0.02, bias=bias)
    lo, hi = np.zeros(net.n_inputs), np.ones(net.n_inputs)
    with pytest.raises(ConversionMismatch) as info:
        check_against_reference(bad, ref, lo, hi)
    e = info.value
    assert isinstance(e, NetworkError)
    if bias:
        assert e.output == 3
    assert e.point.shape == (net.n_inputs,) and np.all((e.point >= lo) & (e.point <= hi))
    np.testing.assert_allclose(e.ir_value, bad.forward(e.point)[e.output], rtol=1e-12)
    np.testing.assert_allclose(e.reference_value, ref(e.point[None])[0, e.output], rtol=1e-12)
    assert abs(e.ir_value - e.reference_value) > e.tolerance
    msg = str(e)
    assert f"output {e.output}" in msg and repr(e.ir_value) in msg and repr(e.reference_value) in msg
    assert pickle.loads(pickle.dumps(e)).output == e.output
    check_against_reference(net, ref, lo, hi)                 # the correct IR passes


def test_problem_builders_check_onnx_references(tmp_path):
    path = _tiny(tmp_path)
    net = load_onnx(path)
    ref = onnx_reference(path)
    x = np.array([0.2, -0.1, 0.4])
    p = classification_problem(net, x, 0, 0.1, clip=None, reference=ref)
    assert p.reference is ref
    with pytest.raises(ConversionMismatch):
        classification_problem(_perturbed(net, 2, 1, 0.5, bias=True), x, 0, 0.1, clip=None, reference=ref)
    # a reference that is not onnxruntime (here the IR itself) is not checked
    classification_problem(_perturbed(net, 2, 1, 0.5, bias=True), x, 0, 0.1, clip=None, reference=net.forward)


def test_generative_problem_from_onnx_paths_is_checked(tmp_path):
    rng = np.random.default_rng(2)
    gen = Network((Affine(rng.normal(size=(4, 5)), rng.normal(size=4)), ReLU(),
                   Affine(rng.normal(size=(4, 4)), rng.normal(size=4))), (5,))
    cls = Network((Affine(rng.normal(size=(3, 4)), rng.normal(size=3)),), (4,))
    gp, cp = tmp_path / "g.onnx", tmp_path / "c.onnx"
    save_onnx(gen, gp)
    save_onnx(cls, cp)
    x = rng.normal(size=3)
    kw = dict(latent_lower=-np.ones(2), latent_upper=np.ones(2))
    generative_problem(str(gp), str(cp), x, 0, **kw)             # correct conversion: passes
    with pytest.raises(ConversionMismatch):
        generative_problem(_perturbed(load_onnx(gp), 2, 1, 0.3, bias=True), cp, x, 0,
                           generator_reference=onnx_reference(gp), **kw)


def test_many_boxes_are_checked_cheaply(tmp_path):
    path = _tiny(tmp_path)
    net = load_onnx(path)
    ref = onnx_reference(path)
    calls = []

    def counting(a):
        calls.append(np.asarray(a).shape[0])
        return ref(a)

    class P:
        def __init__(self, k):
            self.network, self.reference, self.name = net, counting, f"p{k}"
            self.lower, self.upper = np.full(3, -1.0 + k / 1000), np.full(3, 1.0)
    check_problem_reference([P(k) for k in range(500)])
    assert sum(calls) == 3 * 17 + 50                    # 3 full checks, 50 centres


def test_vnnlib_command_answers_error_on_a_mis_converted_network(tmp_path, monkeypatch, capsys):
    path = _tiny(tmp_path)
    prop = tmp_path / "p.vnnlib"
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(3)) + \
        "".join(f"(declare-const Y_{i} Real)\n" for i in range(2))
    box = "".join(f"(assert (>= X_{i} -0.1))\n(assert (<= X_{i} 0.1))\n" for i in range(3))
    prop.write_text(decl + box + "(assert (or (>= Y_0 1000) (<= Y_1 -1000)))")     # unsat
    out = tmp_path / "res.txt"
    assert main(["vnnlib", str(path), str(prop), "--timeout", "20", "--out", str(out)]) == 0
    assert read_result(out)[0] == "unsat"

    real = load_onnx

    def mis_converted(p, **kw):
        net, parts = real(p, **kw)
        return _perturbed(net, 2, 0, 0.25, bias=True), parts
    monkeypatch.setattr(network_pkg, "load_onnx", mis_converted)
    assert main(["vnnlib", str(path), str(prop), "--timeout", "20", "--out", str(out)]) == 2
    lines = out.read_text().splitlines()
    assert lines[0] == "error" and "differs from the original model" in lines[1] and "output 0" in lines[1]
