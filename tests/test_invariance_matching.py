"""Network matching and the certified radius (cegarnn.invariance) against ground truth on tiny networks,
and their reach: the registry, ``cegarnn invariance`` (exit codes 0/1/2) and ``cegarnn-invariance``
(Hydra) writing result.json."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from cegarnn.invariance import (PROBLEMS, PROVED, REFUTED, UNKNOWN, InvarianceInputError, certified_radius,
                                matching, max_difference, run_problem)
from cegarnn.network import Affine, Network, ReLU, save_onnx

from conftest import relu_net
from invariance_brute import (difference_bounds, forward, output_distance, pair_upper_bound, sample_ball)

FAST = {"bounds": "interval", "time_limit": 20}


def _pruned(net: Network, frac: float) -> Network:
    """``net`` with the smallest ``frac`` of each affine layer's weights set to 0."""
    layers = []
    for L in net.layers:
        if isinstance(L, Affine):
            W = np.array(L.W, dtype=np.float64)
            W[np.abs(W) < np.quantile(np.abs(W), frac)] = 0.0
            L = Affine(W, L.b)
        layers.append(L)
    return Network(tuple(layers), net.input_shape)


@pytest.mark.parametrize("seed,n,frac", [(0, 2, 0.3), (1, 3, 0.6), (2, 2, 0.9), (3, 3, 0.3)])
def test_max_difference_against_brute_force(seed, n, frac):
    f1 = relu_net(seed, (n, 8, 3))
    f2 = _pruned(f1, frac)
    lo, hi = -0.5 * np.ones(n), 0.5 * np.ones(n)
    lb, ub = difference_bounds(f1, f2, lo, hi)
    res = max_difference(f1, f2, lo, hi, **FAST)
    assert res.status == PROVED, res.summary()
    assert res.bound >= lb - 1e-9                              # proved bound >= every sampled difference
    x = np.array(res.witness.x)
    assert np.all(x >= lo) and np.all(x <= hi)
    again = float(np.max(np.abs(forward(f1, x) - forward(f2, x))))
    assert res.value == pytest.approx(again, abs=1e-12) and res.witness.value_ir == res.value
    assert res.value <= ub + 1e-9 and res.bound - res.value <= 1e-3 * max(1, res.value)
    assert max_difference(f1, f2, lo, hi, threshold=0.9 * lb, **FAST).status == REFUTED
    assert max_difference(f1, f2, lo, hi, threshold=ub + 1e-3, **FAST).status == PROVED
    joint = max_difference(f1, f2, lo, hi, split=False, **FAST)
    assert joint.status == PROVED and abs(joint.value - res.value) <= 1e-3 * max(1, res.value)


def test_max_difference_of_a_network_with_itself_is_zero():
    f = relu_net(4, (3, 8, 3))
    res = max_difference(f, f, -np.ones(3), np.ones(3), threshold=1e-3, **FAST)
    assert res.status == PROVED and res.bound <= 1e-3     # (1e-6 is below the MILP margin: unknown)


