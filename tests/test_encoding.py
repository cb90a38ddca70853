"""Encoder = forward pass, MILP optima against brute force, incremental refinement, weights as
variables, LP bound tightening, several networks in one program."""
import numpy as np
import pytest
import scipy.sparse as sp

from cegarnn.bounds.box import BoxError, LayerBounds
from cegarnn.bounds.interval import interval_bounds
from cegarnn.encoding import (EncodingError, Program, add_linear_objective, add_output_constraints, decode,
                              encode_network, encode_weight_layer)
from cegarnn.lp_tighten import lp_tighten
from cegarnn.network.ir import Affine, Network, ReLU, Sigmoid, Tanh, sigmoid
from cegarnn.network.torch_io import to_torch
from cegarnn.solvers import Status, available_backends, make_backend

pytest.importorskip("highspy")


def _net(rng, sizes, acts, scale=1.0):
    layers = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Affine(rng.normal(0, scale / np.sqrt(a), (b, a)), rng.normal(0, 0.3, b)))
        if k < len(acts):
            layers.append(acts[k])
    return Network(tuple(layers), (sizes[0],))


def _conv_matrix(kernel, h, w):
    """Valid 2-D convolution (stride 1) of a (1, h, w) image as a CSR matrix."""
    co, ci, kh, kw = kernel.shape
    oh, ow = h - kh + 1, w - kw + 1
    rows, cols, vals = [], [], []
    for o in range(co):
        for i in range(oh):
            for j in range(ow):
                r = (o * oh + i) * ow + j
                for c in range(ci):
                    for di in range(kh):
                        for dj in range(kw):
                            rows.append(r)
                            cols.append((c * h + i + di) * w + j + dj)
                            vals.append(kernel[o, c, di, dj])
    return sp.csr_matrix((vals, (rows, cols)), shape=(co * oh * ow, ci * h * w))


def _range_of(prog, be, var):
    prog.set_objective([var], [1.0], "min")
    s1 = be.solve()
    prog.set_objective([var], [1.0], "max")
    s2 = be.solve()
    assert s1.status is Status.OPTIMAL and s2.status is Status.OPTIMAL
    return s1.objective, s2.objective


# --------------------------------------------------------------------------- forward pass
def test_relu_exact_encoding_equals_forward_pass_with_conv():
    import torch
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.5, (2, 1, 3, 3))
    C = _conv_matrix(kernel, 6, 6)
    x0 = rng.uniform(0, 1, 36)
    ref = torch.nn.functional.conv2d(torch.tensor(x0.reshape(1, 1, 6, 6)), torch.tensor(kernel)).numpy().reshape(-1)
    assert np.allclose(C @ x0, ref)
    net = Network((Affine(C, rng.normal(0, 0.1, 32)), ReLU(), Affine(rng.normal(0, 0.3, (10, 32)), rng.normal(0, .1, 10)),
                   ReLU(), Affine(rng.normal(0, 0.5, (3, 10)), np.zeros(3))), (1, 6, 6))
    bounds = interval_bounds(net, np.zeros(36), np.ones(36))
    prog = Program()
    enc = encode_network(prog, net, bounds, relu="exact")
    assert enc.n_binaries == bounds.unstable_relus(net) > 0
    prog.set_col_bounds(enc.input_vars, x0, x0)
    add_linear_objective(prog, enc, -1, [1.0, -1.0, 0.5], "max")
    sol = make_backend(prog).solve()
    assert sol.status is Status.OPTIMAL
    vals = decode(sol.x, enc)
    for got, want in zip(vals, net.forward_all(x0)):
        assert np.allclose(got, want, atol=1e-6)
    with torch.no_grad():
        out = to_torch(net)(torch.tensor(x0.reshape(1, 1, 6, 6))).numpy()[0]
    assert np.allclose(vals[-1], out, atol=1e-6)


