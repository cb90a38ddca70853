"""Issue 15: cegar on *full-rank* variants of the random instances (no known answer; a probe).

    .venv/bin/python experiments/probe_full_rank.py                     # seeds 200-205, margins 0.1 0.5 1.0, 30 s
    .venv/bin/python experiments/probe_full_rank.py --seeds 200 --fractions 0.5 --timeout 10 --out /tmp/x

The benchmark family (experiments/random_instances.py) sees its latent box through one direction,
which is what makes its answers checkable and what the ``rotated`` policy exploits. Here the
latent block of G's first weight is replaced by a full-rank Gaussian one with the same magnitude
per row over the box (``|W_z| rho`` kept), the bias moved so that the box centre's pre-activations
do not change. The label's bias is then moved so that the best PGD point (64 restarts x 200 steps)
has margin ``fraction x (median - min)`` over 5,000 samples: a margin that large is *probably*
safe, but nothing proves it, so a ``verified`` here is checked only by the verifier's own
soundness, and ``unknown`` is the honest reading of a miss. Writes ``--out``.csv and .md.
"""
from __future__ import annotations

import argparse
import csv
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import random_instances as ri  # noqa: E402


def full_rank_instance(seed: int, fraction: float, box_scale: float = 1.0):
    """(Instance, spread, pgd margin after the shift) of the full-rank variant of ``ri.base(seed)``,
    its latent box scaled by ``box_scale`` about its centre (after the weights are drawn)."""
    b = ri.base(seed)
    rng = np.random.default_rng(seed + 1000)
    Wz = b.gen[0].weight.detach().double().numpy()[:, ri.FIXED:]
    rho, zc = (b.upper - b.lower) / 2, (b.upper + b.lower) / 2
    N = rng.normal(0.0, 1.0, Wz.shape)
    N *= ((np.abs(Wz) @ rho) / (np.abs(N) @ rho))[:, None]
    with torch.no_grad():
        b.gen[0].weight[:, ri.FIXED:] = torch.as_tensor(N, dtype=torch.float32)
        b.gen[0].bias += torch.as_tensor((Wz - N) @ zc, dtype=torch.float32)
    b.lower, b.upper = zc - box_scale * rho, zc + box_scale * rho
    _, m_pgd = ri._pgd(b, restarts=64, steps=200)
    spread = float(np.median(ri.margins(b, ri._uniform(rng, b.lower, b.upper, 5000))) - m_pgd)
    shift = ri._apply_shift(b, fraction * spread - m_pgd)
    return ri.Instance(f"full-rank-seed{seed}", "unknown", b, shift), spread, m_pgd + shift


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(200, 206)))
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.5, 1.0])
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--box-scale", type=float, nargs="+", default=[1.0],
                    help="latent box half-widths times this, about the centre (one run per value)")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments/results/issue15/full_rank_probe")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    import cegarnn
    from cegarnn.specs.rotation import rotation_rank
    rows = []
    for scale, fraction in [(s, f) for s in args.box_scale for f in args.fractions]:
        for seed in args.seeds:
            inst, spread, m = full_rank_instance(seed, fraction, scale)
            p = inst.problem()
            t = time.perf_counter()
            r = cegarnn.verify(p, method="cegar", time_limit=args.timeout)
            row = {"box_scale": scale, "seed": seed, "k": inst.base.k, "rank": rotation_rank(p),
                   "fraction": fraction, "spread": round(spread, 4), "pgd_margin": round(m, 4),
                   "status": str(r.status), "reason": str(r.reason),
                   "time": round(time.perf_counter() - t, 2), "subproblems": r.stats.boxes_bounded}
            rows.append(row)
            print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cmd = "python experiments/probe_full_rank.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["# cegar on full-rank variants of the random instances (issue 15; no known answers)", "",
             f"Command: `{cmd.strip()}`  ",
             f"Machine: 2 shared cores ({platform.machine()}, AMD EPYC), other jobs running; 1 torch thread. "
             f"Method `cegar`, policy `auto` (the rank is above 16, or equal to k, so `neuron`).  ",
             f"Rows: `{args.out.with_suffix('.csv').relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out.name + '.csv'}`", "",
             "| box scale | fraction | seed | k | rank | spread | PGD margin | status | time (s) | subproblems |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    lines += [f"| {r['box_scale']} | {r['fraction']} | {r['seed']} | {r['k']} | {r['rank']} | {r['spread']} | {r['pgd_margin']} | "
              f"{r['status']} | {r['time']} | {r['subproblems']} |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
