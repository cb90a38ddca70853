"""Regression tests for the wrong definitive answers of issue 10 (each failed on 3e3d5c0), and the
soundness of the rounding-error bounds that fix them (sampling against float32 execution)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import cegarnn
from cegarnn.bounds import compute_bounds
from cegarnn.bounds.rounding import execution_error, output_padding
from cegarnn.network import load_network, save_onnx
from cegarnn.network.ir import Affine, Network, ReLU, Sigmoid, Tanh
from cegarnn.network.reference import onnx_reference
from cegarnn.specs.problem import box_problem
from cegarnn.specs.property import UnsafeRegion

ROOT = Path(__file__).resolve().parents[1]
SOUND_METHODS = ["cegar", "crown", "bab-crown", "lp", "milp-fixed"]


def _unsafe_ge(threshold: float) -> UnsafeRegion:
    """Unsafe: y >= threshold, i.e. -y <= -threshold."""
    return UnsafeRegion(((np.array([[-1.0]]), np.array([-threshold])),), 1)


# --------------------------------------------------------------------------- case 1
def _clipping_network(n=20):
    W = np.stack([np.full(n, 100 / n), np.full(n, 0.001 / n), np.full(n, 0.1 / n)])
    return Network((Affine(W, [0.0, 0.0, 6.0]), Sigmoid(), Affine([[1.0, -4000.0, 60.0]], [0.0])), (n,))


def test_case1_lirpa_clipping_bound_is_sound():
    net = _clipping_network()
    lo, hi = np.full(20, -100.0), np.zeros(20)
    y_corner = net.forward(lo)[0]
    assert y_corner == pytest.approx(-1899.004, abs=1e-3)
    for method in ("crown", "alpha-crown"):
        b = compute_bounds(net, lo, hi, method=method)
        assert b.upper[-1][0] >= y_corner, method       # was about -1908 on 3e3d5c0


@pytest.mark.parametrize("method", SOUND_METHODS)
def test_case1_no_wrong_verified(method):
    net = _clipping_network()
    p = box_problem(net, np.full(20, -100.0), np.zeros(20), UnsafeRegion(((np.array([[-1.0]]), np.array([1900.0])),), 1))
    r = cegarnn.verify(p, method=method, time_limit=3)
    assert r.status != "verified"


@pytest.mark.parametrize("act", [Sigmoid, Tanh])
def test_sigmoid_tanh_bounds_sound_up_to_1e4(act):
    """Pre-activations spanning up to ±1e4 (beyond auto_LiRPA's ±500 limit): CROWN and
    alpha-CROWN bounds contain every sampled output, corners included."""
    rng = np.random.default_rng(1)
    for trial in range(6):
        n = 3
        W1 = rng.normal(size=(6, n)) * rng.choice([1, 100, 3000], size=(6, 1))
        b1 = rng.normal(size=6) * 50
        W2 = rng.normal(size=(4, 6)) * 100
        W3 = rng.normal(size=(2, 4)) * 10
        net = Network((Affine(W1, b1), act(), Affine(W2, rng.normal(size=4)), act(), Affine(W3, np.zeros(2))), (n,))
        lo, hi = -np.ones(n), np.ones(n)
        corners = np.array(np.meshgrid(*[[-1, 1]] * n)).reshape(n, -1).T
        xs = np.vstack([rng.uniform(lo, hi, size=(3000, n)), corners])
        vals = net.forward_all(xs)
        assert np.max(np.abs(vals[1])) > 500          # the condition behind case 1 is exercised
        for method in ("crown", "alpha-crown"):
            b = compute_bounds(net, lo, hi, method=method)
            for k in range(1, len(vals)):
                assert np.all(vals[k] >= b.lower[k] - 1e-9), (trial, method, k)
                assert np.all(vals[k] <= b.upper[k] + 1e-9), (trial, method, k)


# --------------------------------------------------------------------------- case 2
def _cancelling_network(n=10):
    W1 = np.stack([np.full(n, 100.000002), np.full(n, 100.0)])
    return Network((Affine(W1, [1.0, 1.0]), ReLU(), Affine([[1.0, -1.0]], [0.0]), ReLU(),
                    Affine([[1000.0]], [-0.019]), ReLU(), Affine([[1000.0]], [0.0])), (n,))


def test_case2_float32_cancellation_bounds_sound():
    net = _cancelling_network()
    y1 = net.forward(np.ones(10))[0]
    assert y1 == pytest.approx(1.0, abs=1e-6)
    b = compute_bounds(net, np.zeros(10), np.ones(10), method="crown")
    assert b.upper[-1][0] >= y1                       # was [0, 0] on 3e3d5c0


@pytest.mark.parametrize("method", SOUND_METHODS)
def test_case2_no_wrong_verified(method):
    p = box_problem(_cancelling_network(), np.zeros(10), np.ones(10), _unsafe_ge(0.5))
    r = cegarnn.verify(p, method=method, time_limit=3)
    assert r.status != "verified"


# --------------------------------------------------------------------------- rounding bounds
def _float32_forward(net: Network, xs: np.ndarray) -> list:
    """Every value of the network with float32 weights in float32 arithmetic (torch)."""
    vals = [torch.as_tensor(xs, dtype=torch.float32)]
    for layer in net.layers:
        v = vals[-1]
        if isinstance(layer, Affine):
            W = torch.as_tensor(layer.dense_W(), dtype=torch.float32)
            v = v @ W.T + torch.as_tensor(layer.b, dtype=torch.float32)
        elif isinstance(layer, ReLU):
            v = torch.relu(v)
        elif isinstance(layer, Sigmoid):
            v = torch.sigmoid(v)
        else:
            v = torch.tanh(v)
        vals.append(v)
    return [v.double().numpy() for v in vals]


def _random_cancelling_net(rng, n, acts):
    layers, width = [], n
    for act in acts:
        h = int(rng.integers(3, 12))
        W = rng.normal(size=(h, width)) * rng.choice([0.3, 3, 30])
        W[1] = W[0] * (1 + 1e-7)                     # nearly identical rows: cancellation later
        layers += [Affine(W, rng.normal(size=h)), act()]
        width = h
    C = rng.normal(size=(2, width))
    C[:, 1] = -C[:, 0]
    layers.append(Affine(C * 100, rng.normal(size=2)))
    return Network(tuple(layers), (n,))


@pytest.mark.parametrize("seed", range(8))
def test_execution_error_and_padding_cover_float32(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 4))
    acts = [rng.choice([ReLU, Sigmoid, Tanh]) for _ in range(int(rng.integers(1, 4)))]
    net = _random_cancelling_net(rng, n, acts)
    f32 = lambda a: np.asarray(a).astype(np.float32).astype(np.float64)   # noqa: E731
    lo = f32(rng.uniform(-2, 0, size=n))
    hi = f32(lo + rng.uniform(0.01, 2, size=n))
    b = compute_bounds(net, lo, hi, method="interval")
    # the executed model is given float32 points of the box
    xs = np.clip(f32(np.vstack([rng.uniform(lo, hi, size=(4000, n)), lo, hi])), lo, hi)
    v64, v32 = net.forward_all(xs), _float32_forward(net, xs)
    errors = execution_error(net, b.lower, b.upper)
    for k in range(len(v64)):
        assert np.all(np.abs(v32[k] - v64[k]) <= errors[k] + 1e-12), k
    C = rng.normal(size=(3, net.n_outputs))
    pad = output_padding(net, C, b.lower, b.upper)
    assert np.all(np.abs((v32[-1] - v64[-1]) @ C.T) <= pad)
    assert np.all(pad <= np.abs(C) @ errors[-1] * (1 + 1e-6) + 1e-9)   # never looser than forward


def test_padding_covers_onnxruntime_on_committed_classifier():
    path = ROOT / "experiments" / "models" / "classifier.onnx"
    net = load_network(str(path))
    ref = onnx_reference(str(path))
    rng = np.random.default_rng(0)
    x0 = rng.uniform(0, 1, size=net.n_inputs)
    lo, hi = np.clip(x0 - 0.01, 0, 1), np.clip(x0 + 0.01, 0, 1)
    xs = rng.uniform(lo, hi, size=(500, net.n_inputs)).astype(np.float32).astype(np.float64)
    C = np.eye(net.n_outputs)
    b = compute_bounds(net, lo, hi, method="crown")
    pad = output_padding(net, C, b.lower, b.upper)
    diff = np.abs(ref(xs) - net.forward(xs))
    assert np.all(diff <= pad)
    assert np.max(pad) < 0.05                    # useful, not only sound


# --------------------------------------------------------------------------- case 4
def _margin_gap_instance(tmp_path):
    """An ONNX network (float32 weights) whose float32 sums differ from the float64 IR's, a
    float32-exact input pinned except for a tiny free range of X_0, and a threshold midway between
    the IR's Y_0 - Y_1 and onnxruntime's: the IR says safe, onnxruntime violates."""
    rng = np.random.default_rng(3)
    n = 784
    W = rng.normal(size=(2, n)).astype(np.float32).astype(np.float64) * 10
    net = Network((Affine(W, np.zeros(2)), ReLU(), Affine(np.eye(2), np.zeros(2))), (n,))
    path = tmp_path / "net.onnx"
    save_onnx(net, path)
    ref = onnx_reference(str(path))
    best = None
    for _ in range(50):
        x = rng.uniform(0, 1, size=n).astype(np.float32).astype(np.float64)
        y64, y32 = net.forward(x), ref(x[None])[0]
        gap = (y64[0] - y64[1]) - (y32[0] - y32[1])
        if y64.min() > 1 and (best is None or gap > best[0]):
            best = (gap, x, y64, y32)
    gap, x, y64, y32 = best
    assert gap > 1e-6
    d = float(((y64[0] - y64[1]) + (y32[0] - y32[1])) / 2)
    lines = [f"(declare-const X_{k} Real)" for k in range(n)] + ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)"]
    lines += [f"(assert (<= X_{k} {v!r}))\n(assert (>= X_{k} {v!r}))" for k, v in enumerate(x.tolist()) if k]
    lines += [f"(assert (>= X_0 {float(x[0])!r}))", f"(assert (<= X_0 {float(x[0])!r}))"]
    lines.append(f"(assert (<= (- Y_0 Y_1) {d!r}))")                   # unsafe: Y_0 - Y_1 <= d
    prop = tmp_path / "gap.vnnlib"
    prop.write_text("\n".join(lines) + "\n")
    return path, prop


@pytest.mark.parametrize("method", ["lp", "cegar"])
def test_case4_proofs_cover_the_executed_float32_model(tmp_path, method):
    from cegarnn.cli.commands import main
    net_path, prop = _margin_gap_instance(tmp_path)
    out = tmp_path / "result.txt"
    main(["vnnlib", str(net_path), str(prop), "--timeout", "5", "--method", method, "--out", str(out)])
    assert out.read_text().split()[0] != "unsat"      # 3e3d5c0: unsat, onnxruntime violates


def test_precision_float64_pads_less_and_bad_precision_is_an_error():
    from cegarnn.specs.property import SpecError
    net = _cancelling_network()
    b = compute_bounds(net, np.zeros(10), np.ones(10), method="interval")
    C = np.array([[1.0]])
    assert np.all(output_padding(net, C, b.lower, b.upper, "float64")
                  < 1e-6 * output_padding(net, C, b.lower, b.upper, "float32"))
    with pytest.raises(SpecError, match="precision"):
        box_problem(net, np.zeros(10), np.ones(10), _unsafe_ge(0.5)).__class__(
            net, np.zeros(10), np.ones(10), _unsafe_ge(0.5), precision="float16")


def test_case4_ir_semantics_is_explicit(tmp_path):
    """`--proof-covers ir` proves the float64 IR only: the same instance is then unsat, which is
    right for the IR (its margin is positive) and says so in the flag, never by default."""
    from cegarnn.cli.commands import main
    net_path, prop = _margin_gap_instance(tmp_path)
    out = tmp_path / "result.txt"
    main(["vnnlib", str(net_path), str(prop), "--timeout", "5", "--method", "lp", "--proof-covers", "ir",
          "--out", str(out)])
    assert out.read_text().split()[0] == "unsat"


def test_crown_float32_option_still_sound():
    """The float32 CROWN path (dtype='float32') keeps its rigorous widening: case 2 stays unproved."""
    from cegarnn.bounds.lirpa import CrownBounder
    net = _cancelling_network()
    b = CrownBounder(net, dtype="float32").bounds(np.zeros(10), np.ones(10))
    assert b.upper[-1][0] >= net.forward(np.ones(10))[0]


# --------------------------------------------------------------------------- found by the random check
@pytest.mark.parametrize("seed,method", [(183, "cegar"), (95, "lp"), (199, "milp-fixed")])
def test_instances_the_random_check_caught(seed, method):
    """Wrong `verified` answers found by experiments/bench_soundness.py on the issue-10 code: HiGHS
    said INFEASIBLE for box abstractions that contain the network's own values (an LP whose true
    point met every row to 1e-9; MILPs with big-M values of 1e7). INFEASIBLE is no proof now."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import soundness_lib as S
    v = S.run_library(S.make_instance(seed), method, 1.0, attack=False)
    assert v.verdict != "verified", v.reason
