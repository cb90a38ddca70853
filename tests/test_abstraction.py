"""Sigmoid/tanh envelopes: soundness by sampling, exactness at segment ends, breakpoint sets."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cegarnn.abstraction.sigmoid import (EPS, AbstractionError, SegmentedNeuron, abstract_range, envelope,
                                         get_activation, uniform_breakpoints)
from cegarnn.network.ir import Sigmoid, Tanh

KINDS = ["sigmoid", "tanh"]
EXACT = 1e-8        # |line(end) - f(end)| for the line that is exact at that end (eps = 1e-9 + float)


def _segments(rng, n):
    """Convex, concave, straddling, tiny and far-tail segments."""
    parts = []
    w = np.exp(rng.uniform(np.log(1e-3), np.log(20), n))
    a = rng.uniform(-15, -1e-3, n)
    parts.append((a - w, np.minimum(a, a - w + w)))                 # convex (b <= 0)
    a = rng.uniform(0, 15, n)
    parts.append((a, a + w))                                        # concave
    a = -rng.uniform(1e-6, 10, n)
    parts.append((a, rng.uniform(1e-6, 10, n)))                     # straddling 0
    c = rng.uniform(-10, 10, n)
    tw = 10 ** rng.uniform(-15, -8, n)
    parts.append((c, c + tw))                                       # tiny
    c = rng.choice([-1, 1], n) * rng.uniform(30, 55, n)
    parts.append((c - 5, c + 5))                                    # far tails
    parts.append((np.array([-50.0, -60.0, 0.0, 0.0, -1e-300, 3.0]), np.array([50.0, 60.0, 0.0, 5.0, 1e-300, 3.0])))
    a = np.concatenate([p[0] for p in parts])
    b = np.concatenate([p[1] for p in parts])
    return np.minimum(a, b), np.maximum(a, b)


def _check_envelope(kind, a, b, n_points=600, rng=None):
    act = get_activation(kind)
    env = envelope(kind, a, b)
    rng = rng or np.random.default_rng(0)
    u = np.concatenate([np.linspace(0, 1, n_points // 2), rng.uniform(0, 1, n_points // 2)])
    X = a[:, None] + (b - a)[:, None] * u[None, :]
    X = np.clip(X, a[:, None], b[:, None])
    inside0 = (a < 0) & (b > 0)
    X = np.concatenate([X, np.where(inside0, 0.0, a)[:, None]], axis=1)   # the inflection point
    F = act.f(X)
    assert np.all(env.upper_at(X) >= F), f"{kind}: upper envelope below f by {np.max(F - env.upper_at(X))}"
    assert np.all(env.lower_at(X) <= F), f"{kind}: lower envelope above f by {np.max(env.lower_at(X) - F)}"
    # line 0 exact at a, line 1 exact at b
    fa, fb = act.f(a), act.f(b)
    assert np.max(np.abs(env.upper_slope[:, 0] * a + env.upper_offset[:, 0] - fa)) < EXACT
    assert np.max(np.abs(env.upper_slope[:, 1] * b + env.upper_offset[:, 1] - fb)) < EXACT
    assert np.max(np.abs(env.lower_slope[:, 0] * a + env.lower_offset[:, 0] - fa)) < EXACT
    assert np.max(np.abs(env.lower_slope[:, 1] * b + env.lower_offset[:, 1] - fb)) < EXACT
    return env


@pytest.mark.parametrize("kind", KINDS)
def test_envelope_sound_and_exact_on_many_segments(kind):
    rng = np.random.default_rng(1)
    a, b = _segments(rng, 300)
    _check_envelope(kind, a, b, rng=rng)


@pytest.mark.parametrize("kind", KINDS)
def test_convex_and_concave_shapes(kind):
    act = get_activation(kind)
    # convex segment: both upper lines are the secant, lower lines the end tangents
    a, b = np.array([-4.0]), np.array([-1.0])
    env = envelope(kind, a, b)
    sec = (act.f(b) - act.f(a)) / (b - a)
    assert np.allclose(env.upper_slope[0], sec[0], atol=1e-12)
    assert np.allclose(env.lower_slope[0], [act.df(a)[0], act.df(b)[0]], atol=1e-12)
    # concave: mirrored
    a, b = np.array([0.5]), np.array([3.0])
    env = envelope(kind, a, b)
    sec = (act.f(b) - act.f(a)) / (b - a)
    assert np.allclose(env.lower_slope[0], sec[0], atol=1e-12)
    assert np.allclose(env.upper_slope[0], [act.df(a)[0], act.df(b)[0]], atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_slopes_are_optimal(kind):
    """Each line is the tightest valid line through its end (sup/inf of chord slopes)."""
    act = get_activation(kind)
    rng = np.random.default_rng(2)
    a = rng.uniform(-6, 3, 40)
    b = a + rng.uniform(0.5, 8, 40)
    env = envelope(kind, a, b)
    s = np.linspace(0, 1, 20001)[1:]
    X = a[:, None] + (b - a)[:, None] * s
    g = (act.f(X) - act.f(a)[:, None]) / (X - a[:, None])
    Y = b[:, None] - (b - a)[:, None] * s
    q = (act.f(b)[:, None] - act.f(Y)) / (b[:, None] - Y)
    # grid sup/inf can only be less extreme than the true ones (the limits at the ends are f')
    sup_g = np.maximum(g.max(1), act.df(a))
    inf_g = np.minimum(g.min(1), act.df(a))
    inf_q = np.minimum(q.min(1), act.df(b))
    sup_q = np.maximum(q.max(1), act.df(b))
    assert np.allclose(env.upper_slope[:, 0], sup_g, atol=1e-6)
    assert np.allclose(env.lower_slope[:, 0], inf_g, atol=1e-6)
    assert np.allclose(env.upper_slope[:, 1], inf_q, atol=1e-6)
    assert np.allclose(env.lower_slope[:, 1], sup_q, atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(KINDS),
       a=st.floats(-60, 60, allow_nan=False),
       logw=st.floats(-16, 2),
       straddle=st.booleans())
def test_envelope_edge_cases(kind, a, logw, straddle):
    w = 10.0 ** logw
    if straddle:
        a = -w * 0.37
    b = a + w
    _check_envelope(kind, np.array([a]), np.array([b]), n_points=200)


def test_activation_from_layer_and_bad_input():
    assert get_activation(Sigmoid()).name == "sigmoid"
    assert get_activation(Tanh()).name == "tanh"
    with pytest.raises(AbstractionError, match="unknown"):
        get_activation("relu")
    with pytest.raises(AbstractionError, match="inverted"):
        envelope("sigmoid", [1.0], [0.0])
    with pytest.raises(AbstractionError, match="finite"):
        envelope("sigmoid", [-np.inf], [0.0])


def test_tanh_and_sigmoid_function_values_match_ir():
    x = np.linspace(-30, 30, 1001)
    assert np.array_equal(get_activation("tanh").f(x), np.tanh(x))
    act = get_activation("sigmoid")
    d = act.diff(x[1:], x[:-1])
    assert np.allclose(d, act.f(x[1:]) - act.f(x[:-1]), atol=1e-15)


def test_abstract_range_exact_at_ends_only():
    lo, hi = abstract_range("sigmoid", [-2.0], [3.0], [-2.0])
    f = get_activation("sigmoid").f(np.array([-2.0]))
    assert abs(lo[0] - f[0]) < EXACT and abs(hi[0] - f[0]) < EXACT
    lo, hi = abstract_range("sigmoid", [-2.0], [3.0], [0.5])
    assert hi[0] - lo[0] > 0.05


def test_segmented_neuron():
    sn = SegmentedNeuron(-2.0, 3.0, tol=1e-6)
    assert sn.n_segments == 1
    assert sn.add_breakpoint(0.5)
    assert not sn.add_breakpoint(0.5 + 1e-7)        # within tol of an existing one
    assert not sn.add_breakpoint(-2.0)              # an end
    assert not sn.add_breakpoint(5.0)               # outside
    assert not sn.add_breakpoint(np.nan)
    assert sn.add_breakpoint(-1.0)
    assert np.array_equal(sn.breakpoints, [-2.0, -1.0, 0.5, 3.0])
    assert sn.segments.shape == (3, 2)
    assert sn.segment_of(0.0) == 1 and sn.segment_of(-5) == 0 and sn.segment_of(9) == 2
    u = SegmentedNeuron.uniform(-1.0, 1.0, 4)
    assert np.allclose(u.breakpoints, [-1, -0.5, 0, 0.5, 1])
    assert np.allclose(uniform_breakpoints(0.0, 1.0, 2), [0, 0.5, 1])
    d = SegmentedNeuron(1.0, 1.0)                   # degenerate interval: one segment, no splits
    assert d.n_segments == 1 and not d.add_breakpoint(1.0)
    with pytest.raises(AbstractionError):
        SegmentedNeuron(1.0, 0.0)
    # envelopes on all segments are exact at every breakpoint
    act = get_activation("sigmoid")
    t = u.breakpoints
    env = envelope("sigmoid", t[:-1], t[1:])
    for x in t:
        inside = (t[:-1] <= x) & (x <= t[1:])
        assert np.all(np.abs(env.upper_at(np.full(4, x))[inside] - act.f(x)) < EXACT)
        assert np.all(np.abs(env.lower_at(np.full(4, x))[inside] - act.f(x)) < EXACT)
    assert EPS <= 1e-8
