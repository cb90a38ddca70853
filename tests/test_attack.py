"""The cheap attack (cegarnn.verifier.attack): numpy PGD on the IR, every hit confirmed.

Fast (a few seconds). Two kinds of ground truth:
- a hand-built generator+classifier (30 latent inputs) whose only counterexamples lie near one
  corner of the box and belong to a class that is *not* the runner-up anywhere near the centre:
  the untargeted margin's gradient leads every uniform start to the opposite, safe corner (the
  attack before per-disjunct targeting missed it for every seed);
- planted counterexamples (margin -0.1) of the random benchmark instances
  (experiments/random_instances.py, answers in the committed cache).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cegarnn.specs.problem import generative_problem
from cegarnn.verifier.attack import attack_targets, margin_cotangent, pgd_attack, random_attack

ROOT = Path(__file__).resolve().parents[1]


def decoy_problem(k: int = 30, seed: int = 0, a: float = 3.0):
    """``C(G([x, z]))`` keeps label 0 on a latent box of ``k`` dimensions, except near one corner.

    G: ``g = sigmoid(a·u)``, ``u = b·(z - zc) / (|b|·zr)`` in [-1, 1] (a random direction ``b``);
    ``s = (g - 1/2) / (sigmoid(a) - 1/2)`` in [-1, 1], monotone in ``u``. C (one ReLU layer):
    ``C0 = 0``, ``C1 = -0.05 - 0.15·(1 - s)`` (the runner-up wherever ``s > -0.76``; never above
    -0.05), ``C2 = -0.45 - 0.2·s + 0.875·relu(-s - 0.6)`` (above ``C0`` only for ``s < -0.94``;
    0.1 at ``s = -1``). So the margin is -0.1 at the corner ``zc - sign(b)·zr`` and +0.05 at the
    opposite corner; uniform starts have ``|s|`` of about 0.15 or less. Returns (problem, corner).
    """
    rng = np.random.default_rng(seed)
    lo = rng.normal(0, 0.3, k) - rng.uniform(0.5, 1.5, k)
    hi = lo + 2 * rng.uniform(0.5, 1.5, k)
    zc, zr = (lo + hi) / 2, (hi - lo) / 2
    b = rng.normal(0, 1, k)
    scale = np.abs(b) @ zr
    fixed = 2
    g1 = nn.Linear(fixed + k, 1)
    su = float(torch.sigmoid(torch.tensor(a))) - 0.5
    l1, l2 = nn.Linear(1, 2), nn.Linear(2, 3)
    with torch.no_grad():
        g1.weight.zero_()
        g1.weight[0, fixed:] = torch.as_tensor(a * b / scale)
        g1.bias.fill_(float(-a * b @ zc / scale))
        # h0 = relu(s + 1) = s + 1, h1 = relu(-s - 0.6)
        l1.weight[:, 0] = torch.tensor([1 / su, -1 / su])
        l1.bias[:] = torch.tensor([-0.5 / su + 1, 0.5 / su - 0.6])
        l2.weight[:] = torch.tensor([[0.0, 0.0], [0.15, 0.0], [-0.2, 0.875]])
        l2.bias[:] = torch.tensor([0.0, -0.35, -0.25])
    gen, clf = nn.Sequential(g1, nn.Sigmoid()).eval(), nn.Sequential(l1, nn.ReLU(), l2).eval()
    for p in (*gen.parameters(), *clf.parameters()):
        p.requires_grad_(False)
    prob = generative_problem(gen, clf, np.zeros(fixed), 0, latent_lower=lo, latent_upper=hi, name="decoy")
    return prob, zc - np.sign(b) * zr, zc + np.sign(b) * zr


@pytest.mark.parametrize("seed", range(4))
def test_decoy_runner_up_counterexample_is_found_and_confirmed(seed):
    prob, bad, good = decoy_problem(seed=seed)
    # the ground truth of the construction, on the IR
    assert prob.unsafe.margin(prob.network.forward(bad)) == pytest.approx(-0.1, abs=1e-4)
    assert prob.unsafe.margin(prob.network.forward(good)) == pytest.approx(0.05, abs=1e-4)
    assert random_attack(prob, seed=seed) is None              # sampling cannot see it
    cex = pgd_attack(prob, seed=seed)                          # the default budget: 8 restarts, 40 steps
    assert cex is not None and cex.found_by == "pgd"
    assert cex.confirmed_ir and cex.confirmed_reference        # on the IR and the torch model
    assert cex.margin_ir < -0.05 and cex.margin_reference < -0.05
    assert cex.disjunct == 1                                    # class 2 beats the label (disjunct order: classes 1, 2)
    z = np.asarray(cex.free_input)
    assert np.all(z >= prob.lower) and np.all(z <= prob.upper)


def test_untargeted_descent_alone_misses_the_decoy():
    """What the targeting fixes: the untargeted trajectories alone (the attack before it, same
    starts and steps) end at the safe corner, even with four times the restarts."""
    for seed in range(4):
        prob, _, good = decoy_problem(seed=seed)
        assert pgd_attack(prob, restarts=32, seed=seed, targeted=False) is None


def test_attack_targets():
    assert list(attack_targets(1, 8)) == [-1] * 8                            # one disjunct: untargeted only
    t = attack_targets(4, 8)
    assert list(t[:8]) == [-1] * 8 and sorted(t[8:]) == [0, 0, 1, 1, 2, 2, 3, 3]
    t = attack_targets(9, 8)                                                 # MNIST: one per class
    assert len(t) == 17 and sorted(t[8:]) == list(range(9))
    assert list(attack_targets(200, 8)) == [-1] * 8                          # many disjuncts: untargeted only
    assert len(attack_targets(3, 0)) == 0


def test_margin_cotangent_is_the_gradient_of_the_margin():
    prob, _, _ = decoy_problem(seed=1)
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 3))
    m, cot = margin_cotangent(prob, y)
    assert np.allclose(m, prob.unsafe.margin(y))
    eps = 1e-6
    for i in range(3):
        e = np.zeros(3)
        e[i] = eps
        fd = (prob.unsafe.margin(y + e) - prob.unsafe.margin(y - e)) / (2 * eps)
        assert np.allclose(fd, cot[:, i], atol=1e-5)


def test_pgd_on_a_degenerate_box_returns_none():
    prob, _, _ = decoy_problem(seed=0)
    prob.upper = prob.lower.copy()
    assert pgd_attack(prob) is None


sys.path.insert(0, str(ROOT / "experiments"))
ri = pytest.importorskip("random_instances")
CACHE = ri.load_cache()


@pytest.mark.skipif(not CACHE, reason="no cache experiments/results/issue15/random_instances.json")
@pytest.mark.parametrize("seed", [102, 104])      # the two rarest violations (sampled fraction 1e-4, 1e-3)
def test_planted_counterexample_of_a_random_instance_is_found_by_pgd(seed):
    inst = ri.instance(seed, "falsified", CACHE)
    prob = inst.problem()
    assert random_attack(prob) is None
    cex = pgd_attack(prob)
    assert cex is not None and cex.confirmed_reference
    assert cex.margin_ir < -0.05 and cex.margin_reference < -0.05
