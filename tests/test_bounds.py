"""Bounds providers: soundness by sampling, CROWN vs interval, batching, fallback, bad input."""
from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cegarnn.bounds import METHODS, BoxError, LayerBounds, compute_bounds, crown_bounds, interval_bounds
from cegarnn.bounds import lirpa
from cegarnn.network.ir import Affine, Network, ReLU, Sigmoid, Tanh

ACTS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # the machine is shared; torch's default thread pool oversubscribes it
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- helpers
def random_net(rng, sizes, acts, sparse_layers=(), scale=1.5) -> Network:
    """Dense layers ``sizes[k] -> sizes[k+1]`` with activation ``acts[k]`` after all but the last;
    layers whose index is in ``sparse_layers`` get a scipy-sparse weight matrix."""
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = rng.normal(size=(b, a)) * scale / np.sqrt(a)
        if k in sparse_layers:
            W[rng.random(W.shape) < 0.5] = 0.0
            W = sp.csr_matrix(W)
        layers.append(Affine(W, rng.normal(size=b) * 0.5))
        if k < len(sizes) - 2:
            layers.append(ACTS[acts[k % len(acts)]]())
    return Network(tuple(layers), (sizes[0],))


def sample_box(rng, lo, hi, n_random=3000):
    """Uniform points, points on faces/edges (coordinates drawn from {lo, hi, uniform}), the
    centre, and every corner when the dimension is small."""
    n = lo.shape[0]
    u = lo + rng.random((n_random, n)) * (hi - lo)
    choice = rng.integers(0, 3, size=(n_random, n))
    edge = np.where(choice == 0, lo, np.where(choice == 1, hi, u[::-1]))
    pts = [u, edge, ((lo + hi) / 2)[None]]
    if n <= 8:
        corners = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
        pts.append(lo + corners * (hi - lo))
    return np.concatenate(pts)


def assert_contains(net: Network, bounds: LayerBounds, points: np.ndarray, b: int | None = None):
    """Every value ``forward_all(points)[i]`` lies in ``[lower[i], upper[i]]`` (of box ``b``)."""
    values = net.forward_all(points)
    assert len(bounds.lower) == len(values) == len(net.layers) + 1
    for i, v in enumerate(values):
        lo = bounds.lower[i] if b is None else bounds.lower[i][b]
        hi = bounds.upper[i] if b is None else bounds.upper[i][b]
        assert lo.shape == hi.shape == (v.shape[1],), f"value {i}: bounds shape {lo.shape}"
        tol = 1e-10 * (1.0 + np.abs(v))  # float64 rounding of the forward pass itself
        below = v < lo - tol
        above = v > hi + tol
        assert not below.any(), (
            f"value {i}: {below.sum()} samples below the lower bound "
            f"(worst {np.max(lo - v)} over {type(net.layers[i - 1]).__name__ if i else 'input'})")
        assert not above.any(), f"value {i}: {above.sum()} samples above the upper bound (worst {np.max(v - hi)})"


def assert_not_looser(a: LayerBounds, b: LayerBounds):
    """``a`` is contained in ``b`` at every index (exactly, no tolerance)."""
    for i, (al, au, bl, bu) in enumerate(zip(a.lower, a.upper, b.lower, b.upper)):
        assert np.all(al >= bl), f"value {i}: lower bound looser than interval by {np.max(bl - al)}"
        assert np.all(au <= bu), f"value {i}: upper bound looser than interval by {np.max(au - bu)}"


def random_boxes(rng, n, batch, radius=0.5, degenerate=False):
    c = rng.normal(size=(batch, n))
    r = rng.random((batch, n)) * radius
    if degenerate:
        r[rng.random((batch, n)) < 0.5] = 0.0
    return c - r, c + r


# --------------------------------------------------------------------------- soundness
ARCHS = {
    "relu": (["relu"], ()),
    "sigmoid": (["sigmoid"], ()),
    "tanh": (["tanh"], ()),
    "mixed": (["relu", "sigmoid", "tanh"], ()),
    "sparse": (["relu", "sigmoid"], (0, 1)),
}


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_interval_sound_by_sampling(arch):
    rng = np.random.default_rng(sorted(ARCHS).index(arch))
    acts, sparse_layers = ARCHS[arch]
    net = random_net(rng, [4, 9, 7, 6, 3], acts, sparse_layers)
    lo, hi = random_boxes(rng, 4, 3)
    ib = interval_bounds(net, lo, hi)
    assert ib.method == "interval" and ib.batched
    for b in range(3):
        assert_contains(net, ib, sample_box(rng, lo[b], hi[b]), b)


