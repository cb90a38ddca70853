"""patch_repair: REASSURE-style local patches on linear regions, exported as a plain ReLU network."""
import json

import numpy as np
import pytest

from cegarnn.bounds import compute_bounds
from cegarnn.bounds.rounding import activation_error, output_padding
from cegarnn.network.ir import Affine, Network, ReLU, Sigmoid
from cegarnn.network.onnx_io import save_onnx
from cegarnn.repair import REPAIRED, REPAIRS, RepairInputError, RepairReason, float32_outputs, patch_repair
from cegarnn.repair.patch_net import PatchTerm, patched_formula, patched_network
from cegarnn.repair.regions import region_maps, relu_layers

pytest.importorskip("highspy")
ort = pytest.importorskip("onnxruntime")


def _net(seed, sizes=(8, 24, 24, 4), act=ReLU):
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(Affine(rng.normal(size=(sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]),
                             rng.normal(size=sizes[i + 1]) * 0.3))
        if i < len(sizes) - 2:
            layers.append(act())
    return Network(tuple(layers), (sizes[0],))


def _onnx_outputs(net, X, tmp_path):
    """Outputs of ``net`` saved as float32 ONNX, run from the file by onnxruntime."""
    path = tmp_path / "m.onnx"
    save_onnx(net, path, batch="N")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.asarray(X, dtype=np.float32)})[0].astype(np.float64)


def _in_box(rng, x, r, n):
    return np.clip(rng.uniform(x - r, x + r, (n, x.size)), 0.0, 1.0)


@pytest.mark.parametrize("sizes", [(3, 4), (3, 5, 4), (3, 6, 5, 4)])
@pytest.mark.parametrize("linear", [False, True])
def test_network_equals_the_patched_formula(sizes, linear, tmp_path):
    rng = np.random.default_rng(len(sizes))
    net = _net(1, sizes)
    layers = relu_layers(net)
    H, K, n = sum(sizes[1:-1]), sizes[-1], sizes[0]
    tau = rng.uniform(0, 0.2, H)
    terms = [PatchTerm(rng.choice([-1.0, 1.0], H), rng.normal(size=(K, n)) if linear and r % 2 else None,
                       rng.normal(size=K), 3.0) for r in range(3)]
    patched = patched_network(layers, (n,), terms, tau)
    assert {type(l) for l in patched.layers} <= {Affine, ReLU}
    X = rng.uniform(-1, 2, (2000, n))
    want = patched_formula(layers, terms, X, tau)
    assert np.max(np.abs(patched.forward(X) - want)) <= 1e-9
    got32 = _onnx_outputs(patched, X, tmp_path)
    assert np.max(np.abs(got32 - want)) <= 1e-4 * (1 + np.abs(want).max())
    # the gate opens: some points get a patch, some do not, so the comparison above saw both
    base = patched_formula(layers, [], X)
    changed = np.any(want != base, axis=1)
    assert 0 < changed.sum() < len(X) or sizes == (3, 4)


@pytest.fixture(scope="module")
def repaired():
    net = _net(3)
    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, (6, 8))
    labels = (net.forward(X).argmax(1) + 1) % 4        # every input misclassified now
    return net, X, labels, patch_repair(net, X, labels, margin=1e-3)


def test_every_input_gets_its_label_on_the_onnx_export(repaired, tmp_path):
    net, X, labels, r = repaired
    assert r.status is REPAIRED and r.check.all_met
    assert np.all(_onnx_outputs(net, X, tmp_path).argmax(1) != labels)
    y = _onnx_outputs(r.network, X, tmp_path)
    assert np.all(y.argmax(1) == labels)
    top = np.sort(y, axis=1)
    assert np.all(top[:, -1] - top[:, -2] >= 1e-3)
    assert {type(l) for l in r.network.layers} <= {Affine, ReLU}
    json.dumps(r.to_dict())


def test_outputs_are_exactly_unchanged_outside_the_neighbourhoods(repaired):
    net, X, labels, r = repaired
    S = np.random.default_rng(0).uniform(0, 1, (20000, 8))
    V = r.violations(S)
    gam = np.array([g.gamma for g in r.patched])
    far = np.all(V >= 1.0 / gam, axis=1)
    assert far.sum() > 19000
    # the executed model: bit for bit the original's outputs
    assert np.array_equal(float32_outputs(r.network, S[far]), float32_outputs(net, S[far]))
    # the IR: every patch unit exactly 0; the rest differs from the original only by BLAS summation order
    vals = r.network.forward_all(S[far])
    assert np.all(vals[-2][:, 2 * 4:] == 0.0)
    assert np.max(np.abs(r.network.forward(S[far]) - net.forward(S[far]))) <= 1e-12
    assert not np.array_equal(float32_outputs(r.network, S[~far]), float32_outputs(net, S[~far]))
    near = r.violations(X)           # the repaired inputs themselves sit in their own region
    assert np.all(np.min(near, axis=1) == 0.0)


def test_inside_each_region_the_change_is_the_patch(repaired):
    net, X, labels, r = repaired
    rng = np.random.default_rng(1)
    layers = relu_layers(net)
    assert r.patched
    for g in r.patched:
        i = g.inputs[0]
        S = _in_box(rng, X[i], r.extra["box_radius"][i], 3000)
        assert all(np.array_equal(region_maps(layers, s).signs, g.signs) for s in S[:200])
        change = r.network.forward(S) - net.forward(S)
        assert np.max(np.abs(change - g.q)) <= 1e-9
        assert np.abs(g.q).max() > 1e-3