def test_max_difference_with_onnx_models(tmp_path):
    f1 = relu_net(0, (2, 8, 3))
    save_onnx(f1, tmp_path / "a.onnx")
    save_onnx(_pruned(f1, 0.6), tmp_path / "b.onnx")
    res = max_difference(tmp_path / "a.onnx", tmp_path / "b.onnx", -np.ones(2), np.ones(2), **FAST)
    w = res.witness
    assert res.status == PROVED and w.value_reference is not None
    assert abs(w.value_reference - w.value_ir) <= 1e-4 * max(1, w.value_ir) and res.value == min(w.value_ir, w.value_reference)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_against_brute_force(seed):
    """max ||f2(x) - f2(y)|| with ||f1(x) - f1(y)||∞ <= tau: proved bound >= the sampled maximum,
    witness inside the splitting bound and recomputed."""
    f1, f2 = relu_net(seed, (2, 8, 3)), relu_net(seed + 10, (2, 6, 2))
    lo, hi, tau = -0.3 * np.ones(2), 0.3 * np.ones(2), 0.05
    X = sample_ball(lo, hi, 1500)
    a, b = forward(f1, X), forward(f2, X)
    close = np.max(np.abs(a[:, None] - a[None]), axis=2) <= tau
    lb = float(np.max(np.where(close, np.max(np.abs(b[:, None] - b[None]), axis=2), 0.0)))
    ub = pair_upper_bound(f1, lo, hi, tau + 1e-6, output_distance(f2), lower=lb, iters=10)
    res = matching(f1, f2, lo, hi, tau=tau, **FAST)
    assert res.status == PROVED, res.summary()
    assert res.bound >= lb - 1e-9 and res.value <= ub + 1e-9
    x, y = np.array(res.witness.x), np.array(res.witness.y)
    assert np.max(np.abs(forward(f1, x) - forward(f1, y))) <= tau + 1e-8
    assert res.value == pytest.approx(float(np.max(np.abs(forward(f2, x) - forward(f2, y)))), abs=1e-12)


def test_matching_exact_collisions_of_a_collapsing_network():
    """f1 = relu on the first coordinate (collapses x0 <= 0); f2 = identity: the farthest
    f2-difference among f1-collisions is the x0 range below 0."""
    f1 = Network((Affine(np.eye(2), np.array([0.0, 1.0])), ReLU(),
                  Affine(np.eye(2), np.array([0.0, -1.0]))), (2,))
    f2 = Network((Affine(np.eye(2), np.zeros(2)),), (2,))
    res = matching(f1, f2, np.array([-0.3, -0.1]), np.array([0.1, 0.1]), **FAST)
    assert res.status == PROVED and res.value == pytest.approx(0.3, abs=1e-6) and res.bound >= 0.3 - 1e-9


def test_certified_radius_is_consistent_with_sampling():
    net = relu_net(2, (2, 8, 2))
    c = np.zeros(2)
    rr = certified_radius(net, c, r_max=2.0, tol=1e-3, bounds="interval", time_limit=30)
    assert rr.status == PROVED and rr.proved_radius > 0 and rr.refuted_radius is not None
    assert rr.proved_radius < rr.refuted_radius <= rr.proved_radius * 1.05
    assert all(s.status == PROVED for s in rr.steps if s.radius <= rr.proved_radius)
    assert all(s.status != PROVED for s in rr.steps if s.radius >= rr.refuted_radius)
    w = rr.witness
    x, y = np.array(w.x), np.array(w.y)
    assert np.max(np.abs(x - c)) <= rr.refuted_radius + 1e-12 and np.max(np.abs(y - c)) <= rr.refuted_radius + 1e-12
    assert np.max(np.abs(x - y)) > 1e-3 and np.max(np.abs(net.forward(x) - net.forward(y))) <= 1e-8
    # sampled near-collisions inside the proved ball are closer than tol (up to the output slack)
    r = rr.proved_radius
    X = sample_ball(c - r, c + r, 1500)
    F = forward(net, X)
    close = np.max(np.abs(F[:, None] - F[None]), axis=2) <= 1e-9
    assert np.max(np.where(close, np.max(np.abs(X[:, None] - X[None]), axis=2), 0.0)) <= 1e-3
    p = certified_radius(net, c, kind="pseudo-invertibility", r_max=2.0, tol=1e-3, bounds="interval", time_limit=20)
    assert p.proved_radius >= rr.proved_radius                 # pseudo is the weaker question


