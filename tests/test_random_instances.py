"""experiments/random_instances.py: seeded random generator+classifier instances with known answers.

Fast (a few seconds): the networks are rebuilt from their seeds and the answers read from the
committed cache (experiments/results/issue15/random_instances.json); the checks run on the real
float32 torch networks and on the cegarnn Problem built from them.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

ri = pytest.importorskip("random_instances")

CACHE = ri.load_cache()
SEEDS_V = ri.VERIFIED_SEEDS[:4]
SEEDS_F = ri.FALSIFIED_SEEDS[:4]
_BUILT = {}


def _inst(seed, kind):
    """Each instance built once per test session (a build runs a short PGD)."""
    if (seed, kind) not in _BUILT:
        _BUILT[seed, kind] = ri.instance(seed, kind, CACHE)
    return _BUILT[seed, kind]


pytestmark = pytest.mark.skipif(not CACHE, reason="no cache experiments/results/issue15/random_instances.json")


def _weights(b):
    return [p.detach().numpy().copy() for p in (*b.gen.parameters(), *b.clf.parameters())]


def test_generator_is_deterministic_by_seed():
    a, b, c = ri.base(3), ri.base(3), _inst(4, "verified").base
    assert a.k == b.k and a.label == b.label and 20 <= a.k <= 40
    assert np.array_equal(a.lower, b.lower) and np.array_equal(a.x, b.x)
    assert all(np.array_equal(u, v) for u, v in zip(_weights(a), _weights(b)))
    assert not all(u.shape == v.shape and np.array_equal(u, v) for u, v in zip(_weights(a), _weights(c)))
    # every layer has at most 25 neurons; the generator ends in a sigmoid
    assert all(isinstance(m, torch.nn.Linear) and m.out_features <= 25 for m in (*a.gen, *a.clf)
               if isinstance(m, torch.nn.Linear))
    assert isinstance(a.gen[-1], torch.nn.Sigmoid)


def test_cached_answers_match_the_rebuilt_instances():
    assert all(CACHE[str(s)]["ok"] for s in (*ri.VERIFIED_SEEDS, *ri.FALSIFIED_SEEDS))
    for seed in (*SEEDS_V[:2], *SEEDS_F[:2]):
        entry = CACHE[str(seed)]
        inst = _inst(seed, entry["kind"])
        assert entry["ok"] and entry["check"]["converged"]
        assert inst.base.k == entry["latent_dim"] and inst.base.label == entry["label"]
        # U is a real point's margin: recompute it on the rebuilt network (before the bias shift)
        m = inst.margins(np.asarray(entry["check"]["z_star"])[None])[0] - inst.shift
        assert m == pytest.approx(entry["check"]["U"], abs=1e-6)
        assert entry["check"]["L"] <= entry["check"]["U"]


@pytest.mark.parametrize("seed", SEEDS_F)
def test_planted_counterexample_violates_on_the_real_network(seed):
    inst = _inst(seed, "falsified")
    z = inst.z_star
    b = inst.base
    assert np.all(z >= b.lower) and np.all(z <= b.upper)
    m32 = inst.margins(z[None], torch.float32)[0]           # the executed float32 torch model
    assert m32 == pytest.approx(-0.1, abs=1e-4)
    prob = inst.problem()                                   # the cegarnn Problem: IR and its reference
    for out in (prob.network.forward(z), np.asarray(prob.reference(z[None])).reshape(-1)):
        others = np.delete(out, b.label)
        assert out[b.label] - others.max() < -0.099


@pytest.mark.parametrize("seed", SEEDS_V)
def test_known_verified_instances_are_not_falsified_by_sampling(seed):
    inst = _inst(seed, "verified")
    b = inst.base
    rng = np.random.default_rng(seed + 7)
    z = np.concatenate([ri._uniform(rng, b.lower, b.upper, 3000),
                        np.where(rng.random((1000, b.k)) < 0.5, b.lower, b.upper),
                        np.asarray(CACHE[str(seed)]["check"]["z_star"])[None]])
    m = inst.margins(z, torch.float32)
    assert m.min() > 0
    # the proven minimum margin is at least MARGIN_VERIFIED, and the check's best point attains the upper end
    assert inst.known["min_margin_at_least"] >= ri.MARGIN_VERIFIED - 1e-6
    assert m[-1] == pytest.approx(inst.known["min_margin_at_most"], abs=1e-4)
    assert m.min() >= inst.known["min_margin_at_least"] - 1e-5


@pytest.mark.parametrize("seed", SEEDS_V[:2])
def test_cegar_proves_known_verified_instances_in_rotated_coordinates(seed):
    """policy auto rotates these (k > 16 free inputs, first layer of effective rank 1); without the
    rotation no method proved any of them in 30 s (docs/RANDOM_INSTANCES.md)."""
    import cegarnn
    res = cegarnn.verify(_inst(seed, "verified").problem(), method="cegar", time_limit=20)
    assert res.status == "verified" and res.reason == "every sub-box of the rotated inputs proved", res.reason
    assert res.stats.trajectory[-1]["move"] == "rotated" and res.stats.trajectory[-1]["rank"] == 1


def test_exact_min_is_sound_and_tight_on_a_fresh_seed():
    b = _inst(4, "verified").base          # a fresh run of the check (the cache is not used)
    res = ri.exact_min(b, time_limit=20.0)  # on the shifted network: the instance shifts base's bias in place
    assert res["converged"] and res["U"] - res["L"] <= ri.GAP + 1e-6
    assert res["L"] == pytest.approx(_inst(4, "verified").known["min_margin_at_least"], abs=ri.GAP)
    rng = np.random.default_rng(0)
    m = ri.margins(b, ri._uniform(rng, b.lower, b.upper, 5000))
    assert m.min() >= res["L"]


def test_bench_runs_any_registered_method_name():
    """experiments/bench_random_instances.py: every name of METHODS gets its options (from
    conf/verifier/<name>.yaml when it exists, else the defaults); cegar-<policy> is cegar with
    that policy; an unknown name is an error naming the registered ones."""
    bench = pytest.importorskip("bench_random_instances")
    from cegarnn.verifier.methods import METHODS
    for name in METHODS:
        base, opts = bench.options_for(name, 7.0)
        assert base == name and opts.time_limit == 7.0 and opts.bounds == "auto"
    base, opts = bench.options_for("cegar-input", 3.0, {"top_k": 5})
    assert base == "cegar" and opts.policy == "input" and opts.top_k == 5
    with pytest.raises(ValueError, match="registered"):
        bench.options_for("no-such-method", 3.0)
    assert bench.parse_overrides(["bounds=ir-crown", "top_k=3", "attack=false"]) == \
        {"bounds": "ir-crown", "top_k": 3, "attack": False}


def test_bench_before_after_table():
    bench = pytest.importorskip("bench_random_instances")
    row = lambda m, known, status, t: {"method": m, "known": known, "status": status, "time": str(t),
                                       "verdict_vs_known": "correct" if status == known else "undecided"}
    before = [row("cegar", "verified", "unknown", 30), row("cegar", "falsified", "falsified", 0.5)]
    after = [row("cegar", "verified", "verified", 0.2), row("cegar", "falsified", "falsified", 0.1),
             row("neuron-bab", "verified", "unknown", 30)]
    lines = bench.comparison(before, after)
    assert lines[2] == "| cegar | 1/2 | 1 | **0** | – | 0.50 / 0.50 | 2/2 | 2 | **0** | 0.20 / 0.20 | 0.10 / 0.10 |"
    assert lines[3].startswith("| neuron-bab | – | – | – | – | – | 0/1 | 0 | **0** |")
