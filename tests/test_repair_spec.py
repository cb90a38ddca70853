"""repair_spec: verify -> repair -> re-verify on generative problems, against a dense-grid truth."""
import numpy as np
import pytest

from cegarnn.repair import RepairInputError
from cegarnn.repair.inputs import as_network
from cegarnn.repair.spec_loop import repair_spec
from cegarnn.specs.problem import generative_problem
from cegarnn.verifier import verify

pytest.importorskip("highspy")


def _grid_min_margin(G, C, x, label, lo, hi, n=81):
    g1, g2 = np.meshgrid(np.linspace(lo[0], hi[0], n), np.linspace(lo[1], hi[1], n))
    z = np.stack([g1.ravel(), g2.ravel()], 1)
    y = C.forward(G.forward(np.concatenate([np.tile(x, (len(z), 1)), z], 1)))
    return float((y[:, label] - np.delete(y, label, axis=1).max(1)).min())


@pytest.mark.parametrize("seed, radius", [(0, 2.0), (2, 1.0), (4, 1.0)])
def test_falsified_problems_end_verified_on_the_returned_classifier(generative_case, seed, radius):
    prob, G, C, x, label, lo, hi = generative_case(seed, radius)
    Gn, Cn = as_network(G), as_network(C)
    rng = np.random.default_rng(seed)
    keep_x = Gn.forward(np.concatenate([rng.random((40, x.size)), np.zeros((40, lo.size))], 1))
    keep_y = Cn.forward(keep_x).argmax(1)
    out = repair_spec(G, C, [(x, label, lo, hi)], keep=(keep_x, keep_y), rounds=6, verify_time=10)
    assert out.all_verified, out.rounds
    assert out.rounds[0]["falsified"] == 1 and out.repairs          # falsified before: a real repair case and out.repairs[0].status == "repaired"
    # the verdict is about the returned classifier: an independent run and the dense grid agree
    res = verify(generative_problem(G, out.classifier, x, label, latent_lower=lo, latent_upper=hi),
                 method="cegar", time_limit=20)
    assert res.status == "verified"
    assert _grid_min_margin(Gn, out.classifier, x, label, lo, hi) > 0
    assert np.array_equal(out.classifier.forward(keep_x).argmax(1), keep_y)       # clean images kept


def test_verified_problems_need_no_change(generative_case):
    prob, G, C, x, label, lo, hi = generative_case(1, 1.0)
    out = repair_spec(G, C, [(x, label, lo, hi)], verify_time=10)
    assert out.all_verified and not out.repairs and len(out.rounds) == 1


def test_bad_problems_are_clear_errors(generative_case):
    prob, G, C, x, label, lo, hi = generative_case(0, 1.0)
    with pytest.raises(RepairInputError, match="no problems"):
        repair_spec(G, C, [])
    with pytest.raises(RepairInputError, match="must be"):
        repair_spec(G, C, [(x, label)])


def test_area_rows_make_the_latent_box_correct_on_every_leaf(generative_case):
    """area=True: the accepted last-layer change has a proven margin (from the feature bounds per
    leaf, recomputed here) of at least half the area margin; the grid and the verifier agree."""
    from cegarnn.repair.area import margins
    from cegarnn.repair.spec_area import area_candidate, split_box
    prob, G, C, x, label, lo, hi = generative_case(2, 1.0)
    Gn, Cn = as_network(G), as_network(C)
    lo0, hi0 = lo.copy(), hi.copy()
    out = repair_spec(G, C, [(x, label, lo, hi)], rounds=3, verify_time=10, area="all", area_margin=0.3,
                      area_leaves=16)
    assert out.rounds[0]["falsified"] == 1 and out.repairs
    assert out.rounds[0].get("area_problems") == 1
    net = generative_problem(Gn, Cn, x, label, latent_lower=lo, latent_upper=hi).network
    cand = area_candidate(0, net, label, lo, hi, leaves=16)
    last = out.repairs[0].network.layers[-1]
    assert margins(last.dense_W(), last.b, cand.hl, cand.hu, label).min() >= 0.15 - 1e-9
    assert _grid_min_margin(Gn, out.repairs[0].network, x, label, lo, hi) > 0
    L, H = split_box(lo, hi, 16)
    assert np.array_equal(lo0, lo) and np.array_equal(hi0, hi)          # the problem's box is left as it was
    assert L.shape[0] == 16 and np.all(L <= H) and np.isclose(np.prod(H - L, 1).sum(), np.prod(hi - lo))
