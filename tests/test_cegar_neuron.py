"""``cegar`` with policy ``neuron``: neuron-level CEGAR branching (issue 15, item 2).

The LP's spurious candidates choose which sigmoid segment is split and where (at the candidate's
pre-activation, so both children's envelopes are exact there); verdicts must agree with sampling
ground truth; the spurious point must not survive the split; ``policy='auto'`` picks it for
high-dimensional boxes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cegarnn
from cegarnn.network.ir import sigmoid
from cegarnn.specs.problem import box_problem
from cegarnn.specs.property import classification_unsafe
from cegarnn.verifier.neuron_split import lp_gap_scores
from test_neuron_bab import _critical_eps, _net, _problem, _sampled_min_margin, check_verdict_against_sampling

torch.set_num_threads(1)

# the LP on every open subproblem, so that its candidates guide the splits from the start
GUIDED = dict(method="cegar", policy="neuron", solver_time_share=1.0, attack=False)


def _summary(res) -> dict:
    s = res.stats.trajectory[-1]
    assert s["move"] == "neuron_bab"
    return s


@pytest.mark.parametrize("seed,act,factor", [(s, a, f) for s in range(3) for a in (nn.Sigmoid, nn.Tanh)
                                             for f in (0.8, 1.2)])
def test_verdicts_agree_with_sampling(seed, act, factor):
    check_verdict_against_sampling(seed, act, factor, **GUIDED)


def _sigmoid_case():
    """6 inputs, 2 x 10 sigmoids, a radius at 0.9 of the sampled critical one: the root bounds do
    not prove it; LP-guided branching proves it in about 2 s, neuron-bab's bounds-only branching
    does not within 10 s (11,000+ subproblems; measured)."""
    n = 6
    model = _net(3, n, (10, 10), nn.Sigmoid, gain=3.0)
    x = np.random.default_rng(3).normal(size=n)
    with torch.no_grad():
        label = int(model(torch.as_tensor(x[None])).argmax())
    eps = 0.9 * _critical_eps(model, x, label)
    prob, _ = _problem(model, n, x, eps, label)
    return model, prob, x, eps, label


def test_lp_candidates_guide_segment_splits_and_the_proof_holds():
    model, prob, x, eps, label = _sigmoid_case()
    res = cegarnn.verify(prob, time_limit=40, bounds="crown", **GUIDED)
    s = _summary(res)
    assert res.status == "verified", res.reason
    assert _sampled_min_margin(model, x - eps, x + eps, label) > 0
    assert s["lp_calls"] > 0 and s["lp_guided_splits"] > 0 and s["closed_by_solver"] > 0, s
    # bounds-only branching (neuron-bab runs no LP on sigmoid networks) with as many subproblems
    plain = cegarnn.verify(prob, method="neuron-bab", time_limit=40, bounds="crown", attack=False,
                           max_iterations=max(res.stats.iterations, 1000))
    assert _summary(plain)["lp_calls"] == 0 and _summary(plain)["lp_guided_splits"] == 0
    assert plain.status == "unknown", plain.reason


def test_the_spurious_lp_point_is_cut_off_by_the_split():
    """Splitting a sigmoid at the LP candidate's pre-activation v makes both children's envelopes
    exact at v: the candidate's (v, y) with y != sigmoid(v) is outside both children's relaxations."""
    from cegarnn.bounds.crown import BatchBounder
    from cegarnn.encoding import Program, encode_network
    from cegarnn.network import from_torch
    from cegarnn.solvers import make_backend
    from cegarnn.verifier.neuron_split import Sub, batch_splits, split_neuron

    model = _net(5, 3, (6,), nn.Sigmoid, n_out=2, gain=3.0)
    net = from_torch(model, (3,))
    lo, hi = -np.ones(3), np.ones(3)
    crown = BatchBounder(net, backend="numpy")
    b, _ = crown.bounds(lo[None], hi[None], None, np.eye(2))
    root = b.pick(0)
    # a relaxation point of the root LP: minimise output 0 - output 1
    prog = Program(name="t")
    enc = encode_network(prog, net, root)
    out = enc.value_vars[-1]
    prog.set_objective([int(out[0]), int(out[1])], [1.0, -1.0], "min")
    sol = make_backend(prog, "highs").solve(time_limit=10)
    values = [sol.x[v] for v in enc.value_vars]
    i = 1                                             # the sigmoid layer's pre-activation value
    lam = np.ones(6)
    s, point = lp_gap_scores(net.layers[i], root.lower[i], root.upper[i], lam, values[i], values[i + 1])
    j = int(np.argmax(s))
    assert s[j] > 1e-6, "the LP point should be spurious on some sigmoid"
    np.testing.assert_allclose(s, np.abs(values[i + 1] - sigmoid(values[i])) * ((root.upper[i] - root.lower[i]) > 1e-6))
    kids = split_neuron(Sub(lo, hi), "segment", i, j, 6, float(point[j]), -1.0, None)
    cb, _ = crown.bounds(np.stack([lo, lo]), np.stack([hi, hi]), batch_splits(kids, net.sizes), np.eye(2))
    v, y = float(point[j]), float(values[i + 1][j])
    for k in range(2):
        ck = cb.pick(k)
        p2 = Program(name="child")
        e2 = encode_network(p2, net, ck)
        p2.set_col_bounds([int(e2.value_vars[i][j])], [v], [v])   # pre-activation of neuron j at v
        for sense in ("min", "max"):                              # its output: only sigmoid(v) is left
            p2.set_objective([int(e2.value_vars[i + 1][j])], [1.0], sense)
            r = make_backend(p2, "highs").solve(time_limit=10)
            assert abs(r.objective - sigmoid(np.array([v]))[0]) < 1e-6, (k, sense, r.objective)
    if abs(v - values[i][j]) < 1e-12:                 # the point was not clipped: it is the one cut off
        assert abs(y - sigmoid(np.array([v]))[0]) > 1e-6


def test_auto_picks_the_neuron_policy_on_high_dimensional_boxes():
    from cegarnn.verifier.context import RunContext
    from cegarnn.verifier.options import Options
    n = 20
    model = _net(0, n, (24,), nn.Sigmoid)       # a first layer of full rank 20 (> 16): neuron
    x = np.zeros(n)
    prob, _ = _problem(model, n, x, 0.1, 0)
    assert RunContext.create(prob, "cegar", Options()).policy == "neuron"
    narrow, _ = _problem(_net(0, n, (6,), nn.Sigmoid), n, x, 0.1, 0)     # rank 6: rotated
    assert RunContext.create(narrow, "cegar", Options()).policy == "rotated"
    small, _ = _problem(_net(0, 4, (6,), nn.Sigmoid), 4, np.zeros(4), 0.1, 0)
    assert RunContext.create(small, "cegar", Options()).policy == "input"
    assert RunContext.create(prob, "cegar", Options(policy="segments")).policy == "segments"


def test_bad_policy_is_refused():
    with pytest.raises(ValueError, match="neuron"):
        cegarnn.verify(box_problem(*_tiny()), policy="neurons")


def _tiny():
    model = _net(0, 2, (3,), nn.Sigmoid)
    from cegarnn.network import from_torch
    return from_torch(model, (2,)), -np.ones(2), np.ones(2), classification_unsafe(3, 0)


def test_the_benchmark_runner_records_split_counts():
    """``cegarnn bench`` keeps, per input box, how a neuron-policy proof was found (root or splits)."""
    from cegarnn.vnncomp.runner import solve_instance
    model, prob, x, eps, label = _sigmoid_case()
    out = solve_instance([prob], 40, method="cegar", policy="neuron", solver_time_share=1.0, attack=False)
    assert out.result == "unsat", out.reason
    counts = out.cases[0][3]
    assert counts["input_splits"] + counts["neuron_splits"] > 0 and counts["lp_calls"] > 0, counts
    assert out.to_json()["cases"][0][3] == counts
    plain = solve_instance([prob], 3, method="cegar", policy="input")
    assert plain.cases[0][3] is None


def test_root_adds_auto_lirpa_alpha_when_the_time_allows_and_stays_sound():
    model, prob, x, eps, label = _sigmoid_case()
    res = cegarnn.verify(prob, method="cegar", policy="neuron", attack=False, time_limit=40)
    s = _summary(res)
    assert s["root_alpha"] and s["root_lirpa_alpha"], s
    assert res.status != "falsified", res.reason           # the property holds (sampled below)
    assert _sampled_min_margin(model, x - eps, x + eps, label) > 0
    if res.status == "verified":                             # (about 3 s unloaded; a loaded machine may not finish)
        assert s["closed_by_bounds"] + s["closed_by_solver"] + s["closed_infeasible"] > 0
    # no time for it: skipped (it cannot be interrupted)
    quick = cegarnn.verify(prob, method="cegar", policy="neuron", attack=False, time_limit=0.5)
    assert not _summary(quick)["root_lirpa_alpha"]


def _wide_sigmoid_case(factor):
    """300 inputs, one layer of 10 sigmoids, radius ``factor`` x the sampled critical one (an
    overestimate in 300-d: the LP finds violations sampling misses)."""
    n = 300
    model = _net(3, n, (10,), nn.Sigmoid, gain=2.0)
    x = np.random.default_rng(3).uniform(0.2, 0.8, size=n)
    with torch.no_grad():
        label = int(model(torch.as_tensor(x[None])).argmax())
    eps = factor * _critical_eps(model, x, label)
    prob, _ = _problem(model, n, x, eps, label)
    return model, prob, x, eps, label


@pytest.mark.parametrize("factor,status", [(0.23, "verified"), (0.26, "falsified")])
def test_segment_phase_decides_wide_sigmoid_boxes_the_root_leaves_open(factor, status):
    # more than SEGMENT_PHASE_MIN_INPUTS free inputs and sigmoids: after the root bounds, the root's
    # LP refined at sigmoid segments decides (measured: proved in 0.2-0.3 s of LP at 0.222-0.235)
    model, prob, x, eps, label = _wide_sigmoid_case(factor)
    res = cegarnn.verify(prob, method="cegar", attack=False, time_limit=30)
    s = _summary(res)
    assert res.status == status, res.reason
    assert "segment_phase_s" in s
    if status == "verified":
        assert res.reason == "proved by the solver" and _sampled_min_margin(model, x - eps, x + eps, label) > 0
    else:
        z = np.asarray(res.counterexample.free_input)
        assert np.all(np.abs(z - x) <= eps + 1e-12)
        with torch.no_grad():
            y = model.float()(torch.as_tensor(z[None], dtype=torch.float32)).double().numpy()[0]
        model.double()
        assert y[label] <= np.delete(y, label).max()
