"""Benchmarks of issue 14 (cegarnn.invariance): two copies of a network in one MILP.

    .venv/bin/python experiments/bench_invariance.py            # everything, about 12 minutes on 2 cores
    .venv/bin/python experiments/bench_invariance.py --only blocks brute --quick

Sections (each a table in experiments/results/issue14/bench_invariance.md, every row in the CSV):

* ``blocks``: residual blocks ``x + g(x)`` (dims 4-10, hidden 5-50): contractive ones (random, spectral
  norms scaled so that Lip₂(g) = 0.9: injective) must never be refuted, folding ones (a reflection
  across a hyperplane through the centre: not injective) must never be certified;
* ``brusselator``: the learned time-stepper of experiments/train_brusselator.py (trained first if
  missing): certified invertibility and pseudo-invertibility radius around four states;
* ``mnist``: the committed 784-32-32-10 classifier against copies pruned by magnitude (30/60/90 % of
  each layer's weights): the maximum logit difference on L∞ boxes around test images, with a
  sampled lower bound that the proved bound must cover;
* ``brute``: tiny networks (2-3 inputs) where sampling and interval splitting bracket the answer
  (tests/invariance_brute.py): every MILP answer must agree with the bracket;
* ``backends``: the same instances with HiGHS and PuLP/CBC (and HiGHS variants): exact answer and time.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from cegarnn.invariance import (PROVED, REFUTED, certified_radius, invertibility, matching,  # noqa: E402
                                max_difference, pseudo_invertibility)
from cegarnn.invariance.blocks import contractive_block, folding_block  # noqa: E402
from cegarnn.network import Affine, Network  # noqa: E402

OUT = ROOT / "experiments" / "results" / "issue14"
BRUSS = ROOT / "experiments" / "models" / "brusselator" / "brusselator.onnx"
CLASSIFIER = ROOT / "experiments" / "models" / "classifier.onnx"
FIELDS = ["section", "instance", "question", "backend", "config", "expected", "status", "reason", "threshold",
          "bound", "value", "brute_lb", "brute_ub", "agrees", "time", "nodes", "solver_calls", "binaries", "note"]
ROWS: list = []


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{cpu}, nproc {os.cpu_count()}, Python {platform.python_version()}"


def record(section, instance, question, res, expected="", backend="highs", config="default", lb=None, ub=None,
           agrees="", note=""):
    st = res.stats
    row = {"section": section, "instance": instance, "question": question, "backend": backend, "config": config,
           "expected": expected, "status": res.status.value, "reason": res.reason.value, "threshold": res.threshold,
           "bound": res.bound, "value": res.value, "brute_lb": lb, "brute_ub": ub, "agrees": agrees,
           "time": round(st.wall_time, 3), "nodes": st.nodes, "solver_calls": st.solver_calls,
           "binaries": st.binaries, "note": note}
    ROWS.append(row)
    print(f"[{section}] {instance} {question} {backend}/{config}: {res.status.value} bound={_f(res.bound)} "
          f"value={_f(res.value)} {st.wall_time:.1f}s {agrees}", flush=True)
    return row


def _f(v, digits=4):
    return "–" if v is None or v == "" else f"{float(v):.{digits}g}"


def verdict(status, expected) -> str:
    """'agrees' / 'unknown' / 'DISAGREES' for an answer against the known one."""
    if status not in (PROVED, REFUTED):
        return "unknown"
    return "agrees" if status.value == expected else "DISAGREES"


# --------------------------------------------------------------------------- sections
def run_blocks(a) -> None:
    sizes = [(4, 5), (4, 10), (6, 20), (8, 30), (10, 50)]
    seeds = [0] if a.quick else [0, 1]
    r, limit = 0.05, a.limit
    for n, h in sizes:
        for seed in seeds:
            c = np.zeros(n)
            inj = contractive_block(n, h, 0.9, seed, c - 1, c + 1)
            fold, _, _ = folding_block(n, h, 0.9, seed, c, c - 1, c + 1)
            name = f"{n}x{h} seed {seed}"
            for q, fn, net, exp in (("invertibility", invertibility, inj, "proved"),
                                    ("pseudo-invertibility", pseudo_invertibility, inj, "proved"),
                                    ("invertibility", invertibility, fold, "refuted")):
                res = fn(net, c, r, time_limit=limit)
                record("blocks", f"{'contractive' if exp == 'proved' else 'folding'} {name}", q, res, exp,
                       agrees=verdict(res.status, exp), note=f"r={r}")


def run_brusselator(a) -> None:
    if not BRUSS.is_file():
        subprocess.run([sys.executable, str(ROOT / "experiments" / "train_brusselator.py")], check=True)
    states = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.5), (1.5, 4.0)][: 2 if a.quick else 4]
    for s in states:
        for kind, total, r_max in (("invertibility", a.radius_time, 2.0), ("pseudo-invertibility", a.radius_time / 3, 4.0)):
            rr = certified_radius(BRUSS, np.array(s), kind=kind, r_max=r_max, time_limit=total, tol=2e-4,
                                  query_time_limit=total / 3)
            ROWS.append({"section": "brusselator", "instance": f"state {s}", "question": f"radius ({kind})",
                         "backend": "highs", "config": "default", "status": rr.status.value,
                         "value": rr.refuted_radius, "bound": rr.proved_radius, "time": round(rr.wall_time, 3),
                         "solver_calls": len(rr.steps),
                         "note": "unknown at " + " ".join(f"{u:.4g}" for u in rr.unknown_radii) + "; queries "
                                 + " ".join(f"{st.radius:.4g}:{st.status.value}:{st.time:.1f}s" for st in rr.steps)})
            print(f"[brusselator] {s} {kind}: {rr.summary()}", flush=True)


def _pruned(net: Network, frac: float) -> Network:
    layers = []
    for L in net.layers:
        if isinstance(L, Affine):
            W = np.array(L.dense_W(), dtype=np.float64)
            W[np.abs(W) < np.quantile(np.abs(W), frac)] = 0.0
            L = Affine(W, L.b)
        layers.append(L)
    return Network(tuple(layers), net.input_shape)


def _mnist_images(k: int):
    data = np.load(ROOT / "experiments" / "models" / "test_images.npz")
    return data["images"][:k].reshape(k, -1).astype(np.float64), data["labels"][:k], data["indices"][:k]


def run_mnist(a) -> None:
    from cegarnn.network import load_network
    from invariance_brute import forward, sample_ball
    net = load_network(CLASSIFIER)
    images, labels, idx = _mnist_images(2 if a.quick else 3)
    for frac in (0.3, 0.6, 0.9):
        pr = _pruned(net, frac)
        for x, lab, i in zip(images, labels, idx):
            for eps in (0.01, 0.03):
                lo, hi = np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)
                res = max_difference(net, pr, lo, hi, time_limit=a.limit)
                S = sample_ball(lo, hi, 2000)
                lb = float(np.max(np.abs(forward(net, S) - forward(pr, S))))
                centre = float(np.max(np.abs(net.forward(x) - pr.forward(x))))
                ok = "agrees" if res.bound is None or res.bound >= lb - 1e-9 else "DISAGREES"
                same = int(np.argmax(pr.forward(x)) == lab)
                record("mnist", f"test image {int(i)} eps {eps}", f"max-difference pruned {int(frac * 100)}%", res,
                       lb=lb, agrees=ok, note=f"difference at the centre {centre:.4g}; pruned copy correct at the "
                                              f"centre: {bool(same)}")


def run_brute(a) -> None:
    from conftest import relu_net
    from invariance_brute import (box_distance, difference_bounds, pair_upper_bound, sampled_invertibility)
    tau, r = 0.05, 0.3
    seeds = range(3) if a.quick else range(8)
    for seed in seeds:
        n = 2 + seed % 2
        net = relu_net(seed, (n, 8, 3))
        c = np.full(n, 0.1)
        lo, hi = c - r, c + r
        for pseudo in (False, True):
            cen = c if pseudo else None
            lb = sampled_invertibility(net, lo, hi, tau, center=cen, n=1500 if n == 2 else 700)
            ub = pair_upper_bound(net, lo, hi, tau + 1e-6, box_distance(), lower=lb, center=cen, iters=10)
            fn = pseudo_invertibility if pseudo else invertibility
            q = "pseudo-invertibility" if pseudo else "invertibility"
            for tol, exp in ((0.9 * lb, "refuted"), (ub + 1e-3, "proved")):
                if tol <= 1e-3:
                    continue
                res = fn(net, c, r, tau=tau, tol=tol, time_limit=a.limit)
                ok = verdict(res.status, exp)
                if res.status == REFUTED and res.value > ub + 1e-9:
                    ok = "DISAGREES"
                if res.status == PROVED and res.bound < lb - 1e-9:
                    ok = "DISAGREES"
                record("brute", f"relu {n}-8-3 seed {seed}", f"{q} tau {tau}", res, exp, lb=lb, ub=ub, agrees=ok)
        f2 = relu_net(seed + 100, (n, 8, 3))
        lb, ub = difference_bounds(net, f2, lo, hi)
        res = max_difference(net, f2, lo, hi, time_limit=a.limit)
        ok = "agrees" if (res.status == PROVED and res.bound >= lb - 1e-9 and res.value <= ub + 1e-9) else (
            "unknown" if res.status != PROVED else "DISAGREES")
        record("brute", f"relu {n}-8-3 seed {seed} vs seed {seed + 100}", "max-difference", res, "proved", lb=lb,
               ub=ub, agrees=ok)


def run_backends(a) -> None:
    from conftest import relu_net
    from cegarnn.network import load_network
    cases = []
    for n, h, r in [(6, 20, 0.1), (8, 30, 0.05)]:
        c = np.zeros(n)
        cases.append((f"contractive {n}x{h} r {r}", "invertibility", "proved",
                      lambda kw, n=n, h=h, c=c, r=r: invertibility(contractive_block(n, h, 0.9, 0, c - 1, c + 1), c, r, **kw)))
    c10 = np.zeros(10)
    cases.append(("contractive 10x50 r 0.5", "pseudo-invertibility", "proved",
                  lambda kw: pseudo_invertibility(contractive_block(10, 50, 0.9, 1, c10 - 2, c10 + 2), c10, 0.5, **kw)))
    c = np.zeros(8)
    cases.append(("folding 8x30 r 0.05", "invertibility", "refuted",
                  lambda kw: invertibility(folding_block(8, 30, 0.9, 0, c, c - 1, c + 1)[0], c, 0.05, **kw)))
    c3 = np.full(3, 0.1)
    cases.append(("relu 3-8-3 seed 1", "invertibility tau 0.05 tol 0.3", "",
                  lambda kw: invertibility(relu_net(1, (3, 8, 3)), c3, 0.3, tau=0.05, tol=0.3, **kw)))
    cases.append(("relu 3-8-3 seeds 1, 2", "matching tau 0.05", "proved",
                  lambda kw: matching(relu_net(1, (3, 8, 3)), relu_net(2, (3, 8, 3)), c3 - 0.3, c3 + 0.3, tau=0.05, **kw)))
    if not BRUSS.is_file():
        subprocess.run([sys.executable, str(ROOT / "experiments" / "train_brusselator.py")], check=True)
    cases.append(("brusselator state (2, 2) r 0.5", "invertibility", "",
                  lambda kw: invertibility(BRUSS, np.array([2.0, 2.0]), 0.5, tol=2e-4, **kw)))
    net = load_network(CLASSIFIER)
    images = _mnist_images(3)[0]
    for i, frac, eps in ((0, 0.3, 0.01), (0, 0.6, 0.03), (2, 0.3, 0.03)):
        x = images[i]
        cases.append((f"mnist image {i} eps {eps}", f"max-difference pruned {int(frac * 100)}%", "proved",
                      lambda kw, frac=frac, eps=eps, x=x: max_difference(net, _pruned(net, frac), np.clip(x - eps, 0, 1),
                                                                         np.clip(x + eps, 0, 1), **kw)))
    configs = [("highs", "split", {"split": True}), ("highs", "joint", {"split": False}),
               ("highs", "split, coupling=signs", {"split": True, "coupling": "signs"}), ("pulp", "CBC, split", {"split": True})]
    if a.quick:
        cases, configs = cases[:2], configs[::3]
    for name, q, exp, run in cases:
        for backend, cfg, kw in configs:
            res = run({"backend": backend, "time_limit": a.limit, **kw})
            record("backends", name, q, res, exp, backend=backend, config=cfg,
                   agrees=verdict(res.status, exp) if exp else "")


SECTIONS = {"blocks": run_blocks, "brusselator": run_brusselator, "mnist": run_mnist, "brute": run_brute,
            "backends": run_backends}


# --------------------------------------------------------------------------- report
def write(a, command: str, seconds: float) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    stem = "bench_invariance" + ("_quick" if a.quick else "")
    with open(OUT / f"{stem}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, FIELDS)
        w.writeheader()
        for row in ROWS:
            w.writerow({k: row.get(k, "") for k in FIELDS})
    from bench_invariance_report import markdown
    (OUT / f"{stem}.md").write_text(markdown(ROWS, machine(), command, seconds))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--quick", action="store_true", help="fewer instances (results go to *_quick.*)")
    p.add_argument("--limit", type=float, default=20.0, help="seconds per question (default 20)")
    p.add_argument("--radius-time", type=float, default=45.0, help="seconds per certified-radius search (default 45)")
    a = p.parse_args()
    t0 = time.perf_counter()
    for name in a.only:
        SECTIONS[name](a)
    command = "python experiments/bench_invariance.py " + " ".join(sys.argv[1:])
    write(a, command.strip(), time.perf_counter() - t0)
    bad = [r for r in ROWS if r.get("agrees") == "DISAGREES"]
    print(f"{len(ROWS)} rows in {time.perf_counter() - t0:.0f} s; disagreements: {len(bad)}")


if __name__ == "__main__":
    main()