net_specs = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31 - 1),
    "arch": st.sampled_from(sorted(ARCHS)),
    "n_in": st.integers(1, 5),
    "hidden": st.lists(st.integers(1, 9), min_size=1, max_size=3),
    "n_out": st.integers(1, 4),
    "radius": st.sampled_from([1e-3, 0.1, 0.5, 2.0]),
    "degenerate": st.booleans(),
})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=net_specs)
def test_crown_sound_and_never_looser_than_interval(spec):
    rng = np.random.default_rng(spec["seed"])
    acts, sparse_layers = ARCHS[spec["arch"]]
    sizes = [spec["n_in"], *spec["hidden"], spec["n_out"]]
    net = random_net(rng, sizes, acts, sparse_layers)
    lo, hi = random_boxes(rng, spec["n_in"], 2, spec["radius"], spec["degenerate"])
    cb = crown_bounds(net, lo, hi)
    assert cb.method == "crown", "auto_LiRPA fell back to interval bounds"
    assert_not_looser(cb, interval_bounds(net, lo, hi))
    for b in range(2):
        assert_contains(net, cb, sample_box(rng, lo[b], hi[b], n_random=1500), b)


ODD_STRUCTURES = {
    "activation-after-activation": lambda A: ((A(3, 5), ReLU(), Sigmoid(), A(5, 4), Tanh(), Tanh(), A(4, 2)), (3,)),
    "affine-after-affine": lambda A: ((A(3, 5), Sigmoid(), A(5, 4), A(4, 4), ReLU(), A(4, 2)), (3,)),
    "activation-first": lambda A: ((Sigmoid(), A(3, 6), ReLU(), A(6, 2)), (3,)),
    "activation-last": lambda A: ((A(3, 6), ReLU(), A(6, 4), Tanh()), (1, 3)),
    "single-affine": lambda A: ((A(3, 2),), (3,)),
    "single-activation": lambda A: ((ReLU(),), (3,)),
}


@pytest.mark.parametrize("structure", sorted(ODD_STRUCTURES))
def test_crown_maps_every_layer_structure_to_value_indices(structure):
    rng = np.random.default_rng(sorted(ODD_STRUCTURES).index(structure) + 100)

    def A(a, b):
        return Affine(rng.normal(size=(b, a)) * 1.5, rng.normal(size=b))

    layers, shape = ODD_STRUCTURES[structure](A)
    net = Network(layers, shape)
    lo, hi = random_boxes(rng, 3, 2, radius=0.6)
    cb = crown_bounds(net, lo, hi)
    assert cb.method == "crown", "auto_LiRPA fell back to interval bounds"
    assert_not_looser(cb, interval_bounds(net, lo, hi))
    for b in range(2):
        assert_contains(net, cb, sample_box(rng, lo[b], hi[b], n_random=1000), b)


@pytest.mark.parametrize("acts", [["relu"], ["relu", "sigmoid"], ["tanh", "relu"]])
def test_crown_sound_with_large_inputs(acts):
    # large magnitudes make float32 rounding in auto_LiRPA largest, and make most ReLUs stable so
    # that CROWN is nearly exact (attained at corners): only the widening keeps the bounds sound
    rng = np.random.default_rng(7)
    net = random_net(rng, [5, 20, 20, 20, 4], acts)
    c = rng.normal(size=(3, 5)) * 200 + 0.123456789
    lo, hi = c - 0.5, c + 0.5
    cb = crown_bounds(net, lo, hi)
    assert cb.method == "crown"
    assert_not_looser(cb, interval_bounds(net, lo, hi))
    for b in range(3):
        assert_contains(net, cb, sample_box(rng, lo[b], hi[b], n_random=1000), b)
    # point boxes: exact values
    pts = crown_bounds(net, c, c)
    for b in range(3):
        assert_contains(net, pts, c[b:b + 1], b)


def test_alpha_crown_variant_is_sound():
    rng = np.random.default_rng(3)
    net = random_net(rng, [3, 8, 8, 2], ["relu", "sigmoid"])
    lo, hi = random_boxes(rng, 3, 2)
    cb = compute_bounds(net, lo, hi, "crown", variant="alpha-CROWN")
    if cb.method != "alpha-crown":
        pytest.skip(f"alpha-CROWN failed on this network in auto_LiRPA 0.3 ({cb.method} used instead)")
    assert_not_looser(cb, interval_bounds(net, lo, hi))
    for b in range(2):
        assert_contains(net, cb, sample_box(rng, lo[b], hi[b]), b)


