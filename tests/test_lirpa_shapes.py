"""auto_LiRPA alpha-CROWN on ReLU layers that are mostly (but not entirely) unstable.

Regression for the "shape mismatch" fallback seen on the affine32 shift benchmark (bab-crown,
image 34, delta 0.5): auto_LiRPA 0.3 creates full-size alphas for a ReLU layer with more than 90 %
of its neurons unstable but keeps the sparse index set of the unstable ones (it drops it only when
verbose), so the backward pass raised ``RuntimeError: shape mismatch: value tensor of shape
[.., n] cannot be broadcast to indexing result of shape [.., k]``. The failed optimisation also left
the activations in alpha-CROWN's 'opt' stage, so the plain-CROWN retry (and every later call on the
cached module) failed the same way and the box got interval bounds.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from cegarnn.bounds import crown_bounds, interval_bounds, lirpa
from cegarnn.network.ir import Affine, Network, ReLU, Sigmoid

N_WIDE = 20


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    torch = pytest.importorskip("torch")
    try:
        lirpa.load_auto_lirpa()
    except lirpa.LirpaUnavailable as exc:    # pragma: no cover - auto_LiRPA missing
        pytest.skip(str(exc))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def mostly_unstable_net(n_unstable: int, seed: int = 0, sigmoid: bool = False) -> Network:
    """2 inputs in [-1, 1]^2 -> ``N_WIDE`` ReLUs of which the first ``n_unstable`` straddle 0 on
    that box (bias 0) and the rest are always active (bias 5 > |W x|) -> 6 ReLU (or sigmoid) -> 3."""
    rng = np.random.default_rng(seed)
    W1 = rng.uniform(0.5, 1.0, size=(N_WIDE, 2)) * rng.choice([-1.0, 1.0], size=(N_WIDE, 2))
    b1 = np.where(np.arange(N_WIDE) < n_unstable, 0.0, 5.0)
    layers = (Affine(W1, b1), ReLU(),
              Affine(rng.normal(size=(6, N_WIDE)), rng.normal(size=6)), Sigmoid() if sigmoid else ReLU(),
              Affine(rng.normal(size=(3, 6)), rng.normal(size=3)))
    return Network(layers, (2,), name=f"unstable{n_unstable}")


def boxes(batch: int, seed: int = 1):
    """``batch`` boxes around the origin (each contains 0, so every bias-0 neuron is unstable)."""
    rng = np.random.default_rng(seed)
    lo = -rng.uniform(0.3, 1.0, size=(batch, 2))
    hi = rng.uniform(0.3, 1.0, size=(batch, 2))
    return lo, hi


def sample(rng, lo, hi, n=2000):
    u = lo + rng.random((n, lo.size)) * (hi - lo)
    corners = np.array([[a, b] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])])
    return np.concatenate([u, corners, ((lo + hi) / 2)[None]])


def assert_sound(net: Network, bounds, lo: np.ndarray, hi: np.ndarray, rng):
    """Every value of ``forward_all`` at sampled points of each box lies within its bounds."""
    for b in range(lo.shape[0]):
        values = net.forward_all(sample(rng, lo[b], hi[b]))
        for i, v in enumerate(values):
            tol = 1e-10 * (1.0 + np.abs(v))
            assert np.all(v >= bounds.lower[i][b] - tol), f"box {b} value {i}: below the lower bound"
            assert np.all(v <= bounds.upper[i][b] + tol), f"box {b} value {i}: above the upper bound"


def lirpa_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "cegarnn.bounds" and r.levelno >= logging.WARNING]


# 19 of 20 unstable is the band that failed (> 90 % but not all); 20 and 10 are the neighbours
@pytest.mark.parametrize("n_unstable", [19, 20, 10])
@pytest.mark.parametrize("sigmoid", [False, True])
def test_alpha_crown_mostly_unstable_relu_layer(caplog, n_unstable, sigmoid):
    net = mostly_unstable_net(n_unstable, sigmoid=sigmoid)
    rng = np.random.default_rng(n_unstable)
    # batch sizes that differ between calls on the same cached BoundedModule (1 = the root box)
    for batch in (1, 2, 3, 1):
        lo, hi = boxes(batch, seed=batch)
        ib = interval_bounds(net, lo, hi)
        unstable = (ib.lower[1] < 0) & (ib.upper[1] > 0)
        assert np.all(unstable.sum(axis=1) == n_unstable)      # the case the test is about
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cegarnn.bounds"):
            got = crown_bounds(net, lo, hi, method="alpha-CROWN")
            plain = crown_bounds(net, lo, hi, method="CROWN")
        assert lirpa_warnings(caplog) == []
        assert got.method == "alpha-crown" and plain.method == "crown"
        assert_sound(net, got, lo, hi, rng)
        assert_sound(net, plain, lo, hi, rng)
        for i in range(len(net.layers) + 1):               # never looser than interval bounds
            assert np.all(got.lower[i] >= ib.lower[i]) and np.all(got.upper[i] <= ib.upper[i])


def test_single_box_alpha_crown_mostly_unstable():
    net = mostly_unstable_net(19, seed=3)
    lo, hi = boxes(1, seed=7)
    got = crown_bounds(net, lo[0], hi[0], method="alpha-CROWN")
    assert got.method == "alpha-crown" and got.lower[-1].shape == (3,)


def test_failed_alpha_crown_does_not_poison_plain_crown(monkeypatch, caplog):
    """A failure inside alpha-CROWN's optimisation must leave the cached module usable: the plain
    CROWN retry succeeds, and later plain CROWN calls match a freshly built module exactly."""
    from auto_LiRPA.operators.activation import BoundRelu

    net = mostly_unstable_net(10, seed=5)
    lo, hi = boxes(2, seed=11)
    original = BoundRelu.bound_backward

    def fails_while_optimising(self, *args, **kwargs):
        if self.opt_stage in ("opt", "reuse"):
            raise RuntimeError("simulated failure during alpha optimisation")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BoundRelu, "bound_backward", fails_while_optimising)
    with caplog.at_level(logging.WARNING, logger="cegarnn.bounds"):
        got = crown_bounds(net, lo, hi, method="alpha-CROWN")
    messages = lirpa_warnings(caplog)
    assert any("plain CROWN" in m for m in messages), messages
    assert got.method == "crown", messages          # the retry worked: not the interval fallback
    monkeypatch.setattr(BoundRelu, "bound_backward", original)

    bounder = lirpa.get_bounder(net)
    assert all(n.opt_stage is None for n in bounder.module.optimizable_activations)
    lo2, hi2 = boxes(3, seed=12)
    after = bounder.bounds(lo2, hi2, "CROWN")
    fresh = lirpa.CrownBounder(net).bounds(lo2, hi2, "CROWN")
    for i in range(len(net.layers) + 1):
        np.testing.assert_array_equal(after.lower[i], fresh.lower[i])
        np.testing.assert_array_equal(after.upper[i], fresh.upper[i])
    assert_sound(net, after, lo2, hi2, np.random.default_rng(0))
