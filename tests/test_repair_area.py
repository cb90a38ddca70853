"""area_repair: one LP whose last-layer change is correct on whole boxes."""
import numpy as np
import pytest

from cegarnn.network.ir import Sigmoid
from cegarnn.repair import REPAIRED, UNKNOWN, RepairInputError, RepairReason
from cegarnn.repair.area import area_repair, feature_bounds
from cegarnn.specs.problem import box_problem
from cegarnn.specs.property import classification_unsafe
from cegarnn.verifier import verify

from test_repair_finetune import _net

pytest.importorskip("highspy")


def _case(seed, act=None, w=0.05):
    net = _net(seed, sizes=(3, 16, 16, 4)) if act is None else _net(seed, sizes=(3, 16, 16, 4), act=act)
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(4, 3))
    labels = np.array([(int(net.forward(ci).argmax()) + 1) % 4 for ci in c])   # every box wrong now
    return net, c - w, c + w, labels, rng


@pytest.mark.parametrize("act", [None, Sigmoid])
def test_every_sampled_input_of_every_box_gets_its_label(act):
    net, lo, hi, labels, rng = _case(3, act)
    r = area_repair(net, lo, hi, labels, margin=1e-3)
    assert r.status is REPAIRED and r.reason is RepairReason.AREA_PROVED
    assert r.extra["min_margin_lower_bound"] >= 1e-3 - 1e-9
    for b in range(len(labels)):
        X = rng.uniform(lo[b], hi[b], (5000, 3))
        X = np.concatenate([X, lo[b][None], hi[b][None]])
        y = r.network.forward(X)
        assert np.all(y.argmax(1) == labels[b])
        before = net.forward(X).argmax(1)
        assert np.any(before != labels[b])          # the box needed the repair


def test_the_verifier_proves_each_repaired_box():
    net, lo, hi, labels, _ = _case(5)
    r = area_repair(net, lo, hi, labels, margin=0.05)
    assert r.status is REPAIRED
    for b in range(len(labels)):
        res = verify(box_problem(r.network, lo[b], hi[b], classification_unsafe(4, int(labels[b]))),
                     method="crown", time_limit=30)
        assert res.status == "verified", res.summary()


def test_feature_bounds_enclose_the_features():
    net, lo, hi, _, rng = _case(7)
    fl, fu = feature_bounds(net, lo, hi)
    X = rng.uniform(lo[0], hi[0], (3000, 3))
    h = net.forward_all(X)[len(net.layers) - 1]
    assert np.all(h >= fl[0] - 1e-9) and np.all(h <= fu[0] + 1e-9)


def test_too_conservative_is_unknown_not_a_wrong_repair():
    net, lo, hi, labels, _ = _case(9, w=3.0)
    # the same box asked for two labels: no change can do both
    r = area_repair(net, np.stack([lo[0], lo[0]]), np.stack([hi[0], hi[0]]), np.array([0, 1]), bound=1.0)
    assert r.status is UNKNOWN and r.reason is RepairReason.AREA_TOO_CONSERVATIVE and r.network is None


def test_bad_boxes_are_clear_errors():
    net, lo, hi, labels, _ = _case(1)
    with pytest.raises(RepairInputError, match="boxes must be"):
        area_repair(net, lo[:, :2], hi[:, :2], labels)
    with pytest.raises(RepairInputError, match="lower <= upper"):
        area_repair(net, hi, lo, labels)
    with pytest.raises(RepairInputError, match="label out of range"):
        area_repair(net, lo, hi, labels + 4)
    with pytest.raises(RepairInputError, match="empty"):
        area_repair(net, lo[:0], hi[:0], labels[:0])
