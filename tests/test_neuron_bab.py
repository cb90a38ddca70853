"""The neuron branch and bound (``neuron-bab``): verdicts against sampling ground truth on small
random ReLU / sigmoid / tanh networks, a property only neuron splits prove within a budget, the
float32 padding of its proofs, the split helpers, and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cegarnn
from cegarnn.bounds.crown import BatchBounder
from cegarnn.network import from_torch
from cegarnn.network.ir import ReLU, Sigmoid
from cegarnn.specs.problem import box_problem
from cegarnn.specs.property import classification_unsafe
from cegarnn.verifier import METHODS, OptionError
from cegarnn.verifier.neuron_split import (Progress, Sub, batch_splits, segment_point, split_input,
                                           split_neuron)

torch.set_num_threads(1)


def _net(seed: int, n: int, widths, act, n_out: int = 3, gain: float = 1.0):
    torch.manual_seed(seed)
    mods, w = [], n
    for h in widths:
        mods += [nn.Linear(w, h), act()]
        w = h
    mods.append(nn.Linear(w, n_out))
    model = nn.Sequential(*mods).double()
    with torch.no_grad():
        for prm in model.parameters():
            prm.mul_(gain)
    return model


def _problem(model, n, x, eps, label):
    net = from_torch(model, (n,))
    return box_problem(net, x - eps, x + eps, classification_unsafe(model[-1].out_features, label)), net


def _sampled_min_margin(model, lo, hi, label, n=20000, seed=0):
    """Smallest margin y_label - max_other over random points and corners (float32 model)."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=(n, lo.size))
    u[: n // 4] = np.round(u[: n // 4])                       # corners
    xs = lo + u * (hi - lo)
    with torch.no_grad():
        y = model.float()(torch.as_tensor(xs, dtype=torch.float32)).double().numpy()
    model.double()
    others = np.delete(y, label, axis=1)
    return float(np.min(y[:, label] - others.max(axis=1)))


def _check_cex(model, res, lo, hi, label):
    z = np.asarray(res.counterexample.free_input, dtype=np.float64)
    assert np.all(z >= lo - 1e-12) and np.all(z <= hi + 1e-12)
    with torch.no_grad():
        y = model.float()(torch.as_tensor(z[None], dtype=torch.float32)).double().numpy()[0]
    model.double()
    assert y[label] <= np.delete(y, label).max(), "counterexample does not violate on the float32 model"


def _critical_eps(model, x, label, top=4.0):
    """The radius where sampling first finds a violation (bisection; ``top`` if none up to it)."""
    if _sampled_min_margin(model, x - top, x + top, label, n=4000) > 0:
        return top
    a, b = 0.0, top
    for _ in range(12):
        m = (a + b) / 2
        a, b = (m, b) if _sampled_min_margin(model, x - m, x + m, label, n=4000) > 0 else (a, m)
    return b


# weights x3, radii just inside and just outside the sampled critical radius: hard cases
CASES = [(seed, act, f) for seed in range(4) for act in (nn.ReLU, nn.Sigmoid, nn.Tanh) for f in (0.8, 1.2)]


def check_verdict_against_sampling(seed, act, factor, **verify_kw):
    """A 4-input, 2x8 network at ``factor`` x its sampled critical radius: the verdict of
    ``cegarnn.verify(..., **verify_kw)`` never contradicts sampling, and clear cases are decided."""
    n = 4
    model = _net(seed, n, (8, 8), act, gain=3.0)
    x = np.random.default_rng(seed).normal(size=n)
    with torch.no_grad():
        label = int(model(torch.as_tensor(x[None])).argmax())
    eps = factor * _critical_eps(model, x, label)
    prob, _ = _problem(model, n, x, eps, label)
    res = cegarnn.verify(prob, time_limit=20, **verify_kw)   # decided in < 1 s unloaded; room for a busy machine
    gmin = _sampled_min_margin(model, x - eps, x + eps, label)
    if gmin < 0:
        assert res.status != "verified", f"sampling found margin {gmin} but {res.method} said verified"
    if res.status == "falsified":
        _check_cex(model, res, x - eps, x + eps, label)
    if gmin > 0.05:
        assert res.status != "falsified"
    if gmin < -0.05 or gmin > 0.05:          # clear cases: the method decides them
        assert res.decided, (gmin, res.reason)


@pytest.mark.parametrize("seed,act,factor", CASES)
def test_verdicts_agree_with_sampling(seed, act, factor):
    check_verdict_against_sampling(seed, act, factor, method="neuron-bab", attack=False)


def _wide_relu_case(seed=4, eps=0.2, n=40):
    model = _net(seed, n, (16, 16), nn.ReLU)
    x = np.random.default_rng(seed).normal(size=n)
    with torch.no_grad():
        label = int(model(torch.as_tensor(x[None])).argmax())
    prob, net = _problem(model, n, x, eps, label)
    return model, prob, net, x, label


def test_neuron_splits_prove_what_input_bisection_cannot_with_the_same_budget():
    """40 inputs, 2 x 16 ReLUs: with 300 bounded subproblems, input bisection (bab-crown, and
    neuron-bab itself without a neuron to split after all are fixed) does not prove it; ReLU splits do."""
    model, prob, net, x, label = _wide_relu_case()
    budget = dict(time_limit=30, max_iterations=300, attack=False)
    bab = cegarnn.verify(prob, method="bab-crown", **budget)
    assert bab.status == "unknown" and bab.reason == "iteration limit"
    res = cegarnn.verify(prob, method="neuron-bab", bounds="crown", **budget)
    assert res.status == "verified", res.reason
    summary = res.stats.trajectory[-1]
    assert summary["move"] == "neuron_bab" and summary["relu_splits"] > 0
    assert summary["closed_leaves_with_neuron_splits"] > 0
    assert res.stats.boxes_bounded <= 300
    assert _sampled_min_margin(model, x - 0.2, x + 0.2, label) > 0


def test_sigmoid_segment_splits_are_used_and_sound():
    n = 6
    model = _net(1, n, (10, 10), nn.Sigmoid)
    x = np.random.default_rng(1).normal(size=n)
    with torch.no_grad():
        label = int(model(torch.as_tensor(x[None])).argmax())
    for eps in (0.5, 1.0, 2.0):
        prob, _ = _problem(model, n, x, eps, label)
        res = cegarnn.verify(prob, method="neuron-bab", time_limit=5, attack=False, bounds="crown")
        gmin = _sampled_min_margin(model, x - eps, x + eps, label)
        if gmin < 0:
            assert res.status != "verified"
        if res.status == "falsified":
            _check_cex(model, res, x - eps, x + eps, label)


def test_alpha_everywhere_with_warm_start_agrees():
    model, prob, net, x, label = _wide_relu_case(eps=0.1, seed=3)
    res = cegarnn.verify(prob, method="neuron-bab", bounds="alpha-crown", time_limit=30, attack=False)
    assert res.status == "verified", res.reason


def test_proofs_cover_the_executed_float32_model(tmp_path):
    """The float32-gap instance of issue 10 (IR margin positive, onnxruntime violates): never unsat."""
    from test_soundness_cases import _margin_gap_instance
    from cegarnn.cli.commands import main
    net_path, prop = _margin_gap_instance(tmp_path)
    out = tmp_path / "result.txt"
    main(["vnnlib", str(net_path), str(prop), "--timeout", "5", "--method", "neuron-bab", "--out", str(out)])
    assert out.read_text().split()[0] != "unsat"


def test_issue10_cases_are_not_verified():
    from test_soundness_cases import _cancelling_network, _clipping_network, _unsafe_ge
    from cegarnn.specs.property import UnsafeRegion
    p = box_problem(_cancelling_network(), np.zeros(10), np.ones(10), _unsafe_ge(0.5))
    assert cegarnn.verify(p, method="neuron-bab", time_limit=3).status != "verified"
    p = box_problem(_clipping_network(), np.full(20, -100.0), np.zeros(20),
                    UnsafeRegion(((np.array([[-1.0]]), np.array([1900.0])),), 1))
    assert cegarnn.verify(p, method="neuron-bab", time_limit=3).status != "verified"


# --------------------------------------------------------------------------- the split helpers
def test_children_cover_the_parent_and_bounds_respect_the_splits():
    model = _net(0, 3, (5, 5), nn.Sigmoid)
    net = from_torch(model, (3,))
    sub = Sub(np.full(3, -1.0), np.ones(3))
    a, b = split_neuron(sub, "segment", 1, 2, 5, 0.3, -1.0, None)
    assert a.seg_hi[1][2] == 0.3 and np.isneginf(a.seg_lo[1][2])
    assert b.seg_lo[1][2] == 0.3 and np.isposinf(b.seg_hi[1][2])
    assert 1 not in sub.seg_lo                                  # the parent is unchanged
    bb = BatchBounder(net)
    bounds, st = bb.bounds(np.stack([a.lo, b.lo]), np.stack([a.hi, b.hi]), batch_splits([a, b], net.sizes))
    assert bounds.upper[1][0, 2] <= 0.3 and bounds.lower[1][1, 2] >= 0.3
    # every sampled point lies in one of the children (by its own pre-activation)
    xs = np.random.default_rng(0).uniform(-1, 1, size=(500, 3))
    v = net.forward_all(xs)[1][:, 2]
    assert np.all((v <= 0.3) | (v >= 0.3))
    i, j = split_input(sub, 1, -1.0, None)
    assert i.hi[1] == 0.0 and j.lo[1] == 0.0 and i.lo[1] == -1.0 and j.hi[1] == 1.0


def test_relu_phase_split_children():
    model = _net(0, 3, (6,), nn.ReLU)
    net = from_torch(model, (3,))
    i = net.activation_indices((ReLU,))[0]
    sub = Sub(np.full(3, -1.0), np.ones(3))
    a, b = split_neuron(sub, "relu", i, 4, 6, 0.0, -1.0, None)
    assert a.relu[i][4] == -1 and b.relu[i][4] == 1 and a.neuron_splits == 1 and a.kind == "neuron"
    bounds, st = BatchBounder(net).bounds(np.stack([a.lo, b.lo]), np.stack([a.hi, b.hi]),
                                          batch_splits([a, b], net.sizes))
    assert bounds.upper[i][0, 4] <= 0 and bounds.lower[i][1, 4] >= 0


def test_segment_point_stays_inside_and_progress_choice():
    p = segment_point(np.array([0.0, 0.0]), np.array([1.0, 1.0]), np.array([-5.0, 0.5]))
    assert p[0] == pytest.approx(0.1) and p[1] == 0.5
    pr = Progress()
    assert pr.choose(True, False) == "input" and pr.choose(False, True) == "neuron"
    assert pr.choose(False, False) is None
    for _ in range(4):
        pr.record("input", -1.0, -0.99, False)       # input splits barely help
        pr.record("neuron", -1.0, -0.2, False)       # neuron splits close 80 % of the gap
    picks = [pr.choose(True, True) for _ in range(32)]
    assert picks.count("neuron") > picks.count("input") > 0     # the better one, and exploration
    assert Sigmoid is not None


# --------------------------------------------------------------------------- bad input
def test_registered_and_bad_input():
    assert "neuron-bab" in METHODS and METHODS["neuron-bab"].sound
    model, prob, net, x, label = _wide_relu_case()
    with pytest.raises(OptionError, match="bogus"):
        cegarnn.verify(prob, method="neuron-bab", bogus=1)
    with pytest.raises(ValueError, match="unknown method"):
        cegarnn.verify(prob, method="neuron_bab")
    with pytest.raises(ValueError, match="batch_size"):
        cegarnn.verify(prob, method="neuron-bab", batch_size=0)
    from cegarnn.bounds.box import BoxError
    with pytest.raises((BoxError, ValueError)):
        cegarnn.verify(net, x + 0.1, x - 0.1, classification_unsafe(3, label), method="neuron-bab")
