"""finetune: the smallest change of one layer, checked on the float32 ONNX export."""
import numpy as np
import pytest
import torch

from cegarnn.network.ir import Affine, Network, ReLU, Sigmoid
from cegarnn.repair import (INFEASIBLE, REPAIRED, UNKNOWN, RepairInputError, RepairReason, beats, ensure,
                            finetune, float32_outputs, implant, linear, predictions)

pytest.importorskip("highspy")
pytest.importorskip("onnxruntime")


def _net(seed, sizes=(4, 12, 10, 3), act=ReLU):
    rng = np.random.default_rng(seed)
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Affine(rng.normal(0, 1 / np.sqrt(a), (b, a)), rng.normal(0, 0.3, b)))
        if k < len(sizes) - 2:
            layers.append(act())
    return Network(tuple(layers), (sizes[0],))


def _wrong(net, rng, n):
    """n inputs and labels the network gets wrong (label = its second-best class)."""
    X = rng.normal(size=(n, net.n_inputs))
    y = net.forward(X)
    return X, np.argsort(y, 1)[:, -2]


def test_last_layer_linf_is_the_closed_form_optimum():
    """One input, one row ``y_w - y_l >= 0``, weights only: the optimum is ``gap / (2 |h|_1)``
    (moving w's and l's weight rows by -/+eps along sign(h)) plus the float32 slack's share."""
    net = _net(0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4))
    y = net.forward(x)[0]
    o, w = int(np.argmax(y)), int(np.argsort(y)[-2])
    h = net.forward_all(x)[-2][0]
    eps_star = (y[o] - y[w]) / (2 * np.abs(h).sum())
    r = finetune(net, x, beats([w], [o], 3, margin=0.0), train_bias=False)
    assert r.status is REPAIRED and r.reason is RepairReason.CHECKED
    slack = r.extra["slack_max"]
    assert eps_star - 1e-9 <= r.norms["linf"] <= (y[o] - y[w] + slack) / (2 * np.abs(h).sum()) + 1e-9
    assert r.optimal and r.lower_bound <= r.norms["linf"] + 1e-12
    # a change a little smaller than the optimum cannot meet the row (the optimum is exact)
    half = finetune(net, x, beats([w], [o], 3, margin=0.0), train_bias=False, bound=0.99 * eps_star)
    assert half.status is INFEASIBLE and half.reason is RepairReason.LP_FARKAS


def test_repaired_network_meets_every_row_on_onnxruntime_and_torch():
    net = _net(2)
    rng = np.random.default_rng(3)
    X, want = _wrong(net, rng, 6)
    r = finetune(net, X, implant(want, 3, margin=0.05))
    assert r.status is REPAIRED
    y32 = float32_outputs(r.network, X)
    assert np.array_equal(y32.argmax(1), want)
    assert np.all(np.sort(y32, 1)[:, -1] - np.sort(y32, 1)[:, -2] >= 0.05)
    with torch.no_grad():
        yt = r.to_torch()(torch.tensor(X, dtype=torch.float32)).numpy()
    assert np.array_equal(yt.argmax(1), want)
    # only the last layer changed, by the reported amounts
    for a, b in zip(net.layers[:-1], r.network.layers[:-1]):
        if isinstance(a, Affine):
            assert np.array_equal(a.W, b.W) and np.array_equal(a.b, b.b)
    assert np.allclose(r.network.layers[-1].W - net.layers[-1].W, r.dW)
    assert r.norms["linf"] == pytest.approx(max(np.abs(r.dW).max(), np.abs(r.db).max()))


def test_hidden_layer_exact_milp_is_never_worse_than_the_phase_keeping_lp():
    net = _net(4)
    rng = np.random.default_rng(5)
    X, want = _wrong(net, rng, 3)
    exact = finetune(net, X, ensure(want, 3, 0.01), layer=1, bound=0.5, time_limit=60)
    pattern = finetune(net, X, ensure(want, 3, 0.01), layer=1, relu="pattern")
    assert exact.status is REPAIRED and pattern.status is REPAIRED
    assert exact.optimal
    assert exact.norms["linf"] <= pattern.norms["linf"] + 1e-7
    for r in (exact, pattern):
        assert np.array_equal(predictions(r.network, X), want)
        assert np.array_equal(r.network.layers[0].W, net.layers[0].W)       # layer 0 untouched