def test_crown_strictly_tighter_than_interval_on_deep_net():
    rng = np.random.default_rng(11)
    net = random_net(rng, [6, 24, 24, 24, 24, 4], ["relu", "sigmoid", "tanh"])
    lo, hi = random_boxes(rng, 6, 1, radius=0.3)
    cb = compute_bounds(net, lo[0], hi[0], "crown")
    ib = compute_bounds(net, lo[0], hi[0], "interval")
    assert cb.method == "crown" and ib.method == "interval"
    w_crown = np.sum(cb.upper[-1] - cb.lower[-1])
    w_ibp = np.sum(ib.upper[-1] - ib.lower[-1])
    assert w_crown < 0.8 * w_ibp, f"CROWN output width {w_crown} vs interval {w_ibp}"
    # pre-activations of deeper layers are tighter too (they come from CROWN, not intervals)
    deep = net.activation_indices()[-1]
    assert np.sum(cb.upper[deep] - cb.lower[deep]) < np.sum(ib.upper[deep] - ib.lower[deep])


def test_batched_bounds_equal_per_box_bounds():
    rng = np.random.default_rng(5)
    net = random_net(rng, [5, 16, 12, 3], ["relu", "sigmoid"])
    lo, hi = random_boxes(rng, 5, 6, radius=0.4)
    batch = crown_bounds(net, lo, hi)
    assert batch.batched and batch.lower[-1].shape == (6, 3)
    for b in range(6):
        one = crown_bounds(net, lo[b], hi[b])
        assert not one.batched and one.lower[-1].shape == (3,)
        for i in range(len(net.layers) + 1):
            np.testing.assert_allclose(batch.lower[i][b], one.lower[i], rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(batch.upper[i][b], one.upper[i], rtol=1e-5, atol=1e-5)


def test_batch_split_into_chunks_matches_single_call(monkeypatch):
    rng = np.random.default_rng(6)
    net = random_net(rng, [4, 10, 10, 2], ["relu", "tanh"])
    lo, hi = random_boxes(rng, 4, 7)
    whole = crown_bounds(net, lo, hi)
    bounder = lirpa.get_bounder(net)
    monkeypatch.setattr(bounder, "_chunk_size", lambda: 3)  # 3 + 3 + 1
    chunked = bounder.bounds(lo, hi)
    for i in range(len(net.layers) + 1):
        np.testing.assert_allclose(chunked.lower[i], whole.lower[i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(chunked.upper[i], whole.upper[i], rtol=1e-5, atol=1e-5)


def test_bounded_module_is_built_once_per_network():
    rng = np.random.default_rng(8)
    net = random_net(rng, [3, 5, 2], ["relu"])
    lo, hi = random_boxes(rng, 3, 1)
    crown_bounds(net, lo[0], hi[0])
    first = lirpa.get_bounder(net)
    crown_bounds(net, lo, hi)
    assert lirpa.get_bounder(net) is first
    other = random_net(rng, [3, 5, 2], ["relu"])
    assert lirpa.get_bounder(other) is not first


def test_empty_batch():
    rng = np.random.default_rng(9)
    net = random_net(rng, [3, 5, 2], ["relu"])
    empty = crown_bounds(net, np.zeros((0, 3)), np.zeros((0, 3)))
    assert empty.method == "crown" and empty.lower[-1].shape == (0, 2)


# --------------------------------------------------------------------------- fallback
def _boom(*args, **kwargs):
    raise RuntimeError("simulated auto_LiRPA failure")


@pytest.mark.parametrize("where", ["import", "build", "bound"])
def test_fallback_to_interval_with_warning(monkeypatch, caplog, where):
    rng = np.random.default_rng(10)
    net = random_net(rng, [3, 6, 6, 2], ["relu", "sigmoid"])  # fresh network: nothing cached
    lo, hi = random_boxes(rng, 3, 4)
    if where == "import":
        monkeypatch.setattr(lirpa, "load_auto_lirpa", _boom)
    elif where == "build":
        monkeypatch.setattr(lirpa, "_torch_model", _boom)
    else:
        monkeypatch.setattr(lirpa.CrownBounder, "_crown_chunk", _boom)
    with caplog.at_level(logging.WARNING, logger="cegarnn.bounds"):
        got = compute_bounds(net, lo, hi, "crown")
    assert got.method == "interval"
    ib = interval_bounds(net, lo, hi)
    for i in range(len(net.layers) + 1):
        np.testing.assert_array_equal(got.lower[i], ib.lower[i])
        np.testing.assert_array_equal(got.upper[i], ib.upper[i])
    warnings_ = [r for r in caplog.records if r.name == "cegarnn.bounds" and r.levelno == logging.WARNING]
    assert warnings_ and "interval" in warnings_[0].getMessage()
    assert "simulated auto_LiRPA failure" in warnings_[0].getMessage()
    # a repeated failure falls back again but does not flood the log with warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cegarnn.bounds"):
        again = compute_bounds(net, lo, hi, "crown")
    assert again.method == "interval"
    if where != "import":
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_failing_variant_falls_back_to_plain_crown(monkeypatch, caplog):
    rng = np.random.default_rng(15)
    net = random_net(rng, [3, 6, 2], ["sigmoid"])
    lo, hi = random_boxes(rng, 3, 2)
    bounder = lirpa.get_bounder(net)
    original = lirpa.CrownBounder._crown_chunk

    def only_plain_crown(self, lo, hi, method):
        if method != "CROWN":
            raise RuntimeError(f"simulated {method} shape error")
        return original(self, lo, hi, method)

    monkeypatch.setattr(lirpa.CrownBounder, "_crown_chunk", only_plain_crown)
    with caplog.at_level(logging.WARNING, logger="cegarnn.bounds"):
        got = compute_bounds(net, lo, hi, "crown", variant="alpha-CROWN")
    assert got.method == "crown"
    plain = bounder.bounds(lo, hi, "CROWN")
    np.testing.assert_array_equal(got.lower[-1], plain.lower[-1])
    assert any("plain CROWN" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- dispatcher and bad input
@pytest.fixture
def small_net():
    return random_net(np.random.default_rng(12), [3, 4, 2], ["relu"])


@pytest.mark.parametrize("method", ["interval", "crown", "lp"])
@pytest.mark.parametrize("lower, upper, message", [
    (np.zeros(2), np.ones(2), "2 dimensions but the network has 3 inputs"),
    (np.zeros(3), np.ones(4), "shape"),
    (np.array([0.0, np.nan, 0.0]), np.ones(3), "NaN"),
    (np.zeros(3), np.array([1.0, np.nan, 1.0]), "NaN"),
    (np.array([0.0, 2.0, 0.0]), np.ones(3), "empty box"),
    (np.zeros((2, 3)), np.array([[1.0, 1, 1], [1, -1, 1]]), "empty box"),
    (np.array([-np.inf, 0.0, 0.0]), np.ones(3), "finite"),
])
def test_bad_boxes_raise_box_error(small_net, method, lower, upper, message):
    with pytest.raises(BoxError, match=message):
        compute_bounds(small_net, lower, upper, method)


def test_unknown_method_lists_the_choices(small_net):
    with pytest.raises(ValueError, match="interval, crown, alpha-crown, lp"):
        compute_bounds(small_net, np.zeros(3), np.ones(3), "deeppoly")
    with pytest.raises(ValueError, match="CROWN"):
        compute_bounds(small_net, np.zeros(3), np.ones(3), "crown", variant="beta-CROWN")
    with pytest.raises(TypeError, match="foo"):
        compute_bounds(small_net, np.zeros(3), np.ones(3), "interval", foo=1)
    assert METHODS == ("interval", "crown", "alpha-crown", "lp")


def test_method_names_are_case_insensitive_and_recorded(small_net):
    assert compute_bounds(small_net, np.zeros(3), np.ones(3), "Interval").method == "interval"
    assert compute_bounds(small_net, np.zeros(3), np.ones(3), "CROWN").method == "crown"
    assert compute_bounds(small_net, np.zeros(3), np.ones(3)).method == "crown"  # the default


def test_lp_method_starts_from_crown_and_handles_batches():
    pytest.importorskip("highspy")
    rng = np.random.default_rng(13)
    net = random_net(rng, [2, 5, 2], ["relu"])
    lo, hi = random_boxes(rng, 2, 2)
    lp = compute_bounds(net, lo, hi, "lp")
    cb = crown_bounds(net, lo, hi)
    assert lp.method == "lp" and lp.batched and lp.lower[-1].shape == (2, 2)
    assert_not_looser(lp, cb)
    for b in range(2):
        assert_contains(net, lp, sample_box(rng, lo[b], hi[b], n_random=500), b)
        single = compute_bounds(net, lo[b], hi[b], "lp")
        np.testing.assert_allclose(single.lower[-1], lp.lower[-1][b])
        np.testing.assert_allclose(single.upper[-1], lp.upper[-1][b])


def test_auto_lirpa_import_leaves_global_state_alone():
    import sys

    lirpa.load_auto_lirpa()
    assert sys.getrecursionlimit() < 10**6  # auto_LiRPA sets 1,000,000 on import
    # auto_LiRPA calls logging.basicConfig(stream=sys.stdout) on import
    assert not any(type(h) is logging.StreamHandler for h in logging.getLogger().handlers)
    assert logging.getLogger("cegarnn.bounds").handlers == []


def test_cache_does_not_keep_networks_alive():
    import gc
    import weakref

    rng = np.random.default_rng(14)
    net = random_net(rng, [3, 4, 2], ["relu"])
    crown_bounds(net, np.zeros(3), np.ones(3))
    ref = weakref.ref(net)
    n_before = len(lirpa._bounders)
    del net
    gc.collect()
    assert ref() is None
    assert len(lirpa._bounders) == n_before - 1


def test_alpha_crown_sound_and_never_looser_than_crown():
    rng = np.random.default_rng(3)
    layers = []
    n = 4
    for k in range(3):
        layers += [Affine(rng.normal(size=(12, n)), rng.normal(size=12)), Sigmoid()]
        n = 12
    layers.append(Affine(rng.normal(size=(3, n)), np.zeros(3)))
    net = Network(tuple(layers), (4,))
    lo, hi = -np.ones(4), np.ones(4)
    a = compute_bounds(net, lo, hi, "alpha-crown")
    c = compute_bounds(net, lo, hi, "crown")
    xs = rng.uniform(lo, hi, size=(3000, 4))
    vals = net.forward_all(xs)
    for i, v in enumerate(vals):
        assert np.all(v >= a.lower[i] - 1e-9) and np.all(v <= a.upper[i] + 1e-9)
    assert np.all(a.lower[-1] >= c.lower[-1] - 1e-4) and np.all(a.upper[-1] <= c.upper[-1] + 1e-4)


# --------------------------------------------------------------------------- outward rounding
from decimal import Decimal, localcontext  # noqa: E402
from fractions import Fraction  # noqa: E402

from cegarnn.bounds.interval import activation_interval, affine_interval  # noqa: E402
from cegarnn.network.ir import sigmoid as ir_sigmoid  # noqa: E402


def _naive_affine(layer, lo, hi):
    """Interval arithmetic as float64 computes it without outward rounding (the old code)."""
    c, r = (lo + hi) / 2.0, (hi - lo) / 2.0
    mid = np.asarray(layer.W @ c.T).T + layer.b
    rad = np.asarray(np.abs(layer.W) @ r.T).T
    return mid - rad, mid + rad


def _exact_affine(W, b, lo, hi):
    """Exact rational image of the box (endpoints as Fractions of the float data)."""
    out_lo, out_hi = [], []
    for i in range(W.shape[0]):
        sl = sh = Fraction(float(b[i]))
        for j in range(W.shape[1]):
            w = Fraction(float(W[i, j]))
            a, z = w * Fraction(float(lo[j])), w * Fraction(float(hi[j]))
            sl += min(a, z)
            sh += max(a, z)
        out_lo.append(sl)
        out_hi.append(sh)
    return out_lo, out_hi


def test_affine_interval_contains_the_exact_image_where_naive_rounding_excludes_it():
    # 0.1 + 0.2 - 0.3 in float64 arithmetic is 5.55e-17; with the exact values of those floats it
    # is 2.78e-17: a point box whose naive interval [5.55e-17, 5.55e-17] misses the true value
    layer = Affine(np.array([[1.0, 1.0]]), np.array([-0.3]))
    lo = hi = np.array([0.1, 0.2])
    exact = Fraction(0.1) + Fraction(0.2) - Fraction(0.3)
    nl, nh = _naive_affine(layer, lo, hi)
    assert not (Fraction(float(nl[0])) <= exact <= Fraction(float(nh[0])))
    l, h = affine_interval(layer, lo, hi)
    assert Fraction(float(l[0])) <= exact <= Fraction(float(h[0]))
    # random boxes: never excludes the exact image (the naive version does, on some)
    rng = np.random.default_rng(0)
    naive_misses = 0
    for _ in range(60):
        W = rng.normal(size=(3, 6)) * 10.0 ** rng.integers(-3, 4, size=(3, 6))
        b = rng.normal(size=3)
        lo = rng.normal(size=6)
        hi = lo + rng.random(6) * (rng.random(6) < 0.5)          # some zero widths
        el, eh = _exact_affine(W, b, lo, hi)
        layer = Affine(W, b)
        for sparse in (False, True):
            lay = Affine(sp.csr_matrix(W), b) if sparse else layer
            l, h = affine_interval(lay, lo, hi)
            assert all(Fraction(float(l[i])) <= el[i] for i in range(3))
            assert all(Fraction(float(h[i])) >= eh[i] for i in range(3))
        nl, nh = _naive_affine(layer, lo, hi)
        naive_misses += sum(Fraction(float(nl[i])) > el[i] or Fraction(float(nh[i])) < eh[i]
                            for i in range(3))
    assert naive_misses > 0


def _exact_act(kind, x: float) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 60
        d = Decimal(x)                       # exact value of the float
        if kind == "sigmoid":
            return 1 / (1 + (-d).exp())
        e = (2 * d).exp()
        return (e - 1) / (e + 1)


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
def test_activation_interval_contains_the_exact_value(kind):
    layer = Sigmoid() if kind == "sigmoid" else Tanh()
    f = ir_sigmoid if kind == "sigmoid" else np.tanh
    rng = np.random.default_rng(1)
    xs = rng.uniform(-8, 8, 400)
    over = [x for x in xs if Decimal(float(f(np.array([x]))[0])) > _exact_act(kind, x)]
    under = [x for x in xs if Decimal(float(f(np.array([x]))[0])) < _exact_act(kind, x)]
    assert over and under          # float64 rounds both ways: a naive lower/upper bound is wrong
    for x in over[:20] + under[:20]:
        l, h = activation_interval(layer, np.array([x]), np.array([x]))
        assert Decimal(float(l[0])) <= _exact_act(kind, x) <= Decimal(float(h[0]))
        assert h[0] - l[0] <= 16 * np.spacing(abs(f(np.array([x]))[0]))
    # saturation: the true value is strictly inside the range, the bounds stay within it
    l, h = activation_interval(layer, np.array([-800.0, 800.0]), np.array([-800.0, 800.0]))
    floor = 0.0 if kind == "sigmoid" else -1.0
    assert l[0] >= floor and h[0] > floor and h[1] <= 1.0 and l[1] < 1.0


def test_outward_rounding_widens_bounds_only_negligibly():
    rng = np.random.default_rng(4)
    net = random_net(rng, [20, 64, 64, 10], ["relu", "sigmoid", "tanh"], sparse_layers=(1,))
    lo = rng.normal(size=20)
    hi = lo + 0.1
    ib = interval_bounds(net, lo, hi)
    nl, nh = [lo], [hi]
    for layer in net.layers:
        if isinstance(layer, Affine):
            a, z = _naive_affine(layer, nl[-1], nh[-1])
        elif isinstance(layer, ReLU):
            a, z = np.maximum(nl[-1], 0), np.maximum(nh[-1], 0)
        else:
            g = ir_sigmoid if isinstance(layer, Sigmoid) else np.tanh
            a, z = g(nl[-1]), g(nh[-1])
        nl.append(a)
        nh.append(z)
    for i in range(1, len(nl)):
        assert np.all(ib.lower[i] <= nl[i]) and np.all(ib.upper[i] >= nh[i])
        grow = (ib.upper[i] - ib.lower[i]) - (nh[i] - nl[i])
        assert np.all(grow <= 1e-10 * (nh[i] - nl[i]) + 1e-13), i


# ---------------------------------------------------------------------------- one-way imports
def test_imports_flow_one_way():
    """The encoder uses the bounds package, never the other way; the LP tightener sits above both
    and is imported only for method='lp'; the IR and the bounds do not import torch."""
    import subprocess
    import sys
    from pathlib import Path

    import cegarnn
    root = Path(cegarnn.__file__).resolve().parent
    code = (
        "import sys, types\n"
        # the package root (which imports the verifier) is left out: only the layers are checked
        f"pkg = types.ModuleType('cegarnn'); pkg.__path__ = [{str(root)!r}]; sys.modules['cegarnn'] = pkg\n"
        "import cegarnn.bounds, cegarnn.network.ir\n"
        "bad = [m for m in ('cegarnn.encoding', 'cegarnn.solvers', 'cegarnn.lp_tighten', 'torch',\n"
        "                   'cegarnn.network.torch_io') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import cegarnn.encoding\n"
        "bad = [m for m in ('cegarnn.solvers', 'cegarnn.lp_tighten') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