def test_the_verifier_proves_each_region_box_and_sampling_agrees(repaired, tmp_path):
    net, X, labels, r = repaired
    assert r.reason is RepairReason.PATCH_PROVED and r.n_proved == len(r.regions)
    rng = np.random.default_rng(2)
    for g in r.regions:
        for p in g.proofs:
            assert p.verdict == "verified" and p.radius > 0
            S = _in_box(rng, X[p.input], p.radius, 2000)
            assert np.all(_onnx_outputs(r.network, S, tmp_path).argmax(1) == labels[p.input])


def test_the_float32_padding_bounds_the_executed_patched_network(repaired):
    """The padding the proofs rest on (stably inactive ReLUs carry no error) holds on samples."""
    net, X, labels, r = repaired
    rng = np.random.default_rng(4)
    for i in range(len(X)):
        rad = 3 * r.extra["box_radius"][i]          # larger than the region box: unstable gates too
        lo, hi = np.clip(X[i] - rad, 0, 1), np.clip(X[i] + rad, 0, 1)
        b = compute_bounds(r.network, lo, hi, method="crown")
        pad = output_padding(r.network, np.eye(4), b.lower, b.upper)
        S = np.concatenate([rng.uniform(lo, hi, (3000, 8)), lo[None], hi[None]])
        diff = np.abs(float32_outputs(r.network, S) - r.network.forward(S))
        assert np.all(diff <= pad)
    e = np.array([1e-3, 1e-3, 1e-3])
    assert np.array_equal(activation_error(ReLU(), e, np.array([-1.0, -1.0, 0.5]), np.array([-2e-3, -5e-4, 1.0])),
                          np.array([0.0, 1e-3, 1e-3]))


def test_inputs_of_one_region_share_a_patch_and_an_affine_patch_when_needed(tmp_path):
    net = _net(5)
    layers = relu_layers(net)
    rng = np.random.default_rng(5)
    x = rng.uniform(0.2, 0.8, 8)
    r0 = patch_repair(net, x[None], [int(net.forward(x).argmax())], prove=False).extra["region_radius"][0]
    d = rng.choice([-1.0, 1.0], 8) * 0.01 * r0
    X = np.stack([x, x + d])
    assert np.array_equal(region_maps(layers, X[0]).signs, region_maps(layers, X[1]).signs)
    wrong = (int(net.forward(x).argmax()) + 1) % 4
    same = patch_repair(net, X, [wrong, wrong], radius=0.0)
    assert same.status is REPAIRED and len(same.regions) == 1 and same.regions[0].inputs == [0, 1]
    assert same.regions[0].kind == "constant" and same.n_proved == 1
    other = (wrong + 1) % 4                          # two labels at nearby points: no constant patch does
    mixed = patch_repair(net, X, [wrong, other], radius=0.0)
    g = mixed.regions[0]
    assert mixed.status is REPAIRED and g.kind == "affine" and g.P is not None
    assert np.all(_onnx_outputs(mixed.network, X, tmp_path).argmax(1) == [wrong, other])
    t = np.linspace(-0.5, 1.5, 50)[:, None]
    S = x + t * d                                    # on the line through both, inside the region
    assert np.max(np.abs(mixed.network.forward(S) - net.forward(S) - (S @ g.P.T + g.q))) <= 1e-8 * (1 + g.size)
    assert mixed.n_proved == 1


def test_bad_input_is_a_clear_error():
    net = _net(0)
    X = np.random.default_rng(0).uniform(0, 1, (3, 8))
    with pytest.raises(RepairInputError, match="ReLU network.*Sigmoid"):
        patch_repair(_net(0, act=Sigmoid), X, [0, 1, 2])
    with pytest.raises(RepairInputError, match="3 inputs but labels of shape"):
        patch_repair(net, X, [0, 1])
    with pytest.raises(RepairInputError, match="label 7 out of range 0..3"):
        patch_repair(net, X, [0, 7, 1])
    with pytest.raises(RepairInputError, match="outside the domain"):
        patch_repair(net, X + 2.0, [0, 1, 2])
    with pytest.raises(RepairInputError, match="patch must be one of"):
        patch_repair(net, X, [0, 1, 2], patch="quadratic")
    with pytest.raises(RepairInputError, match="gamma"):
        patch_repair(net, X, [0, 1, 2], gamma=0.0)


def test_the_registry_and_the_command_line_reach_it(tmp_path):
    from cegarnn.cli.repair import run_repair
    net = _net(6)
    X = np.random.default_rng(6).uniform(0, 1, (3, 8))
    labels = (net.forward(X).argmax(1) + 2) % 4
    save_onnx(net, tmp_path / "net.onnx")
    np.savez(tmp_path / "fix.npz", x=X, y=labels)
    assert "patch" in REPAIRS
    code, res = run_repair(tmp_path / "net.onnx", tmp_path / "fix.npz", algorithm="patch",
                           options={"gamma": 100.0}, out=tmp_path / "out", echo=lambda s: None)
    assert code == 0 and res.status is REPAIRED
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["regions_proved"] == len(saved["regions"]) == 3
    assert np.all(_onnx_outputs(res.network, X, tmp_path).argmax(1) == labels)