def test_infeasible_answers_are_proofs_not_exceptions():
    net = _net(6)
    x = np.random.default_rng(7).normal(size=(1, 4))
    two = np.concatenate([x, x])
    last = finetune(net, two, ensure([0, 1], 3))
    assert last.status is INFEASIBLE and last.reason is RepairReason.LP_FARKAS and last.network is None
    y = net.forward(x)[0]
    hidden = finetune(net, x, ensure([int(np.argmin(y))], 3, 0.5), layer=0, bound=1e-3)
    # every ReLU is stable in so small a box: an LP, so the proof is a Farkas certificate
    assert hidden.status is INFEASIBLE and hidden.reason is RepairReason.LP_FARKAS
    pat = finetune(net, two, ensure([0, 1], 3), layer=0, relu="pattern")
    assert pat.status is UNKNOWN and pat.reason is RepairReason.PATTERN_INFEASIBLE
    with pytest.raises(ValueError, match="no repaired network"):
        last.save_onnx("unused.onnx")


def test_sigmoid_after_the_layer_is_refined_until_the_real_network_meets_the_rows():
    net = _net(8, sizes=(3, 8, 8, 3), act=Sigmoid)
    rng = np.random.default_rng(9)
    X, want = _wrong(net, rng, 200)
    y = net.forward(X)
    close = np.argsort(np.sort(y, 1)[:, -1] - np.sort(y, 1)[:, -2])[:4]      # the nearest to a flip
    X, want = X[close], want[close]
    r = finetune(net, X, ensure(want, 3, 0.02), layer=1, bound=3.0, time_limit=60)
    assert r.status is REPAIRED, r.summary()
    assert np.array_equal(predictions(r.network, X), want)
    y = r.network.forward(X)
    assert np.all(y[np.arange(4), want] - np.where(np.eye(3)[want] > 0, -np.inf, y).max(1) >= 0.02)
    # with no refinement allowed the answer is never a wrong 'repaired'
    r0 = finetune(net, X, ensure(want, 3, 0.02), layer=1, bound=3.0, max_refinements=0, time_limit=60)
    assert r0.status is REPAIRED or r0.reason is RepairReason.REFINEMENT_LIMIT
    if r0.status is REPAIRED:
        assert np.array_equal(predictions(r0.network, X), want)


def test_l1_tie_break_keeps_the_linf_optimum_and_lowers_l1():
    net = _net(10)
    X, want = _wrong(net, np.random.default_rng(11), 4)
    a = finetune(net, X, ensure(want, 3))
    b = finetune(net, X, ensure(want, 3), tie_break="l1")
    assert a.status is REPAIRED and b.status is REPAIRED
    assert b.norms["linf"] <= a.norms["linf"] * (1 + 1e-6) + 1e-9
    assert b.norms["l1"] <= a.norms["l1"] + 1e-9
    assert [s.name for s in b.stages] == ["min linf", "tie-break l1"]
    again = finetune(net, X, ensure(want, 3), tie_break="l1")
    assert np.array_equal(again.dW, b.dW)                                   # deterministic


def test_hard_keep_inputs_are_added_lazily_and_all_kept():
    net = _net(12, sizes=(4, 32, 5))
    rng = np.random.default_rng(13)
    X, want = _wrong(net, rng, 2)
    Xk = rng.normal(size=(150, 4))
    yk = net.forward(Xk).argmax(1)
    plain = finetune(net, X, ensure(want, 5))
    broken = int(np.sum(predictions(plain.network, Xk) != yk))
    assert broken > 0                       # the case needs the keep set (else the test proves nothing)
    r = finetune(net, X, ensure(want, 5), keep=(Xk, yk))
    assert r.status is REPAIRED
    assert np.array_equal(predictions(r.network, Xk), yk)
    assert 0 < r.extra["keep_rows_added"] < 150 * 4          # lazily: only the violated rows
    assert r.norms["linf"] >= plain.norms["linf"] - 1e-9


