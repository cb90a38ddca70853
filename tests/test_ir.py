"""Unit tests of the network IR (cegarnn/network/ir.py)."""
import numpy as np
import pytest
import scipy.sparse as sp

from cegarnn.network import Affine, Network, NetworkError, ReLU, Sigmoid, Tanh, compose, sigmoid


def random_net(rng, sizes=(6, 5, 4, 3), acts=(ReLU, Sigmoid, Tanh), sparse_first=False, input_shape=None):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        W = rng.normal(size=(b, a))
        if i == 0 and sparse_first:
            W[rng.random(W.shape) < 0.5] = 0.0
            W = sp.csr_matrix(W)
        layers.append(Affine(W, rng.normal(size=b)))
        if i < len(sizes) - 2:
            layers.append(acts[i % len(acts)]())
    return Network(tuple(layers), input_shape or (sizes[0],), name="rand")


def manual_forward(net, x):
    v = np.asarray(x, dtype=np.float64)
    for layer in net.layers:
        if isinstance(layer, Affine):
            v = layer.dense_W() @ v + layer.b
        elif isinstance(layer, ReLU):
            v = np.maximum(v, 0)
        elif isinstance(layer, Sigmoid):
            v = 1 / (1 + np.exp(-v))
        else:
            v = np.tanh(v)
    return v


