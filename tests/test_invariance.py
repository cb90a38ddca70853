"""Invertibility and pseudo-invertibility (cegarnn.invariance) against ground truth on tiny networks:
a sampled lower bound and an interval-splitting upper bound of the maximum (tests/invariance_brute.py,
independent of cegarnn's bounds, encoder and solvers); residual blocks with known answers; sigmoid /
tanh through lazy segment refinement; confirmation on an ONNX reference; bad input."""
from __future__ import annotations

import numpy as np
import pytest

from cegarnn.invariance import (PROVED, REFUTED, InvarianceInputError, InvarianceReason, invertibility,
                                pseudo_invertibility)
from cegarnn.invariance.blocks import contractive_block, folding_block
from cegarnn.invariance.check import constraint_check, jacobian
from cegarnn.network import Affine, Network, NetworkError, ReLU, Sigmoid, Tanh, save_onnx

from conftest import relu_net
from invariance_brute import box_distance, forward, pair_upper_bound, sampled_invertibility

FAST = {"bounds": "interval", "time_limit": 20}
TAU, R = 0.05, 0.3


def _witness_ok(net, res, tau, tol, center=None):
    """The witness recomputed here: in the ball, farther apart than tol, outputs within tau."""
    w = res.witness
    x, y = np.array(w.x), np.array(w.y)
    lo, hi = np.array(res.settings["lower"]), np.array(res.settings["upper"])
    assert np.all(x >= lo) and np.all(x <= hi) and np.all(y >= lo) and np.all(y <= hi)
    if center is not None:
        assert np.array_equal(y, center)
    assert np.max(np.abs(x - y)) > tol
    fx, fy = forward(net, x)[0], forward(net, y)[0]
    assert np.max(np.abs(fx - fy)) <= tau + 1e-8 * max(1, np.abs(fx).max())
    return float(np.max(np.abs(x - y)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("pseudo", [False, True])
def test_against_brute_force(seed, pseudo):
    """Below the sampled maximum the answer must be a confirmed pair no farther apart than the
    splitting upper bound; above the upper bound it must be a proof."""
    net = relu_net(seed, (2, 8, 3))
    c = np.full(2, 0.1)
    lo, hi = c - R, c + R
    cen = c if pseudo else None
    lb = sampled_invertibility(net, lo, hi, TAU, center=cen)
    ub = pair_upper_bound(net, lo, hi, TAU + 1e-6, box_distance(), lower=lb, center=cen)
    fn = pseudo_invertibility if pseudo else invertibility
    if lb > 1e-3:
        low = fn(net, c, R, tau=TAU, tol=0.9 * lb, **FAST)
        assert low.status == REFUTED, low.summary()
        d = _witness_ok(net, low, TAU, 0.9 * lb, cen)
        assert d <= ub + 1e-9
    high = fn(net, c, R, tau=TAU, tol=ub + 1e-3, **FAST)
    assert high.status == PROVED, high.summary()
    assert high.reason == InvarianceReason.BOUND_AT_MOST_THRESHOLD and high.bound <= ub + 1e-3
    assert high.bound >= lb - 1e-9                      # an upper bound on the maximum


def test_l1_norm_against_sampling():
    net = relu_net(3, (2, 8, 3))
    c = np.full(2, 0.1)
    lb = sampled_invertibility(net, c - R, c + R, TAU, norm=lambda a, b: np.sum(np.abs(a - b), -1))
    res = invertibility(net, c, R, tau=TAU, tol=0.9 * lb, norm="l1", **FAST)
    assert res.status == REFUTED and res.value > 0.9 * lb
    assert np.isclose(res.value, np.sum(np.abs(np.array(res.witness.x) - np.array(res.witness.y))))
    assert invertibility(net, c, R, tau=TAU, tol=2 * 2 * R + 1e-3, norm="l1", **FAST).status == PROVED


def test_relu_collapsing_a_direction_gives_an_exact_collision():
    """f(x) = (relu(x0), x1): every x0 <= 0 collides; on B((-0.1, 0), 0.2) the farthest pair is 0.3."""
    # the identity path of x1 through a ReLU is exact on the ball only if x1 >= 0 there: shift it
    net = Network((Affine(np.eye(2), np.array([0.0, 1.0])), ReLU(), Affine(np.eye(2), np.array([0.0, -1.0]))), (2,))
    c = np.array([-0.1, 0.0])
    res = invertibility(net, c, 0.2, tol=0.25, **FAST)
    assert res.status == REFUTED
    d = _witness_ok(net, res, 0.0, 0.25)
    assert 0.25 < d <= 0.3 + 1e-12 and res.witness.constraint_ir <= 1e-12
    assert invertibility(net, c, 0.2, tol=0.3 + 1e-3, **FAST).status == PROVED
    assert pseudo_invertibility(net, c, 0.2, tol=0.15, **FAST).status == REFUTED     # x0 in [-0.3, 0]: 0.2 away
    assert invertibility(net, np.array([0.5, 0.0]), 0.2, **FAST).status == PROVED     # x0 > 0: injective


@pytest.mark.parametrize("n,hidden,seed", [(3, 6, 0), (4, 8, 1)])
def test_residual_blocks_with_known_answers(n, hidden, seed):
    c = np.zeros(n)
    inj = contractive_block(n, hidden, 0.9, seed, c - 2, c + 2)
    res = invertibility(inj, c, 0.2, **FAST)
    assert res.status == PROVED and res.bound <= res.threshold
    assert pseudo_invertibility(inj, c, 0.2, **FAST).status == PROVED
    fold, u, beta = folding_block(n, hidden, 0.9, seed, c, c - 2, c + 2)
    res = invertibility(fold, c, 0.2, **FAST)
    assert res.status == REFUTED
    _witness_ok(fold, res, 0.0, res.threshold)
    x, y = np.array(res.witness.x), np.array(res.witness.y)
    assert (u @ x - beta) * (u @ y - beta) <= 1e-9           # the pair lies across the fold


def test_sigmoid_and_tanh_through_lazy_refinement():
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(2, 2)) + 2 * np.eye(2), rng.normal(size=(2, 2)) + 2 * np.eye(2)
    inj = Network((Affine(W1, 0.1 * rng.normal(size=2)), Tanh(), Affine(W2, np.zeros(2))), (2,))
    c = np.array([0.1, -0.2])
    res = invertibility(inj, c, 0.2, tol=1e-2, **FAST)
    assert res.status == PROVED and res.stats.rounds >= 1        # one segment per neuron is not enough
    rank1 = Network((Affine(rng.normal(size=(3, 1)) @ rng.normal(size=(1, 2)), 0.1 * rng.normal(size=3)), Sigmoid(),
                     Affine(rng.normal(size=(2, 3)), np.zeros(2))), (2,))
    for fn in (invertibility, pseudo_invertibility):
        res = fn(rank1, c, 0.2, tol=1e-2, **FAST)
        assert res.status == REFUTED
        _witness_ok(rank1, res, 0.0, 1e-2, c if fn is pseudo_invertibility else None)


def test_witness_confirmed_on_the_onnx_model(tmp_path):
    net = relu_net(5, (2, 8, 3))
    path = tmp_path / "net.onnx"
    save_onnx(net, path)
    res = invertibility(path, np.full(2, 0.1), R, tau=TAU, tol=0.1, **FAST)
    assert res.status == REFUTED
    w = res.witness
    assert w.constraint_reference is not None and w.constraint_reference <= w.reference_limit
    assert res.settings["reference_tol"] == 1e-4


def test_confirmation_can_fail():
    """A reference that disagrees, or outputs beyond tau, is not confirmed."""
    net = relu_net(0, (2, 8, 3))
    x, y = np.zeros(2), np.full(2, 0.01)
    gap = float(np.max(np.abs(net.forward(x) - net.forward(y))))
    assert constraint_check(net, None, x, y, gap * 1.01, 1e-8, 1e-4)["ok"]
    assert not constraint_check(net, None, x, y, gap * 0.99, 1e-8, 1e-4)["ok"]
    liar = lambda X: forward(net, X) + np.arange(len(X))[:, None]            # noqa: E731
    chk = constraint_check(net, liar, x, y, gap * 1.01, 1e-8, 1e-4)
    assert not chk["ok"] and "reference" in chk["why"]


def test_jacobian_matches_finite_differences():
    net = Network((Affine(np.random.default_rng(1).normal(size=(4, 3)), np.ones(4)), Tanh(),
                   Affine(np.random.default_rng(2).normal(size=(2, 4)), np.zeros(2)), Sigmoid()), (3,))
    x = np.array([0.1, -0.3, 0.2])
    fd = np.stack([(net.forward(x + 1e-6 * e) - net.forward(x - 1e-6 * e)) / 2e-6 for e in np.eye(3)], 1)
    assert np.allclose(jacobian(net, x), fd, atol=1e-7)


def test_pulp_backend_gives_the_same_answers():
    pytest.importorskip("pulp")
    net = relu_net(2, (2, 8, 3))
    c = np.full(2, 0.1)
    for tol, want in ((0.1, REFUTED), (0.16, PROVED)):
        assert invertibility(net, c, R, tau=TAU, tol=tol, backend="pulp", **FAST).status == want


@pytest.mark.parametrize("call,match", [
    (lambda n: invertibility(n, [0, 0], 0.0), "radius"),
    (lambda n: invertibility(n, [0, 0], -1), "radius"),
    (lambda n: invertibility(n, [0, 0, 0], 0.1), "3 values"),
    (lambda n: invertibility(n, [np.nan, 0], 0.1), "NaN"),
    (lambda n: invertibility(n, [0, 0], 0.1, tau=-1), "tau"),
    (lambda n: invertibility(n, [0, 0], 0.1, norm="l2"), "norm"),
    (lambda n: invertibility(n, [0, 0], 0.1, bogus=1), "unknown option"),
    (lambda n: invertibility(n, [0, 0], 0.1, backend="nope"), "backend"),
    (lambda n: invertibility(n, [0, 0], 0.1, domain=([1, 1], [2, 2])), "outside the domain"),
    (lambda n: invertibility("missing.onnx", [0, 0], 0.1), "not found"),
])
def test_bad_input_raises(call, match):
    with pytest.raises(InvarianceInputError, match=match):
        call(relu_net(0, (2, 8, 3)))


def test_unsupported_layer_raises():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Softmax(dim=1))
    with pytest.raises(NetworkError):
        invertibility(model, [0, 0], 0.1)
