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


def _cex_image(G, C, x, label, lo, hi):
    """The image of a confirmed counterexample and the (wrong) label the original gives it."""
    res = verify(generative_problem(G, C, x, label, latent_lower=lo, latent_upper=hi), time_limit=10)
    assert res.status == "falsified"
    img = as_network(G).forward(np.concatenate([x, np.asarray(res.counterexample.free_input)]))
    return img, int(as_network(C).forward(img).argmax())


def test_accuracy_budget_refuses_a_change_that_costs_validation_accuracy(generative_case):
    """Validation = a counterexample image with the original's wrong label: any repair that proves
    the box must flip it (accuracy 1 -> 0), so max_accuracy_drop=0 refuses the change and returns
    the original classifier with its verdict; without the budget the same repair goes through."""
    from cegarnn.repair.spec_loop import Stop
    prob, G, C, x, label, lo, hi = generative_case(0, 2.0)
    img, wrong = _cex_image(G, C, x, label, lo, hi)
    assert wrong != label
    val = (img[None], np.array([wrong]))
    free = repair_spec(G, C, [(x, label, lo, hi)], rounds=6, verify_time=10, validation=val)
    assert free.all_verified and free.stopped is Stop.ALL_VERIFIED and free.accuracy == (1.0, 0.0)
    held = repair_spec(G, C, [(x, label, lo, hi)], rounds=6, verify_time=10, validation=val,
                       max_accuracy_drop=0.0)
    assert held.stopped is Stop.ACCURACY and held.accuracy == (1.0, 1.0)
    assert held.verdicts == ["falsified"] and not held.repairs
    assert np.array_equal(held.classifier.forward(img), as_network(C).forward(img))    # unchanged
    assert held.to_dict()["stopped"] == "ACCURACY"


def test_accuracy_budget_bad_input_is_a_clear_error(generative_case):
    prob, G, C, x, label, lo, hi = generative_case(0, 1.0)
    p = [(x, label, lo, hi)]
    with pytest.raises(RepairInputError, match="needs validation"):
        repair_spec(G, C, p, max_accuracy_drop=0.01)
    with pytest.raises(RepairInputError, match="fraction"):
        repair_spec(G, C, p, max_accuracy_drop=5, validation=(np.zeros((1, x.size)), [0]))
    with pytest.raises(RepairInputError, match="validation images"):
        repair_spec(G, C, p, validation=(np.zeros((2, x.size + 1)), [0, 1]))
