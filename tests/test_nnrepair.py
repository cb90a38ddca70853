"""nnrepair and its experts: fixes on the float32 export, honest "not fixed", the combination
strategies (numpy vs torch module vs ONNX export), fault localisation, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from cegarnn.network import Affine, Network, ReLU
from cegarnn.repair import (INFEASIBLE, REPAIRED, REPAIRS, ExpertsResult, RepairInputError, RepairReason,
                            RepairResult, nnrepair, predictions)
from cegarnn.repair.check import float32_outputs
from cegarnn.repair.experts import STRATEGIES, combine, softmax, unconfidence
from cegarnn.repair.nnrepair import localise, margin_gradient


def net3(seed=0, sizes=(4, 10, 8, 3)) -> Network:
    rng = np.random.default_rng(seed)
    a, h1, h2, o = sizes
    return Network((Affine(rng.normal(size=(h1, a)), 0.1 * rng.normal(size=h1)), ReLU(),
                    Affine(rng.normal(size=(h2, h1)) / np.sqrt(h1), 0.1 * rng.normal(size=h2)), ReLU(),
                    Affine(rng.normal(size=(o, h2)) / np.sqrt(h2), np.zeros(o))), (a,))


def case(seed=0, n=200, n_pass=15):
    """A network, one failing input (label = its second-best class, the closest one) and passing
    inputs (the network's own labels, so correctly classified)."""
    net = net3(seed)
    X = np.random.default_rng(seed + 100).normal(size=(n, 4))
    Y = float32_outputs(net, X)
    order = np.sort(Y, 1)
    i = int(np.argmin(order[:, -1] - order[:, -2]))
    second = int(np.argsort(Y[i])[-2])
    rest = np.setdiff1d(np.arange(n), [i])[:n_pass]
    return net, (X[[i]], np.array([second])), (X[rest], Y[rest].argmax(1))


@pytest.mark.parametrize("layer", [-1, 1])
def test_fixes_failing_and_keeps_passing_on_float32(layer):
    net, (Xf, yf), (Xp, yp) = case()
    res = nnrepair(net, (Xf, yf), (Xp, yp), layer=layer, k=20, bound=2.0, margin=1e-2, time_limit=20)
    assert isinstance(res, ExpertsResult)
    assert res.status is REPAIRED and res.reason is RepairReason.CHECKED, res.summary()
    (c, exp), = res.experts.items()
    assert c == int(yf[0]) and exp.extra["fixed"] == [0] and exp.extra["not_fixed"] == []
    assert int(exp.network.layers[0].W.shape[0]) == 10          # same architecture
    # independent float32 check: the fixed input gets its label with the margin, passing kept
    y = float32_outputs(exp.network, Xf)[0]
    assert y.argmax() == yf[0] and y[yf[0]] - np.delete(y, yf[0]).max() >= 1e-2
    assert np.array_equal(predictions(exp.network, Xp), yp)
    assert int(np.count_nonzero(exp.dW)) <= 20 and float(np.abs(exp.dW).max()) <= 2.0 + 1e-9
    assert np.all(exp.dW[~_mask(exp)] == 0)
    # one expert: every strategy returns its label on the fixed input, every passing input kept
    for s in STRATEGIES:
        assert res.predict(Xf, s)[0] == yf[0]
        assert np.array_equal(res.predict(Xp, s), yp)
        assert res.combined[s] == {"failing_correct": 1, "passing_kept": len(yp)}
    json.dumps(res.to_dict())
    assert "expert" in res.summary()


def _mask(exp):
    m = np.zeros(exp.dW.shape, dtype=bool)
    for j, k in exp.extra["weights"]:
        m[j, k] = True
    return m


def test_unfixable_within_bound_is_reported_not_fixed():
    net, (Xf, yf), (Xp, yp) = case()
    Y = float32_outputs(net, Xf)
    worst = np.array([int(Y[0].argmin())])                    # the hardest label, a tiny bound
    res = nnrepair(net, (Xf, worst), (Xp, yp), k=3, bound=1e-6, time_limit=20)
    (c, exp), = res.experts.items()
    assert exp.status is INFEASIBLE and exp.reason is RepairReason.NONE_FIXED
    assert exp.extra["fixed"] == [] and exp.extra["not_fixed"] == [0] and exp.network is None
    assert res.status is INFEASIBLE and res.fixed == [] and res.networks == {}
    assert np.array_equal(res.predict(Xf), float32_outputs(net, Xf).argmax(1))   # no expert: the original
    with pytest.raises(ValueError, match="no repaired network"):
        exp.save_onnx("unused.onnx")


def test_partial_some_fixed_some_not():
    net, (Xf, yf), (Xp, yp) = case()
    Y = float32_outputs(net, Xf)
    # same input twice: once with the easy label, once with an impossible one (two experts)
    hard = int(Y[0].argmin())
    res = nnrepair(net, (np.vstack([Xf, Xf]), np.array([yf[0], hard])), (Xp, yp), k=20, bound=2.0,
                   time_limit=20)
    assert res.experts[int(yf[0])].extra["fixed"] == [0]
    assert res.experts[hard].extra["fixed"] == [] and res.experts[hard].extra["not_fixed"] == [1]
    assert res.status is REPAIRED and res.reason is RepairReason.PARTIAL and res.fixed == [0]


def test_per_class_false_one_expert_for_all():
    net, (Xf, yf), (Xp, yp) = case()
    res = nnrepair(net, (Xf, yf), (Xp, yp), k=20, bound=2.0, per_class=False, time_limit=20)
    assert list(res.experts) == [-1] and res.experts[-1].extra["fixed"] == [0]
    for s in STRATEGIES:
        assert res.predict(Xf, s)[0] == yf[0]


def test_registry_adapter():
    net, (Xf, yf), (Xp, yp) = case()
    res = REPAIRS["nnrepair"].run(net, Xf, yf, (Xp, yp), k=20, bound=2.0, time_limit=20)
    assert isinstance(res, ExpertsResult) and res.status is REPAIRED


# --------------------------------------------------------------------------- combination
def _experts(seed=1, n_exp=(0, 1, 2)):
    """The original and experts that are perturbations of it pushed towards their own class (so
    that none, one or several claim an input)."""
    orig = net3(seed)
    rng = np.random.default_rng(seed)
    nets = {}
    for c in n_exp:
        layers = list(orig.layers)
        last = layers[-1]
        b = last.b.copy()
        b[c] += 0.3
        layers[-1] = Affine(last.W + 0.1 * rng.normal(size=last.W.shape), b)
        nets[c] = Network(tuple(layers), orig.input_shape)
    exps = {c: RepairResult(REPAIRED, RepairReason.CHECKED, orig, network=n) for c, n in nets.items()}
    return ExpertsResult(REPAIRED, RepairReason.CHECKED, orig, exps)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_torch_module_equals_numpy_combination(strategy):
    import torch
    res = _experts()
    X = np.random.default_rng(5).normal(size=(400, 4)).astype(np.float32)
    want = res.predict(X, strategy)
    with torch.no_grad():
        got = res.combined_module(strategy)(torch.from_numpy(X)).argmax(1).numpy()
    assert np.array_equal(got, want)
    if strategy == "naive":                 # the test exercises every branch of the rule
        yo, ye = res.expert_logits(X)
        keys = np.array(sorted(ye))
        from cegarnn.repair.experts import _claims
        n_claims = _claims(np.stack([ye[c] for c in keys], 1).argmax(-1), yo.argmax(1), keys).sum(1)
        assert {0, 1}.issubset(set(n_claims.tolist())) and n_claims.max() >= 2


def test_save_onnx_combined_model(tmp_path):
    import onnxruntime as ort
    res = _experts()
    X = np.random.default_rng(6).normal(size=(300, 4)).astype(np.float32)
    path = res.save_onnx(tmp_path / "combined.onnx", "confidence")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": X})[0]
    assert out.shape == (300, 3)
    assert np.array_equal(out.argmax(1), res.predict(X, "confidence"))


def test_combine_definitions_by_hand():
    yo = np.array([[0.0, 5.0, 0.0], [0.0, 5.0, 0.0], [4.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    ye = {0: np.array([[9.0, 0.0, 0.0], [3.0, 0.0, 0.0], [4.0, 0.0, 0.0], [0.0, 2.0, 0.0]]),
          2: np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 9.0], [0.0, 3.0, 0.0], [0.0, 0.0, 3.0]])}
    # naive: row 0: only expert 0 claims -> 0; row 1: both claim -> original (1); row 2: expert 0
    # predicts 0 but so does the original (no claim), expert 2 predicts 1 (not its class) -> original
    assert combine(yo, ye, "naive")[0].tolist() == [0, 1, 0, 2]
    # confidence: the larger winning gap decides; equal confidence: the first expert
    assert combine(yo, ye, "confidence")[0].tolist() == [0, 2, 0, 2]
    tie = {0: ye[0], 2: ye[2] - np.array([0.0, 0.0, 1.0])}
    assert combine(yo, tie, "confidence")[0].tolist()[3] == 1
    # votes: a 1-1 tie is decided by the original network
    assert combine(yo, ye, "votes")[0].tolist() == [1, 1, 0, 2]
    assert combine(yo, ye, "average")[0].tolist() == [0, 2, 0, 2]
    assert combine(yo, {}, "votes")[0].tolist() == [1, 1, 0, 2]
    # unconfidence orders like max softmax, without saturating
    Y = np.array([[30.0, 0.0, 0.0], [40.0, 0.0, 0.0], [1.0, 0.5, 0.0]])
    r = unconfidence(Y)
    assert r[1] < r[0] < r[2]
    assert np.allclose(1.0 / (1.0 + np.exp(r)), softmax(Y).max(1))


# --------------------------------------------------------------------------- localisation
def test_margin_gradient_matches_finite_differences():
    net = net3(3)
    X = np.random.default_rng(3).normal(size=(5, 4))
    lab = np.array([0, 1, 2, 0, 1])
    g, H = margin_gradient(net, 2, X, lab)
    Y = net.forward(X)
    wrong = np.where(np.arange(3) == lab[:, None], -np.inf, Y).argmax(1)
    L2 = net.layers[2]
    eps = 1e-6
    for j in range(L2.W.shape[0]):
        b = L2.b.copy()
        b[j] += eps
        layers = list(net.layers)
        layers[2] = Affine(L2.W, b)
        Y2 = Network(tuple(layers), net.input_shape).forward(X)
        r = np.arange(5)
        fd = ((Y2[r, wrong] - Y2[r, lab]) - (Y[r, wrong] - Y[r, lab])) / eps
        assert np.allclose(g[:, j], fd, atol=1e-4)
    assert np.allclose(H, net.forward_all(X)[2])
    mask, scores = localise(net, 2, X, lab, 7)
    assert mask.sum() == 7 and scores[mask].min() >= scores[~mask].max()
    mask_c, scores_c = localise(net, 2, X, lab, 7, rank="contribution")
    assert np.allclose(scores_c, scores * np.abs(L2.W))


# --------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors():
    net, (Xf, yf), (Xp, yp) = case()
    cases = [
        (dict(failing=(np.zeros((0, 4)), np.zeros(0, dtype=int))), "empty"),
        (dict(failing=(Xf, np.array([3]))), "out of range"),
        (dict(failing=(Xf, np.array([-1]))), "out of range"),
        (dict(layer=3), "layer 3 out of range"),
        (dict(layer=-4), "out of range"),
        (dict(failing=(np.zeros((1, 5)), yf)), "shape"),
        (dict(failing=(Xf, np.array([0, 1]))), "labels"),
        (dict(passing=(Xp[:3], yp[:2])), "passing"),
        (dict(passing=(Xp, (yp + 1) % 3)), "misclassified"),
        (dict(failing=Xf), "pair"),
        (dict(k=0), "k must"),
        (dict(bound=np.inf), "bound"),
        (dict(bound=-1.0), "bound"),
        (dict(margin=-1.0), "margin"),
        (dict(strategy="median"), "strategy"),
        (dict(rank="random"), "rank"),
        (dict(tie_break="l2"), "tie_break"),
        (dict(bound="big"), "bound must be a number"),
        (dict(time_limit=0), "time_limit"),
    ]
    for kw, msg in cases:
        args = dict(failing=(Xf, yf), passing=(Xp, yp))
        args.update(kw)
        f, p = args.pop("failing"), args.pop("passing")
        with pytest.raises(RepairInputError, match=msg):
            nnrepair(net, f, p, **args)


def test_passing_input_lost_on_float32_is_reported(monkeypatch):
    """If the float32 export of an expert loses a passing input (simulated: its outputs are
    permuted there), the expert is retried, then reported unknown and not combined."""
    import sys
    mod = sys.modules["cegarnn.repair.nnrepair"]
    net, (Xf, yf), (Xp, yp) = case()
    real = mod.float32_outputs

    def lossy(network, X, *a, **kw):
        Y = real(network, X, *a, **kw)
        if network is not net and len(X) == len(Xp):
            Y[0] = Y[0][::-1] + (np.arange(3) == (yp[0] + 1) % 3) * 100.0
        return Y

    monkeypatch.setattr(mod, "float32_outputs", lossy)
    res = nnrepair(net, (Xf, yf), (Xp, yp), k=20, bound=2.0, time_limit=20)
    (c, exp), = res.experts.items()
    assert exp.status.value == "unknown" and exp.reason is RepairReason.FLOAT32_CHECK_FAILED
    assert exp.network is None and exp.extra["retries"] == 2 and exp.extra["passing_kept"] == len(yp) - 1
    assert res.networks == {} and res.status.value == "unknown"