@pytest.mark.parametrize("segments", [None, 3, "at_x"])
def test_sigmoid_encoding_brackets_true_values(segments):
    rng = np.random.default_rng(1)
    net = _net(rng, [3, 5, 4, 2], [Sigmoid(), Tanh()], scale=2.0)
    lo, hi = -np.ones(3), np.ones(3)
    bounds = interval_bounds(net, lo, hi)
    x0 = rng.uniform(-1, 1, 3)
    vals = net.forward_all(x0)
    seg = segments
    if segments == "at_x":   # a breakpoint exactly at every pre-activation value of x0
        seg = {1: [[v] for v in vals[1]], 3: [[v] for v in vals[3]]}
    prog = Program()
    enc = encode_network(prog, net, bounds, segments=seg)
    if segments is None:
        assert enc.n_binaries == 0
    else:
        assert enc.n_binaries > 0
        assert len(enc.segments_of(1, 0)) >= 3 and len(enc.segments_of(3, 0)) >= 3
    prog.set_col_bounds(enc.input_vars, x0, x0)
    be = make_backend(prog)
    pre, post = enc.value_vars[1], enc.value_vars[2]
    for j in range(len(post)):
        # the first sigmoid layer's input is exact (affine in the fixed input) ...
        xl, xh = _range_of(prog, be, pre[j])
        assert abs(xl - vals[1][j]) < 1e-6 and abs(xh - vals[1][j]) < 1e-6
        # ... and the abstract sigmoid output brackets (or, with a breakpoint at x, equals) f(x)
        yl, yh = _range_of(prog, be, post[j])
        assert yl <= vals[2][j] + 1e-7 and vals[2][j] <= yh + 1e-7
        if segments == "at_x":
            assert abs(yl - vals[2][j]) < 1e-6 and abs(yh - vals[2][j]) < 1e-6
    for i in (3, 4, 5):     # later values: the true value lies in the encoding's range
        for j in range(len(enc.value_vars[i])):
            vl, vh = _range_of(prog, be, enc.value_vars[i][j])
            assert vl - 1e-7 <= vals[i][j] <= vh + 1e-7


@pytest.mark.parametrize("backend", available_backends())
def test_relu_milp_optimum_matches_brute_force(backend):
    rng = np.random.default_rng(3)
    net = _net(rng, [2, 12, 12, 1], [ReLU(), ReLU()], scale=1.5)
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    prog = Program()
    enc = encode_network(prog, net, interval_bounds(net, lo, hi))
    add_linear_objective(prog, enc, -1, [1.0], "max")
    sol = make_backend(prog, backend).solve()
    assert sol.status is Status.OPTIMAL and enc.n_binaries > 0
    g = np.linspace(-1, 1, 301)
    X = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    sampled = net.forward(X)[:, 0]
    assert sol.objective >= sampled.max() - 1e-6
    xin = decode(sol.x, enc)[0]
    assert np.all(xin >= lo - 1e-9) and np.all(xin <= hi + 1e-9)
    assert abs(net.forward(xin)[0] - sol.objective) < 1e-5
    # the triangle relaxation is a relaxation: its LP optimum is at least the MILP optimum
    p2 = Program()
    e2 = encode_network(p2, net, interval_bounds(net, lo, hi), relu="triangle")
    add_linear_objective(p2, e2, -1, [1.0], "max")
    s2 = make_backend(p2).solve()
    assert e2.n_binaries == 0 and s2.objective >= sol.objective - 1e-7


def test_point_box_encoding_is_exact():
    """Degenerate bounds (l == u everywhere): tiny envelopes still contain the true values."""
    rng = np.random.default_rng(9)
    net = _net(rng, [3, 5, 4, 2], [Sigmoid(), Tanh()], scale=2.0)
    x0 = rng.uniform(-1, 1, 3)
    prog = Program()
    enc = encode_network(prog, net, interval_bounds(net, x0, x0), segments={3: 2})
    sol = make_backend(prog).solve()
    assert sol.status is Status.OPTIMAL
    for got, want in zip(decode(sol.x, enc), net.forward_all(x0)):
        assert np.allclose(got, want, atol=1e-6)