def test_forward_matches_manual_and_batch():
    rng = np.random.default_rng(0)
    net = random_net(rng, sparse_first=True)
    X = rng.normal(size=(7, 6))
    Y = net.forward(X)
    assert Y.shape == (7, 3)
    for x, y in zip(X, Y):
        np.testing.assert_allclose(net.forward(x), manual_forward(net, x), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(y, manual_forward(net, x), rtol=1e-12, atol=1e-12)


def test_forward_all_indices():
    rng = np.random.default_rng(1)
    net = random_net(rng)
    x = rng.normal(size=6)
    vals = net.forward_all(x)
    assert len(vals) == len(net.layers) + 1
    np.testing.assert_array_equal(vals[0], x)
    for i, layer in enumerate(net.layers):
        np.testing.assert_allclose(vals[i + 1], layer(vals[i][None])[0], rtol=0, atol=0)
        assert vals[i].shape == (net.sizes[i],)
    # v[i] of an activation layer i is its pre-activation
    for i in net.activation_indices():
        assert isinstance(net.layers[i - 1], Affine)
    relu_i = net.activation_indices(ReLU)[0]
    np.testing.assert_allclose(vals[relu_i + 1], np.maximum(vals[relu_i], 0))
    np.testing.assert_allclose(vals[-1], net.forward(x))
    batch = net.forward_all(rng.normal(size=(3, 6)))
    assert [v.shape for v in batch] == [(3, s) for s in net.sizes]


def test_forward_accepts_input_shape_and_rejects_wrong_size():
    rng = np.random.default_rng(2)
    net = random_net(rng, sizes=(12, 4, 2), input_shape=(3, 2, 2))
    x = rng.normal(size=(3, 2, 2))
    np.testing.assert_allclose(net.forward(x), net.forward(x.reshape(-1)))
    assert net.forward(x[None]).shape == (1, 2)
    with pytest.raises(NetworkError, match="expects 12 inputs"):
        net.forward(np.zeros(11))


@pytest.mark.parametrize("sparse_first", [False, True])
@pytest.mark.parametrize("only_fixed_values", [False, True])
def test_fix_inputs_equals_forward_on_completed_input(sparse_first, only_fixed_values):
    rng = np.random.default_rng(3)
    net = random_net(rng, sparse_first=sparse_first)
    mask = np.array([True, False, True, True, False, False])
    full = rng.normal(size=6)
    sub = net.fix_inputs(mask, full[mask] if only_fixed_values else full)
    assert sub.n_inputs == 3 and sub.n_outputs == net.n_outputs
    for _ in range(5):
        free = rng.normal(size=3)
        x = full.copy()
        x[~mask] = free
        np.testing.assert_allclose(sub.forward(free), net.forward(x), rtol=1e-12, atol=1e-12)


def test_fix_inputs_errors():
    rng = np.random.default_rng(4)
    net = random_net(rng)
    with pytest.raises(NetworkError, match="fixed_mask has 5 entries"):
        net.fix_inputs(np.ones(5, bool), np.zeros(5))
    with pytest.raises(NetworkError, match="2 inputs are fixed but 3 values"):
        net.fix_inputs(np.array([1, 1, 0, 0, 0, 0], bool), np.zeros(3))
    with pytest.raises(NetworkError, match="finite"):
        net.fix_inputs(np.array([1, 0, 0, 0, 0, 0], bool), [np.nan])
    relu_first = Network((ReLU(), Affine(np.eye(2), np.zeros(2))), (2,))
    with pytest.raises(NetworkError, match="first layer to be Affine"):
        relu_first.fix_inputs(np.array([True, False]), [1.0])


def test_compose():
    rng = np.random.default_rng(5)
    a = random_net(rng, sizes=(6, 5, 4))
    b = random_net(rng, sizes=(4, 3, 2))
    ab = compose(a, b)
    assert ab.n_inputs == 6 and ab.n_outputs == 2 and len(ab) == len(a) + len(b)
    x = rng.normal(size=(4, 6))
    np.testing.assert_allclose(ab.forward(x), b.forward(a.forward(x)), rtol=1e-12)
    with pytest.raises(NetworkError, match="cannot compose"):
        compose(b, a)


def test_simplified_merges_affine_and_keeps_function():
    rng = np.random.default_rng(6)
    layers = (Affine(sp.csr_matrix(sp.random(5, 6, density=0.3, random_state=1)), rng.normal(size=5)),
              Affine(rng.normal(size=(4, 5)), rng.normal(size=4)), ReLU(),
              Affine(rng.normal(size=(3, 4)), rng.normal(size=3)),
              Affine(sp.diags(rng.normal(size=3), format="csr"), rng.normal(size=3)), Sigmoid(),
              Affine(rng.normal(size=(2, 3)), rng.normal(size=2)))
    net = Network(layers, (6,))
    simple = net.simplified()
    assert [type(l).__name__ for l in simple.layers] == ["Affine", "ReLU", "Affine", "Sigmoid", "Affine"]
    x = rng.normal(size=(10, 6))
    np.testing.assert_allclose(simple.forward(x), net.forward(x), rtol=1e-12, atol=1e-12)


def test_non_finite_weights_rejected():
    with pytest.raises(NetworkError, match="NaN or infinite"):
        Affine(np.array([[1.0, np.nan]]), [0.0])
    with pytest.raises(NetworkError, match="NaN or infinite"):
        Affine(np.eye(2), [0.0, np.inf])
    with pytest.raises(NetworkError, match="NaN or infinite"):
        Affine(sp.csr_matrix(np.array([[np.nan, 0.0]])), [0.0])


def test_shape_mismatches_rejected():
    with pytest.raises(NetworkError, match="layer 2 .* expects 3 inputs but receives 2"):
        Network((Affine(np.ones((2, 4)), np.zeros(2)), ReLU(), Affine(np.ones((1, 3)), np.zeros(1))), (4,))
    with pytest.raises(NetworkError, match="expects 4 inputs but receives 6"):
        Network((Affine(np.ones((2, 4)), np.zeros(2)),), (2, 3))
    with pytest.raises(NetworkError, match="bias has 3 entries"):
        Affine(np.ones((2, 4)), np.zeros(3))
    with pytest.raises(NetworkError, match="2-D"):
        Affine(np.ones(4), np.zeros(1))
    with pytest.raises(NetworkError, match="at least one layer"):
        Network((), (3,))
    with pytest.raises(NetworkError, match="unsupported layer type"):
        Network((Affine(np.eye(2), np.zeros(2)), "relu"), (2,))


def test_with_output_layer():
    rng = np.random.default_rng(7)
    net = random_net(rng)
    C = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    d = np.array([0.5, -0.5])
    out = net.with_output_layer(C, d)
    assert len(out) == len(net)          # merged into the last affine layer
    assert out.n_outputs == 2
    x = rng.normal(size=(5, 6))
    np.testing.assert_allclose(out.forward(x), net.forward(x) @ C.T + d, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.with_output_layer(C).forward(x), net.forward(x) @ C.T, rtol=1e-12, atol=1e-12)


def test_sigmoid_is_stable():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])
    with np.errstate(over="raise"):
        y = sigmoid(x)
    np.testing.assert_allclose(y, [0.0, 1 / (1 + np.exp(30.0)), 0.5, 1 / (1 + np.exp(-30.0)), 1.0], rtol=1e-14)