def test_registry_reaches_every_problem():
    f1, f2 = relu_net(0, (2, 8, 2)), relu_net(1, (2, 8, 2))
    for name, prob in PROBLEMS.items():
        nets = [f1, f2][: prob.n_networks]
        extra = {"time_limit": 10} if name == "radius" else {}
        res = run_problem(name, nets, np.zeros(2), 0.2, bounds="interval", **({"time_limit": 10} | extra))
        assert res.status in (PROVED, REFUTED, UNKNOWN) and res.to_json()
    with pytest.raises(InvarianceInputError, match="2 network"):
        run_problem("matching", [f1], np.zeros(2), 0.2)
    with pytest.raises(InvarianceInputError, match="unknown invariance problem"):
        run_problem("nope", [f1], np.zeros(2), 0.2)
    with pytest.raises(InvarianceInputError, match="different inputs"):
        max_difference(f1, relu_net(0, (3, 8, 2)), np.zeros(2), np.ones(2))
    with pytest.raises(InvarianceInputError, match="empty box"):
        max_difference(f1, f2, np.ones(2), np.zeros(2))


@pytest.fixture
def onnx_pair(tmp_path):
    save_onnx(relu_net(2, (2, 8, 2)), tmp_path / "a.onnx")
    save_onnx(relu_net(3, (2, 8, 2)), tmp_path / "b.onnx")
    np.savez(tmp_path / "c.npz", x=np.zeros((3, 2)))
    return tmp_path


def _cli(capsys, *args):
    from cegarnn.cli.commands import main
    code = main(["invariance", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes_and_result_file(onnx_pair, capsys):
    d = onnx_pair
    code, out, _ = _cli(capsys, "invertibility", d / "a.onnx", "--center", "0,0", "--radius", 0.5,
                        "-o", "bounds=interval", "--out", d / "o1")
    res = json.loads((d / "o1" / "result.json").read_text())
    assert code == 0 and res["status"] == "refuted" and "REFUTED" in out
    code, _, _ = _cli(capsys, "max-difference", d / "a.onnx", d / "b.onnx", "--center", d / "c.npz", "--index", 1,
                      "--radius", 0.2, "--domain=-0.1,1", "--out", d / "o2")
    res = json.loads((d / "o2" / "result.json").read_text())
    assert code == 0 and res["status"] == "proved" and min(res["witness"]["x"]) >= -0.1 - 1e-12
    code, _, _ = _cli(capsys, "invertibility", d / "a.onnx", "--center", "0,0", "--radius", 0.5,
                      "--time-limit", 1e-9, "--out", d / "o3")
    assert code == 1 and json.loads((d / "o3" / "result.json").read_text())["status"] == "unknown"
    for bad in (["invertibility", d / "a.onnx", "--center", "0,0,0", "--radius", 0.1],
                ["invertibility", d / "a.onnx", "--center", "0,0", "--radius", -1],
                ["matching", d / "a.onnx", "--center", "0,0", "--radius", 0.1],
                ["invertibility", d / "a.onnx", "--center", "0,0", "--radius", 0.1, "-o", "nope=1"],
                ["invertibility", d / "missing.onnx", "--center", "0,0", "--radius", 0.1]):
        code, _, err = _cli(capsys, *bad, "--out", d / "bad")
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, _ = _cli(capsys, "--list")
    assert code == 0 and all(name in out for name in PROBLEMS)


def test_hydra_entry_writes_the_same_result(onnx_pair, capsys, monkeypatch):
    from cegarnn.cli.invariance_hydra import main
    d = onnx_pair
    monkeypatch.setattr(sys, "argv", ["cegarnn-invariance", "problem=pseudo-invertibility", f"model={d / 'a.onnx'}",
                                      "center=[0,0]", "radius=0.5", "options.bounds=interval", "options.tol=0.01",
                                      f"hydra.run.dir={d / 'hy'}", "hydra/job_logging=none", "hydra/hydra_logging=none"])
    with pytest.raises(SystemExit) as e:
        main()
    res = json.loads((d / "hy" / "result.json").read_text())
    assert e.value.code == (0 if res["status"] in ("proved", "refuted") else 1)
    assert res["kind"] == "pseudo-invertibility" and res["settings"]["tol"] == 0.01