# --------------------------------------------------------------------------- refinement
def test_incremental_refine_excludes_spurious_point():
    rng = np.random.default_rng(4)
    net = _net(rng, [2, 6, 1], [Sigmoid()], scale=3.0)
    lo, hi = -np.ones(2), np.ones(2)
    prog = Program()
    enc = encode_network(prog, net, interval_bounds(net, lo, hi))
    add_linear_objective(prog, enc, -1, [1.0], "max")
    be = make_backend(prog)
    sol = be.solve()
    vals = decode(sol.x, enc)
    err = np.abs(enc.activation_errors(vals)[1])
    j = int(np.argmax(err))
    assert err[j] > 1e-3                       # the one-segment abstraction is spurious here
    xstar = vals[1][j]
    n_rows = prog.n_rows
    assert enc.refine(1, j, xstar)
    assert not enc.refine(1, j, xstar)         # a breakpoint already there: ignored
    assert prog.n_rows > n_rows and enc.n_binaries == 2
    bp = enc.segments_of(1, j)
    assert np.any(np.abs(bp - xstar) < 1e-12)
    sol2 = be.solve()                          # incremental re-solve
    fresh = make_backend(prog).solve()         # rebuilt from scratch
    assert sol2.status is Status.OPTIMAL
    assert abs(sol2.objective - fresh.objective) < 1e-6
    assert sol2.objective <= sol.objective + 1e-7
    # at x*, the abstract y is exact: min and max of y equal f(x*)
    pre, post = enc.value_vars[1][j], enc.value_vars[2][j]
    prog.set_col_bounds([pre], xstar, xstar)
    yl, yh = _range_of(prog, be, post)
    assert abs(yl - sigmoid(np.array([xstar]))[0]) < 1e-6 and abs(yh - sigmoid(np.array([xstar]))[0]) < 1e-6
    # refine_many: several neurons (and several points) at once
    l, u = enc.sshape[1].lower, enc.sshape[1].upper
    items = [(1, k, [(l[k] + u[k]) / 2, l[k] + 0.25 * (u[k] - l[k])]) for k in range(6)]
    assert enc.refine_many(items) == 6
    assert enc.n_binaries == sum(len(enc.segments_of(1, k)) - 1 for k in range(6))
    prog.set_col_bounds([pre], enc.bounds.lower[1][j], enc.bounds.upper[1][j])
    add_linear_objective(prog, enc, -1, [1.0], "max")
    s3 = be.solve()
    assert abs(s3.objective - make_backend(prog).solve().objective) < 1e-6
    assert s3.objective <= sol2.objective + 1e-7
    with pytest.raises(EncodingError, match="not a sigmoid"):
        enc.refine(0, 0, 0.0)


@pytest.mark.parametrize("seed", [10, 11])
def test_refinement_is_monotone_and_sound(seed):
    """Rounds of refinement at spurious points: the abstract optimum never increases, stays above
    every sampled true value, and the live (incremental) model agrees with a rebuilt one."""
    rng = np.random.default_rng(seed)
    act = Sigmoid() if seed % 2 == 0 else Tanh()
    net = _net(rng, [3, 6, 2], [act], scale=4.0)
    lo, hi = -np.ones(3), np.ones(3)
    prog = Program()
    enc = encode_network(prog, net, interval_bounds(net, lo, hi))
    c = np.array([1.0, -0.5])
    add_linear_objective(prog, enc, -1, c, "max")
    be = make_backend(prog)
    true_max = (net.forward(rng.uniform(lo, hi, (20000, 3))) @ c).max()
    prev = np.inf
    for _ in range(5):
        sol = be.solve()
        assert sol.status is Status.OPTIMAL
        assert true_max - 1e-7 <= sol.objective <= prev + 1e-7
        prev = sol.objective
        vals = decode(sol.x, enc)
        err = np.abs(enc.activation_errors(vals)[1])
        worst = np.argsort(-err)[:2]
        enc.refine_many([(1, int(j), vals[1][j]) for j in worst] + [(1, int(rng.integers(6)), rng.uniform(-2, 2))])
    assert abs(be.solve().objective - make_backend(prog).solve().objective) < 1e-6


