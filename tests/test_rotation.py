"""``cegar`` policy ``rotated``: input bisection in the principal directions of the first layer.

The rotated problem must contain the image of the original box and agree with the original
network there; its padding must cover the float32 model as executed; verdicts must match ground
truth on instances that see a 24-d box through one direction (the truth from a dense 1-d grid);
a corner of the rotated box that holds no real point must not end the run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cegarnn
from cegarnn.network.ir import Affine, Network
from cegarnn.specs.problem import box_problem, generative_problem
from cegarnn.specs.property import SpecError, UnsafeRegion, classification_unsafe
from cegarnn.specs.rotation import rotated_problem, rotation_rank
from cegarnn.verifier.context import RunContext
from cegarnn.verifier.options import Options

torch.set_num_threads(1)
K = 24          # free inputs (above max_split_dims = 16)


def _rank1_case(seed: int, target: float):
    """generator(z) = sigmoid(...) of ``a (b·z) + c`` (rank 1 in z), a ReLU classifier; the label's
    bias moved so that the minimum margin over the box is ``target`` (from a dense grid of y = b·z,
    exact up to the grid's step times the margin's slope, far below |target|)."""
    rng = np.random.default_rng(seed)
    b = rng.normal(size=K) / np.sqrt(K)
    a = rng.normal(0, 2.0, size=12)
    lo, hi = -rng.uniform(0.5, 1.5, K), rng.uniform(0.5, 1.5, K)
    gen = nn.Sequential(nn.Linear(K, 12), nn.Sigmoid(), nn.Linear(12, 8), nn.Sigmoid())
    clf = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 3))
    with torch.no_grad():
        gen[0].weight.copy_(torch.as_tensor(np.outer(a, b)))
        gen[0].bias.copy_(torch.as_tensor(rng.normal(0, 0.5, 12)))
        for m in (gen[2], clf[0], clf[2]):
            m.weight.copy_(torch.as_tensor(rng.normal(0, 2.0 / np.sqrt(m.in_features), m.weight.shape)))
            m.bias.copy_(torch.as_tensor(rng.normal(0, 0.3, m.out_features)))
    model = nn.Sequential(*gen, *clf).eval()
    yc, yr = b @ (lo + hi) / 2, np.abs(b) @ (hi - lo) / 2
    ys = np.linspace(yc - yr, yc + yr, 200_001)
    with torch.no_grad():
        h = torch.sigmoid(torch.as_tensor(ys[:, None] * a[None] + gen[0].bias.double().numpy()[None]))
        out = nn.Sequential(*list(model)[2:]).double()(h).numpy()
        model.float()
    label = int(np.bincount(out.argmax(1), minlength=3).argmax())
    margin = out[:, label] - np.delete(out, label, 1).max(1)
    with torch.no_grad():
        clf[2].bias[label] += float(target - margin.min())
    return model, lo, hi, label


def _problem(model, lo, hi, label, name=""):
    return generative_problem(model, None, np.zeros(0), label, latent_lower=lo, latent_upper=hi, name=name)


def _torch_margin(model, z, label):
    with torch.no_grad():
        out = model(torch.as_tensor(np.atleast_2d(z), dtype=torch.float32)).double().numpy()
    return out[:, label] - np.delete(out, label, 1).max(1)


def test_rotated_problem_contains_the_box_and_agrees_with_the_network():
    model, lo, hi, label = _rank1_case(0, 0.05)
    p = _problem(model, lo, hi, label)
    rp = rotated_problem(p)
    rot = rp.rotation
    assert rot.rank == 1 and rp.n_free == K
    rng = np.random.default_rng(1)
    z = np.concatenate([lo + (hi - lo) * rng.random((300, K)), np.where(rng.random((300, K)) < 0.5, lo, hi)])
    s = ((z - rot.centre) / rot.radius) @ rot.V                       # s = V^T u
    assert np.all(np.abs(s) <= rp.upper)                               # the s-box holds the image of the box
    assert np.allclose(rot.to_original(s), z, atol=1e-12)
    assert np.allclose(rp.network.forward(s), p.network.forward(z), atol=1e-9)
    v_orig, v_rot = p.network.layers[0](z), rp.network.layers[0](s)
    assert np.all(np.abs(v_orig - v_rot) <= rot.first_error + 1e-14) and np.all(rot.first_error < 1e-10)
    zlo, zhi = rot.original_box(rp.lower, rp.upper)
    assert np.array_equal(zlo, lo) and np.array_equal(zhi, hi)
    with pytest.raises(SpecError, match="already rotated"):
        rotated_problem(rp)


def test_auto_policy_rotates_only_where_the_first_layer_is_narrow():
    model, lo, hi, label = _rank1_case(0, 0.05)
    opts = Options()
    assert rotation_rank(_problem(model, lo, hi, label)) == 1
    assert RunContext.create(_problem(model, lo, hi, label), "cegar", opts).policy == "rotated"
    rng = np.random.default_rng(0)
    full = Network((Affine(rng.normal(size=(30, K)), np.zeros(30)), Affine(rng.normal(size=(3, 30)), np.zeros(3))), (K,))
    p_full = box_problem(full, -np.ones(K), np.ones(K), classification_unsafe(3, 0))
    assert rotation_rank(p_full) == K and RunContext.create(p_full, "cegar", opts).policy == "neuron"
    assert RunContext.create(p_full, "cegar", Options(max_split_dims=K)).policy == "input"   # few enough inputs


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("target", [0.05, -0.05])
def test_verdicts_match_the_grid_truth(seed, target):
    model, lo, hi, label = _rank1_case(seed, target)
    res = cegarnn.verify(_problem(model, lo, hi, label), method="cegar", time_limit=20, attack=False)
    assert res.status == ("verified" if target > 0 else "falsified"), res.reason
    if target > 0:
        assert res.reason == "every sub-box of the rotated inputs proved"
    else:
        z = np.asarray(res.counterexample.free_input)
        assert z.shape == (K,) and np.all((z >= lo) & (z <= hi))            # a point of the original box
        assert _torch_margin(model, z, label)[0] < 0 and res.counterexample.margin_reference < 0


def test_padding_covers_the_float32_model_at_sampled_points():
    model, lo, hi, label = _rank1_case(2, 0.05)
    p = _problem(model, lo, hi, label)
    rp = rotated_problem(p)
    ctx = RunContext.create(rp, "cegar", Options())
    b = ctx.bounds(rp.lower, rp.upper)
    pad = ctx.padding(b)
    rot = rp.rotation
    rng = np.random.default_rng(3)
    z = np.concatenate([lo + (hi - lo) * rng.random((2000, K)), np.where(rng.random((500, K)) < 0.5, lo, hi)])
    s = ((z - rot.centre) / rot.radius) @ rot.V
    rows_ir = ctx.spec_net.forward(s)                                   # the rotated IR's margins rows
    with torch.no_grad():
        out32 = model(torch.as_tensor(z, dtype=torch.float32)).double().numpy()
    rows_exec = out32 @ ctx.C.T - ctx.d
    assert np.all(np.abs(rows_exec - rows_ir) <= pad[None, :]) and np.all(pad < 1e-3)


def test_a_corner_without_real_points_hands_over_to_the_neuron_policy():
    # o = v1 + 2 v2, v1 = sum(z), v2 = z0 - z1 over [-1, 1]^K: at most K + 2 on the box, but K + 4 on
    # the rotated box (v1 and v2 independent there): the rotated run cannot prove o <= K + 3 and its
    # candidates do not survive the mapping, so the neuron policy must finish the proof
    W1 = np.zeros((2, K))
    W1[0] = 1.0
    W1[1, 0], W1[1, 1] = 1.0, -1.0
    net = Network((Affine(W1, np.zeros(2)), Affine(np.array([[1.0, 2.0]]), np.zeros(1))), (K,))
    unsafe = UnsafeRegion(((np.array([[-1.0]]), np.array([-(K + 3.0)])),), 1)     # unsafe: o >= K + 3
    p = box_problem(net, -np.ones(K), np.ones(K), unsafe)
    res = cegarnn.verify(p, method="cegar", time_limit=2.0, attack=False)
    assert res.status == "verified", res.reason
    moves = [t.get("move") for t in res.stats.trajectory]
    assert moves[0] == "rotated" and res.stats.trajectory[0]["status"] != "verified" and moves[-1] == "neuron_bab"


def test_a_network_without_a_first_affine_layer_is_not_rotated():
    from cegarnn.network.ir import Sigmoid
    net = Network((Sigmoid(), Affine(np.ones((3, K)), np.zeros(3))), (K,))
    p = box_problem(net, -np.ones(K), np.ones(K), classification_unsafe(3, 0))
    assert rotation_rank(p) is None and RunContext.create(p, "cegar", Options()).policy == "neuron"
    with pytest.raises(SpecError, match="first Affine layer"):
        rotated_problem(p)
    with pytest.raises(SpecError, match="first Affine layer"):
        cegarnn.verify(p, method="cegar", policy="rotated", attack=False, time_limit=5)
