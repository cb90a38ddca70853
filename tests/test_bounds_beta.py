"""beta-CROWN-style split multipliers in our alpha-CROWN (cegarnn.bounds.crown.beta): soundness on
box ∩ splits by rejection sampling, beta = 0 is the alpha pass exactly, a case the split
constraint is needed for, and optimised betas never looser than without them."""
from __future__ import annotations

import numpy as np
import pytest

from cegarnn.bounds.crown import BatchBounder, Splits
from cegarnn.network.ir import Affine, Network, ReLU, Sigmoid

pytest.importorskip("torch")

ACTS = {"relu": ReLU, "sigmoid": Sigmoid}


def random_net(rng, sizes, act) -> Network:
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Affine(rng.normal(size=(b, a)) * 1.5 / np.sqrt(a), rng.normal(size=b) * 0.5))
        if k < len(sizes) - 2:
            layers.append(ACTS[act]())
    return Network(tuple(layers), (sizes[0],))


def random_splits(rng, net, lo, hi, act, frac=0.4):
    """Splits around an anchor point of each box (so the set is not empty): ReLU phases of the
    anchor, or segments containing the anchor's pre-activation, on a random share of neurons."""
    B = lo.shape[0]
    anchor = lo + rng.random(lo.shape) * (hi - lo)
    vals = net.forward_all(anchor)
    acts = [i for i, l in enumerate(net.layers) if not isinstance(l, Affine)]
    sp = Splits()
    for i in acts:
        v = vals[i]
        pick = rng.random(v.shape) < frac
        if act == "relu":
            sp.relu[i] = np.where(pick, np.where(v >= 0, 1, -1), 0).astype(np.int8)
        else:
            w = np.abs(v).mean() + 0.1
            a = v - rng.random(v.shape) * w
            b = v + rng.random(v.shape) * w
            side = rng.random(v.shape)
            sp.seg_lo[i] = np.where(pick & (side < 0.7), a, -np.inf)
            sp.seg_hi[i] = np.where(pick & (side > 0.3), b, np.inf)
    return sp


def feasible_points(rng, net, lo, hi, sp, b, n=20000):
    X = lo[b] + rng.random((n, lo.shape[1])) * (hi[b] - lo[b])
    vals = net.forward_all(X)
    ok = np.ones(n, dtype=bool)
    for i, ph in sp.relu.items():
        ok &= np.all((ph[b] == 0) | ((ph[b] > 0) & (vals[i] >= 0)) | ((ph[b] < 0) & (vals[i] <= 0)), axis=1)
    for i in sp.seg_lo:
        ok &= np.all((vals[i] >= sp.seg_lo[i][b]) & (vals[i] <= sp.seg_hi[i][b]), axis=1)
    return [v[ok] for v in vals]


@pytest.mark.parametrize("act,seed,dtype,warm,beta", [
    ("relu", 0, "float64", False, True), ("relu", 1, "float32", True, "all"), ("relu", 9, "float64", True, True),
    ("sigmoid", 2, "float64", True, "all"), ("sigmoid", 3, "float32", False, True),
    ("sigmoid", 10, "float64", True, True)])
def test_beta_sound_by_sampling(act, seed, dtype, warm, beta):
    rng = np.random.default_rng(seed)
    net = random_net(rng, [3, 8, 8, 3], act)
    B = 4
    lo = rng.normal(size=(B, 3))
    hi = lo + 0.5 + rng.random((B, 3)) * 1.5
    sp = random_splits(rng, net, lo, hi, act)
    C = rng.normal(size=(B, 4, 3))
    bb = BatchBounder(net, backend="torch", dtype=dtype)
    res, st = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, beta=beta, iterations=8, beta_lr=0.5)
    if warm:        # warm-started from the optimised alphas and betas: large betas from the start
        res, st = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, beta=beta, iterations=5, beta_lr=1.0,
                            alpha_init=st.alphas)
    checked = 0
    for b in range(B):
        vals = feasible_points(rng, net, lo, hi, sp, b)
        if len(vals[0]) == 0:
            continue
        assert not st.infeasible[b]
        checked += len(vals[0])
        y = vals[-1]
        obj = y @ C[b].T
        assert np.all(obj >= st.objective_lower[b] - 1e-12), (obj.min(axis=0), st.objective_lower[b])
        for k in range(1, len(vals)):
            assert np.all(vals[k] >= res.lower[k][b] - 1e-12)
            assert np.all(vals[k] <= res.upper[k][b] + 1e-12)
    assert checked > 100