# --------------------------------------------------------------------------- weights as variables
@pytest.mark.parametrize("layer_index", [2, 0])
def test_weight_change_flips_label(layer_index):
    import torch
    rng = np.random.default_rng(5)
    net = _net(rng, [4, 8, 3], [ReLU()])
    X = rng.uniform(-1, 1, (6, 4))
    pred = net.forward(X).argmax(1)
    target = (pred[0] + 1) % 3
    want = pred.copy()
    want[0] = target
    prog = Program()
    we = encode_weight_layer(prog, net, layer_index, X, delta=2.0)
    margin = 1e-3
    for n in range(len(X)):
        for c in range(3):
            if c != want[n]:
                prog.add_dense_rows(np.array([[1.0, -1.0]]), we.outputs[n, [want[n], c]], margin, np.inf)
    we.add_change_objective("l1")
    sol = make_backend(prog).solve()
    assert sol.status is Status.OPTIMAL
    dW, db = we.decode(sol.x)
    assert np.abs(dW).max() > 0
    model = to_torch(net)
    lin = model[1 + layer_index]
    with torch.no_grad():
        lin.weight += torch.tensor(dW)
        lin.bias += torch.tensor(db)
        out = model(torch.tensor(X)).numpy()
    assert out.argmax(1)[0] == target
    assert np.array_equal(out.argmax(1), want)
    assert np.allclose(sol.x[we.outputs], out, atol=1e-6)
    assert np.allclose(we.apply(sol.x).forward(X), out, atol=1e-9)


# --------------------------------------------------------------------------- LP tightening
def test_lp_tighten_sound_and_tighter_than_interval():
    rng = np.random.default_rng(6)
    net = _net(rng, [3, 10, 10, 6, 2], [ReLU(), Sigmoid(), ReLU()], scale=1.5)
    lo, hi = -np.ones(3), np.ones(3)
    ib = interval_bounds(net, lo, hi)
    lb = lp_tighten(net, lo, hi)
    assert lb.method == "lp"
    X = rng.uniform(lo, hi, (4000, 3))
    X = np.concatenate([X, np.stack(np.meshgrid(*[[-1, 1]] * 3), -1).reshape(-1, 3)])
    vals = net.forward_all(X)
    gain = 0.0
    for i, v in enumerate(vals):
        assert np.all(v >= lb.lower[i] - 1e-9) and np.all(v <= lb.upper[i] + 1e-9), f"value {i} unsound"
        assert np.all(lb.lower[i] >= ib.lower[i]) and np.all(lb.upper[i] <= ib.upper[i])
        gain += np.sum(ib.upper[i] - ib.lower[i]) - np.sum(lb.upper[i] - lb.lower[i])
    assert gain > 0.1
    # an initial box is never loosened
    init = LayerBounds([l.copy() for l in lb.lower], [u.copy() for u in lb.upper])
    again = lp_tighten(net, lo, hi, initial=init, layers=[len(net.layers)])
    for i in range(len(vals)):
        assert np.all(again.lower[i] >= init.lower[i]) and np.all(again.upper[i] <= init.upper[i])
    with pytest.raises(BoxError, match="one box"):
        lp_tighten(net, np.zeros((2, 3)), np.ones((2, 3)))


