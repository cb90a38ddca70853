"""The marabou baseline: verdicts against a dense-grid ground truth, real models, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cegarnn import verify
from cegarnn.network import from_torch
from cegarnn.specs.problem import box_problem, generative_problem
from cegarnn.specs.property import classification_unsafe
from cegarnn.verifier import marabou

ROOT = Path(__file__).resolve().parents[1]
SHIFTS = ROOT / "experiments" / "models" / "shifts"


def test_marabou_on_sigmoid_cases_never_contradicts_the_grid(generative_case, grid_margin):
    """Without the attack every verdict is Marabou's. On sigmoid networks Marabou 2.0 refutes
    (unsat) or answers UNKNOWN, never sat: verified only where the grid is safe, and it must
    prove some of the safe cases."""
    seen = []
    for seed, radius in [(s, r) for s in range(4) for r in (1.5, 4.0)]:
        prob, G, C, x, label, lo, hi = generative_case(seed, radius)
        gmin, _ = grid_margin(G, C, x, label, lo, hi, n=81)
        res = verify(prob, method="marabou", time_limit=20, attack=False, trust_unchecked=True)
        assert res.status != "falsified" or res.counterexample.margin_reference <= 0
        if res.status == "verified":
            assert gmin >= 0, (seed, radius)
        else:
            assert res.status == "unknown" and "Marabou" in res.reason
        seen.append(res.status)
    assert "verified" in seen and "unknown" in seen


def _relu_case(seed: int, radius: float):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 12), nn.ReLU(), nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 3)).double()
    x = np.random.default_rng(seed).random(3)
    label = int(net(torch.as_tensor(x[None])).argmax())
    prob = box_problem(from_torch(net), x - radius, x + radius, classification_unsafe(3, label))
    g = np.stack(np.meshgrid(*[np.linspace(-radius, radius, 41)] * 3), -1).reshape(-1, 3) + x
    with torch.no_grad():
        out = net(torch.as_tensor(g)).numpy()
    gmin = float((out[:, label] - np.delete(out, label, axis=1).max(1)).min())
    return prob, gmin


def test_marabou_sat_on_relu_networks_is_confirmed_and_unsat_matches_the_grid():
    """ReLU-only networks: Marabou is complete; sat assignments pass our confirmation
    (found_by 'marabou'), unsat only where the grid is safe."""
    seen = set()
    for seed in range(6):
        for radius in (0.05, 0.6):
            prob, gmin = _relu_case(seed, radius)
            res = verify(prob, method="marabou", time_limit=20, attack=False, trust_unchecked=True)
            assert res.decided, (seed, radius, res.reason)
            if res.status == "verified":
                assert gmin >= 0, (seed, radius)
            else:
                cex = res.counterexample
                assert cex.found_by == "marabou" and cex.margin_ir <= 0
                z = np.asarray(cex.free_input)
                assert np.all(z >= prob.lower - 1e-12) and np.all(z <= prob.upper + 1e-12)
                assert gmin <= 0.05, (seed, radius, gmin)      # the grid sees (almost) the same
            seen.add(res.status)
    assert seen == {"verified", "falsified"}


def test_marabou_on_a_committed_shift_model_agrees_with_cegar():
    with np.load(SHIFTS / "test_images.npz") as d:
        x, y = d["images"][0], int(d["labels"][0])
    prob = generative_problem(SHIFTS / "rotation" / "generator.onnx", ROOT / "experiments" / "models" / "classifier.onnx",
                              x, y, prior=SHIFTS / "rotation" / "prior.onnx", delta=0.25)
    m = verify(prob, method="marabou", time_limit=20, attack=False, trust_unchecked=True)
    c = verify(prob, method="cegar", time_limit=20)
    assert m.status == c.status == "verified", (m.reason, c.reason)
    assert m.stats.solver_calls == 1 and m.stats.time_solver > 0


def _hard_relu_problem():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(20, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(), nn.Linear(200, 200),
                        nn.ReLU(), nn.Linear(200, 3)).double()
    x = np.zeros(20)
    label = int(net(torch.as_tensor(x[None])).argmax())
    return box_problem(from_torch(net), x - 2.0, x + 2.0, classification_unsafe(3, label))


def test_marabou_is_stopped_at_the_deadline():
    """The forked Marabou process is killed at ``stop_at`` whatever it is doing."""
    import time
    prob = _hard_relu_problem()
    C, d, groups = prob.unsafe.stacked
    spec = prob.network.with_output_layer(C, -d)
    t = time.perf_counter()
    code, z, _, _ = marabou._solve_in_child(spec, prob.lower, prob.upper, groups, seconds=60, stop_at=t + 0.5)
    assert code == "KILLED" and z is None
    assert time.perf_counter() - t < 1.5


def test_marabou_keeps_the_time_limit():
    prob = _hard_relu_problem()
    res = verify(prob, method="marabou", time_limit=2.0, attack=False)
    assert res.stats.wall_time < 2.5
    if res.status == "falsified":       # allowed, but only with a confirmed counterexample
        assert res.counterexample.margin_ir <= 0
    else:
        assert res.status == "unknown" and "time" in res.reason, res.reason


def test_marabou_rejects_tanh_and_reports_when_missing(monkeypatch):
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    prob = box_problem(from_torch(net), -np.ones(2), np.ones(2), classification_unsafe(2, 0))
    with pytest.raises(ValueError, match="Tanh"):
        verify(prob, method="marabou", time_limit=5, attack=False)
    monkeypatch.setattr(marabou, "available", lambda: False)
    with pytest.raises(RuntimeError, match="maraboupy"):
        verify(prob, method="marabou", time_limit=5)


def test_sweep_cell_refuses_marabou_when_missing(monkeypatch, tmp_path):
    from cegarnn.shift.sweep import run_cell
    from cegarnn.verifier.options import Options
    monkeypatch.setattr(marabou, "available", lambda: False)
    d = SHIFTS / "rotation"
    with pytest.raises(ValueError, match="maraboupy"):
        run_cell(shift="rotation", classifier_name="mlp", generator=d / "generator.onnx",
                 classifier=ROOT / "experiments" / "models" / "classifier.onnx", prior=d / "prior.onnx",
                 images=SHIFTS / "test_images.npz", delta=0.5, method="marabou", options=Options(time_limit=1),
                 n_images=1, out_dir=tmp_path)
    assert not (tmp_path / "rows.csv").exists()
    with pytest.raises(ValueError, match="unknown method"):
        run_cell(shift="rotation", classifier_name="mlp", generator=d / "generator.onnx",
                 classifier=ROOT / "experiments" / "models" / "classifier.onnx", prior=d / "prior.onnx",
                 images=SHIFTS / "test_images.npz", delta=0.5, method="nope", options=Options(time_limit=1),
                 n_images=1, out_dir=tmp_path)


def test_marabou_unsat_is_unknown_unless_trusted():
    """Marabou's unsat is unchecked (it was wrong on random instances): by default it is not a proof."""
    from cegarnn.verifier.marabou import UNSAT_UNCHECKED
    with np.load(SHIFTS / "test_images.npz") as d:
        x, y = d["images"][0], int(d["labels"][0])
    prob = generative_problem(SHIFTS / "rotation" / "generator.onnx", ROOT / "experiments" / "models" / "classifier.onnx",
                              x, y, prior=SHIFTS / "rotation" / "prior.onnx", delta=0.25)
    m = verify(prob, method="marabou", time_limit=20, attack=False)
    assert m.status == "unknown" and m.reason == UNSAT_UNCHECKED
