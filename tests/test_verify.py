"""The verifier against ground truth, its progress guarantee, baselines, and bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cegarnn import verify
from cegarnn.network import from_torch
from cegarnn.specs.problem import Problem, classification_problem, generative_problem
from cegarnn.specs.property import SpecError, UnsafeRegion, classification_unsafe
from cegarnn.bounds.box import BoxError
from cegarnn.verifier import Options, run

# the tiny generator/classifier cases and their grid ground truth live in conftest.py (shared with
# test_marabou.py through the generative_case / grid_margin fixtures)
from conftest import N_X, N_Z  # noqa: E402,F401
from conftest import _generative_case as make_case  # noqa: E402
from conftest import _grid_margin as grid_truth  # noqa: E402
from conftest import _tiny_generative_models as tiny_models  # noqa: E402,F401


CASES = [(s, r) for s in range(10) for r in (1.5, 4.0)]


@pytest.mark.parametrize("seed,radius", CASES)
def test_cegar_agrees_with_grid_ground_truth(seed, radius):
    prob, G, C, x, label, lo, hi = make_case(seed, radius)
    gmin, _ = grid_truth(G, C, x, label, lo, hi)
    res = verify(prob, method="cegar", time_limit=30, debug=True)
    if gmin < 0:
        assert res.status != "verified", f"grid found a violation (margin {gmin}) but the verifier said verified"
    if gmin > 1e-3:
        assert res.status != "falsified"
    if res.status == "falsified":
        cex = res.counterexample
        z = np.asarray(cex.free_input)
        assert np.all(z >= lo - 1e-12) and np.all(z <= hi + 1e-12)
        with torch.no_grad():
            out = C(G(torch.as_tensor(np.concatenate([x, z])[None]))).numpy()[0]
        assert out[label] <= np.delete(out, label).max(), "counterexample does not violate on the torch model"
    # on these tiny cases the full method must decide
    assert res.decided, res.reason


@pytest.mark.parametrize("method", ["lp", "milp-fixed", "crown", "bab-crown", "marabou"])
def test_baselines_never_contradict_ground_truth(method):
    for seed, radius in CASES[::3]:
        prob, G, C, x, label, lo, hi = make_case(seed, radius)
        gmin, _ = grid_truth(G, C, x, label, lo, hi, n=81)
        res = verify(prob, method=method, time_limit=20, attack=False)
        if gmin < 0:
            assert res.status != "verified", (seed, radius)
        if gmin > 1e-3:
            assert res.status != "falsified", (seed, radius)
        if res.status == "falsified":
            assert res.counterexample.margin_ir <= 0 and res.counterexample.margin_reference <= 0


def test_cegar_decides_both_verdicts_across_cases():
    statuses = set()
    for seed, radius in CASES[:8]:
        prob, *_ = make_case(seed, radius)
        statuses.add(verify(prob, method="cegar", time_limit=30).status)
    assert {"verified", "falsified"} <= statuses


def _hard_safe_case():
    """A safe instance that plain CROWN on the whole box cannot prove (found by search)."""
    for seed in range(40):
        prob, G, C, x, label, lo, hi = make_case(seed, 1.5)
        gmin, _ = grid_truth(G, C, x, label, lo, hi, n=81)
        if gmin > 0.05:
            r = verify(prob, method="crown", time_limit=10, attack=False)
            if r.status == "unknown":
                return prob
    pytest.skip("no safe case that CROWN alone cannot prove among the seeds tried")


def test_baselines_each_decide_something_and_fail_something():
    prob = _hard_safe_case()
    crown = verify(prob, method="crown", time_limit=10)
    assert crown.status == "unknown"
    bab = verify(prob, method="bab-crown", time_limit=30)
    assert bab.status == "verified"
    cegar = verify(prob, method="cegar", time_limit=30)
    assert cegar.status == "verified"
    # a small box CROWN proves directly
    small = Problem(prob.network, prob.lower * 0.01, prob.upper * 0.01, prob.unsafe)
    for m in ("crown", "lp", "milp-fixed", "bab-crown"):
        assert verify(small, method=m, time_limit=10).status == "verified", m


def test_lp_baseline_unknown_when_spurious_and_no_refinement():
    prob = _hard_safe_case()
    res = verify(prob, method="lp", time_limit=10, attack=False)
    assert res.status in ("unknown", "verified")
    if res.status == "unknown":
        assert "spurious" in res.reason or "time" in res.reason


def test_falsified_without_attack_comes_from_solver_and_is_confirmed():
    for seed, radius in CASES:
        prob, G, C, x, label, lo, hi = make_case(seed, radius)
        gmin, _ = grid_truth(G, C, x, label, lo, hi, n=41)
        if gmin < -0.05:
            res = verify(prob, method="cegar", time_limit=30, attack=False)
            assert res.status == "falsified"
            assert res.counterexample.found_by in ("solver", "box-centre")
            assert res.counterexample.confirmed_reference is True
            return
    pytest.skip("no falsifiable case among the seeds")


@pytest.mark.parametrize("seed,radius", [(6, 4.0), (4, 1.5), (9, 1.5)])
def test_segment_refinement_alone_decides_with_progress_guarantee(seed, radius):
    """Segment refinement only (no input splitting, no attack): the debug assertion checks after
    every round that a refined point never returns; these cases need several rounds."""
    prob, G, C, x, label, lo, hi = make_case(seed, radius)
    gmin, _ = grid_truth(G, C, x, label, lo, hi)
    res = verify(prob, method="cegar", time_limit=30, attack=False, policy="segments", debug=True, top_k=3)
    assert res.decided, res.reason
    assert res.status == ("verified" if gmin > 0 else "falsified")
    assert res.stats.breakpoints_added > 0 and res.stats.solver_calls > 1
    assert any(e.get("move") == "segments" for e in res.stats.trajectory)
    # the one-shot LP on the same case cannot decide: refinement is what made the difference
    assert verify(prob, method="lp", time_limit=30, attack=False).status == "unknown"


def test_refined_point_never_returns_is_checked():
    """The progress check itself fires on a fabricated violation (so the debug mode is not vacuous)."""
    from cegarnn.verifier.box_solve import BoxAbstraction
    from types import SimpleNamespace
    prob, *_ = make_case(6, 4.0)
    net = prob.network
    sig = [i for i, l in enumerate(net.layers) if type(l).__name__ == "Sigmoid"][0]
    fake = SimpleNamespace(refined={(sig, 0): [0.5]}, ctx=SimpleNamespace(spec_net=net))
    values = [np.zeros(n) for n in net.sizes]
    values[sig][0] = 0.5
    values[sig + 1][0] = 0.9          # sigmoid(0.5) = 0.62: the abstraction "returned" the point
    with pytest.raises(AssertionError, match="refined point returned"):
        BoxAbstraction.check_progress(fake, values)
    values[sig + 1][0] = 1 / (1 + np.exp(-0.5))
    BoxAbstraction.check_progress(fake, values)


def test_result_is_json_serialisable():
    import json
    prob, *_ = make_case(0, 1.5)
    res = verify(prob, method="cegar", time_limit=20)
    d = json.loads(res.to_json())
    assert d["status"] == res.status and "stats" in d and "wall_time" in d["stats"]


def test_time_limit_gives_unknown_with_reason():
    prob = _hard_safe_case()
    res = verify(prob, method="bab-crown", time_limit=1e-4, attack=False)
    assert res.status == "unknown" and "time" in res.reason


# ------------------------------------------------------------------ bad input
def test_bad_latent_box_size():
    G, C = tiny_models(0)
    with pytest.raises(SpecError, match="latent"):
        generative_problem(G, C, np.zeros(N_X), 0, latent_lower=np.zeros(3), latent_upper=np.ones(3))


def test_generator_classifier_mismatch():
    G, _ = tiny_models(0)
    C = nn.Sequential(nn.Linear(5, 3)).double()
    with pytest.raises(SpecError, match="classifier expects 5"):
        generative_problem(G, C, np.zeros(N_X), 0, latent_lower=-np.ones(2), latent_upper=np.ones(2))


def test_inverted_box():
    G, C = tiny_models(0)
    with pytest.raises(BoxError, match="empty box"):
        generative_problem(G, C, np.zeros(N_X), 0, latent_lower=np.ones(2), latent_upper=-np.ones(2))


def test_bad_label_and_method():
    G, C = tiny_models(0)
    with pytest.raises(SpecError, match="label"):
        generative_problem(G, C, np.zeros(N_X), 7, latent_lower=-np.ones(2), latent_upper=np.ones(2))
    prob, *_ = make_case(0, 0.3)
    with pytest.raises(ValueError, match="unknown method"):
        verify(prob, method="magic")
    with pytest.raises(TypeError, match="unknown verifier option"):
        verify(prob, method="cegar", colour="red")


def test_classification_problem_and_unsafe_region_semantics():
    u = classification_unsafe(3, 1)
    assert u.margin(np.array([0.0, 1.0, 0.5])) == pytest.approx(0.5)
    assert u.violated_disjunct(np.array([0.0, 1.0, 1.0])) is not None
    assert u.violated_disjunct(np.array([0.0, 1.0, 0.9])) is None
    with pytest.raises(SpecError):
        UnsafeRegion(((np.ones((1, 2)), np.zeros(1)),), 3)
    # a disjunct is excluded when ANY of its rows is bounded above 0 (max over its rows)
    two = UnsafeRegion(((np.eye(3)[:2], np.zeros(2)), (np.eye(3)[2:], np.zeros(1))), 3)
    lb = two.disjunct_lower_bounds(np.array([[-1.0, 0.5, -2.0], [-1.0, -0.5, 3.0]]))
    np.testing.assert_allclose(lb, [[0.5, -2.0], [-0.5, 3.0]])
    net = from_torch(nn.Sequential(nn.Linear(2, 3)).double(), (2,))
    with pytest.raises(SpecError, match="image has 3"):
        classification_problem(net, np.zeros(3), 0, 0.1)