@pytest.mark.parametrize("act,beta", [("relu", True), ("sigmoid", True), ("relu", "all"), ("sigmoid", "all")])
def test_beta_zero_is_alpha_exactly(act, beta):
    rng = np.random.default_rng(7)
    net = random_net(rng, [3, 8, 8, 3], act)
    lo = rng.normal(size=(3, 3))
    hi = lo + 1.0
    sp = random_splits(rng, net, lo, hi, act)
    C = rng.normal(size=(3, 2, 3))
    bb = BatchBounder(net, backend="torch")
    r0, s0 = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, iterations=8)
    r1, s1 = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, iterations=8, beta=beta, beta_iterations=0)
    # betas held at 0 and then moved with rate 0: the alpha run with 8 + 4 steps
    r2, s2 = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, iterations=12)
    r3, s3 = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, iterations=8, beta=beta, beta_iterations=4,
                       beta_lr=0.0)
    for x, y in ((r0, r1), (r2, r3)):
        for a, b in zip(x.lower + x.upper, y.lower + y.upper):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(s0.objective_lower, s1.objective_lower)
    np.testing.assert_array_equal(s2.objective_lower, s3.objective_lower)
    assert any(k.startswith("beta:") for k in s1.alphas)
    assert not any(k.startswith("beta:") for k in s0.alphas)
    assert all(float(t.abs().max()) == 0.0 for k, d in s3.alphas.items() if k.startswith("beta:")
               for t in d.values())


def _tight_relu_net():
    # v = [x1 + 5, x2 + 5, x1 + x2 - 0.5] -> ReLU -> y = h1 + h2 - 10 = x1 + x2 on [-1, 1]^2
    W0 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    return Network((Affine(W0, np.array([5.0, 5.0, -0.5])), ReLU(),
                    Affine(np.array([[1.0, 1.0, 0.0]]), np.array([-10.0]))), (2,))


def _tight_sigmoid_net():
    # v = [x1 + x2, x1, x2] -> sigmoid -> y = s2 + s3, split x1 + x2 >= 1
    W0 = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    return Network((Affine(W0, np.zeros(3)), Sigmoid(), Affine(np.array([[0.0, 1.0, 1.0]]), np.zeros(1))), (2,))


@pytest.mark.parametrize("kind", ["relu", "sigmoid"])
def test_beta_uses_the_split_constraint(kind):
    lo, hi = -np.ones((1, 2)), np.ones((1, 2))
    if kind == "relu":
        net = _tight_relu_net()
        sp = Splits(relu={1: np.array([[0, 0, 1]], dtype=np.int8)})   # x1 + x2 >= 0.5
    else:
        net = _tight_sigmoid_net()
        sp = Splits(seg_lo={1: np.array([[1.0, -np.inf, -np.inf]])},
                    seg_hi={1: np.array([[np.inf, np.inf, np.inf]])})  # x1 + x2 >= 1
    C = np.ones((1, 1, 1))
    bb = BatchBounder(net, backend="torch")
    _, s0 = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, iterations=30)
    _, s1 = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, iterations=30, beta=True, beta_lr=0.1)
    rng = np.random.default_rng(0)
    vals = feasible_points(rng, net, lo, hi, sp, 0, n=50000)
    true_min = vals[-1][:, 0].min()
    b0, b1 = s0.objective_lower[0, 0], s1.objective_lower[0, 0]
    assert b1 > b0 + 0.3, (b0, b1)
    assert b1 <= true_min, (b1, true_min)
    if kind == "relu":      # exact: min over the split is 0.5
        assert b1 > 0.49 and true_min < 0.51


@pytest.mark.parametrize("act,seed", [("relu", 4), ("sigmoid", 5), ("relu", 6), ("sigmoid", 8)])
def test_beta_never_looser(act, seed):
    rng = np.random.default_rng(seed)
    net = random_net(rng, [3, 10, 10, 3], act)
    B = 6
    lo = rng.normal(size=(B, 3))
    hi = lo + 1.0 + rng.random((B, 3))
    sp = random_splits(rng, net, lo, hi, act, frac=0.6)
    C = rng.normal(size=(B, 3, 3))
    bb = BatchBounder(net, backend="torch")
    _, sc = BatchBounder(net).bounds(lo, hi, splits=sp, objective=C)     # numpy CROWN, alpha's baseline
    _, s0 = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, iterations=10)
    _, s1 = bb.bounds(lo, hi, splits=sp, objective=C, alpha=True, iterations=10, beta=True)
    ok = ~s1.infeasible
    # guaranteed: the first 10 steps are the alpha run (betas held at 0), the best bound is kept
    assert np.all(s1.objective_lower[ok] >= sc.objective_lower[ok])
    assert np.all(s1.objective_lower[ok] >= s0.objective_lower[ok])
    assert np.any(s1.objective_lower[ok] > s0.objective_lower[ok] + 1e-6)


def test_beta_needs_alpha():
    net = _tight_relu_net()
    with pytest.raises(ValueError, match="alpha"):
        BatchBounder(net, backend="torch").bounds(-np.ones(2), np.ones(2), beta=True)
    with pytest.raises(ValueError, match="beta must be"):
        BatchBounder(net, backend="torch").bounds(-np.ones(2), np.ones(2), alpha=True, beta="some")