# --------------------------------------------------------------------------- several networks
def test_two_copies_sharing_inputs_agree():
    rng = np.random.default_rng(7)
    net = _net(rng, [3, 6, 6, 2], [ReLU(), Sigmoid()])
    lo, hi = -np.ones(3), np.ones(3)
    b = interval_bounds(net, lo, hi)
    prog = Program()
    e1 = encode_network(prog, net, b, name="a")
    e2 = encode_network(prog, net, b, input_vars=e1.input_vars, name="b", segments=2)
    assert np.array_equal(e1.input_vars, e2.input_vars)
    be = make_backend(prog)
    # ReLU parts are exact: the pre-sigmoid values of both copies are equal
    v1, v2 = e1.value_vars[3], e2.value_vars[3]
    for j in range(6):
        prog.set_objective([v1[j], v2[j]], [1.0, -1.0], "max")
        assert abs(be.solve().objective) < 1e-6
    # outputs: both copies abstract the same function; spec rows on the output work
    rows = add_output_constraints(prog, e1, np.eye(2), -np.inf, b.upper[-1])
    assert len(rows) == 2
    prog.set_objective(np.concatenate([e1.output_vars, e2.output_vars]), [1, 0, -1, 0], "max")
    s = be.solve()
    assert s.status is Status.OPTIMAL and s.objective >= -1e-7


def test_bad_input():
    rng = np.random.default_rng(8)
    net = _net(rng, [2, 3, 1], [ReLU()])
    b = interval_bounds(net, np.zeros((2, 2)), np.ones((2, 2)))
    with pytest.raises(EncodingError, match="batch"):
        encode_network(Program(), net, b)
    b1 = b.pick(0)
    with pytest.raises(EncodingError, match="relu"):
        encode_network(Program(), net, b1, relu="bigm")
    with pytest.raises(EncodingError, match="input_vars"):
        encode_network(Program(), net, b1, input_vars=[0, 1, 2])
    bad = LayerBounds([l.copy() for l in b1.lower], [u.copy() for u in b1.upper])
    bad.lower[1][:] = -np.inf
    bad.upper[1][:] = np.inf
    with pytest.raises(EncodingError, match="infinite"):
        encode_network(Program(), net, bad)
    with pytest.raises(EncodingError, match="not an Affine"):
        encode_weight_layer(Program(), net, 1, np.zeros((1, 2)))


def test_big_m_beyond_the_limit_raises_a_typed_error():
    import pickle

    from cegarnn.encoding import MAX_BIG_M, BigMError
    assert issubclass(BigMError, EncodingError) and issubclass(BigMError, ValueError)
    assert MAX_BIG_M == 1e9
    rng = np.random.default_rng(9)
    W = rng.normal(size=(3, 2))
    W[1] *= 1e12                      # neuron 1 of the first affine layer has bounds ~1e12
    net = Network((Affine(W, np.zeros(3)), ReLU(), Affine(np.ones((1, 3)), np.zeros(1))), (2,))
    b = interval_bounds(net, -np.ones(2), np.ones(2))
    assert b.lower[1][1] < -MAX_BIG_M and b.upper[1][1] > MAX_BIG_M
    with pytest.raises(BigMError) as info:
        encode_network(Program(), net, b)
    e = info.value
    assert (e.layer, e.neuron, e.side, e.value, e.limit) == (1, 1, "lower", b.lower[1][1], MAX_BIG_M)
    assert "layer 1" in str(e) and "neuron 1" in str(e) and "big-M" in str(e)
    assert pickle.loads(pickle.dumps(e)).neuron == 1          # crosses process boundaries
    # the LP (triangle) relaxation has no big-M constant; a larger limit lets it through
    encode_network(Program(), net, b, relu="triangle")
    encode_network(Program(), net, b, max_big_m=1e13)
    # an infinite bound is refused in both modes, naming the neuron
    bad = LayerBounds([l.copy() for l in b.lower], [u.copy() for u in b.upper])
    bad.upper[1][2] = np.inf
    bad.lower[1][2] = -1.0
    for mode in ("exact", "triangle"):
        with pytest.raises(BigMError, match="neuron 2: pre-activation upper bound inf is infinite"):
            encode_network(Program(), net, bad, relu=mode, max_big_m=np.inf)
    # bounds within the limit encode as before
    small = interval_bounds(net, -1e-4 * np.ones(2), 1e-4 * np.ones(2))
    encode_network(Program(), net, small)