def test_soft_keep_tie_break_never_keeps_fewer_than_the_plain_optimum():
    net = _net(14, sizes=(4, 16, 5))
    rng = np.random.default_rng(15)
    X, want = _wrong(net, rng, 3)
    Xk = rng.normal(size=(60, 4))
    yk = net.forward(Xk).argmax(1)
    plain = finetune(net, X, ensure(want, 5))
    kept_plain = int(np.sum(plain.network.forward(Xk).argmax(1) == yk))
    for mode in ("hinge", "count"):
        r = finetune(net, X, ensure(want, 5), keep=(Xk, yk), keep_mode=mode, tie_break="keep")
        assert r.status is REPAIRED
        assert r.norms["linf"] <= plain.norms["linf"] * (1 + 1e-6) + 1e-6
        if mode == "count":
            assert int(np.sum(r.network.forward(Xk).argmax(1) == yk)) >= kept_plain


def test_linear_rows_and_already_met():
    net = _net(16)
    x = np.random.default_rng(17).normal(size=(1, 4))
    y = net.forward(x)[0]
    r = finetune(net, x, linear(np.array([[1.0, 0.0, 0.0]]), np.array([y[0] - 0.5])))
    assert r.status is REPAIRED and float32_outputs(r.network, x)[0, 0] <= y[0] - 0.5
    same = finetune(net, x, ensure([int(np.argmax(y))], 3, 0.0))
    assert same.status is REPAIRED and same.reason is RepairReason.ALREADY_MET and same.norms["linf"] == 0.0


@pytest.mark.parametrize("call, msg", [
    (lambda n: finetune(n, np.zeros((0, 4)), np.zeros(0, dtype=int)), "empty"),
    (lambda n: finetune(n, np.zeros((2, 4)), [0, 3]), "label 3 out of range 0..2"),
    (lambda n: finetune(n, np.zeros((2, 5)), [0, 1]), "shape"),
    (lambda n: finetune(n, np.zeros((2, 4)), [0, 1, 2]), "2 inputs but constraints for 3"),
    (lambda n: finetune(n, np.zeros((2, 4)), [0, 1], layer=3), "layer 3 out of range"),
    (lambda n: finetune(n, np.zeros((2, 4)), [0, 1], norm="l2"), "norm must be"),
    (lambda n: finetune(n, np.zeros((2, 4)), [0, 1], mask=np.ones((2, 2), bool)), "mask has shape"),
    (lambda n: finetune(n, np.full((2, 4), np.nan), [0, 1]), "finite"),
    (lambda n: finetune(n, np.zeros((2, 4)), [0, 1], keep=(np.zeros((3, 4)), [0, 1])), "keep"),
    (lambda n: finetune(n, np.zeros((2, 4)), [0, 1], tie_break="keep"), "tie_break='keep' needs"),
])
def test_bad_input_is_a_clear_error(call, msg):
    with pytest.raises(RepairInputError, match=msg):
        call(_net(0))


def test_infeasible_with_many_keep_rows_is_certified():
    """HiGHS' ray is exact only to ~1e-12: every column must be bounded for the certificate
    (the change box and the norm's auxiliary variables); seen as 'unknown' before."""
    net = _net(12, sizes=(4, 16, 5))
    rng = np.random.default_rng(13)
    X, want = _wrong(net, rng, 5)
    Xk = rng.normal(size=(400, 4))
    yk = net.forward(Xk).argmax(1)
    r = finetune(net, X, ensure(want, 5), keep=(Xk, yk))
    assert r.status is INFEASIBLE and r.reason is RepairReason.LP_FARKAS, r.summary()


def test_unbounded_change_contradiction_is_still_certified():
    """Columns the ray does not touch have a reduced cost of exactly 0 (checked in rational
    arithmetic), so an infinite box does not void the certificate."""
    net = _net(6)
    x = np.random.default_rng(7).normal(size=(1, 4))
    r = finetune(net, np.concatenate([x, x]), ensure([0, 1], 3), bound=np.inf)
    assert r.status is INFEASIBLE and r.reason is RepairReason.LP_FARKAS
