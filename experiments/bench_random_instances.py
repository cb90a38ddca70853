"""Issue 15: the verifier on random generator+classifier instances with known answers.

    .venv/bin/python experiments/bench_random_instances.py                       # 20 instances, 3 methods, 30 s
    .venv/bin/python experiments/bench_random_instances.py --methods neuron-bab --timeout 10 --out /tmp/x
    .venv/bin/python experiments/bench_random_instances.py --methods cegar --option bounds=ir-crown --out /tmp/y
    .venv/bin/python experiments/bench_random_instances.py --before experiments/results/issue15/random_instances_before.csv
    .venv/bin/python experiments/bench_random_instances.py --merge a.csv b.csv --out experiments/results/issue15/random_instances
    .venv/bin/python experiments/bench_random_instances.py --bisection-probe     # why input bisection is slow here
    .venv/bin/python experiments/bench_random_instances.py --split-probe         # what first-layer splits give CROWN

Instances: ``experiments/random_instances.py`` (10 verified with a proven minimum margin in
[0.05, 0.05 + gap], 10 falsified with a planted counterexample of margin -0.1; the answers come from
the committed cache ``experiments/results/issue15/random_instances.json``). Methods: any name of
``cegarnn.verifier.methods.METHODS``, with the options of ``conf/verifier/<method>.yaml`` when it
exists (else the library defaults), bounds ``auto``, HiGHS, plus ``--option key=value``;
``cegar-<policy>`` (e.g. ``cegar-segments``, ``cegar-input``) is ``cegar`` with that ``policy``
unless a method of that name is registered. Each run gets ``--timeout`` seconds. Writes
``--out``.csv (one row per instance and method) and ``--out``.md (with ``--before``: a before/after
table first; then per-method summary: decided, correct, wrong, median time; time shares;
per-instance table). A verdict that contradicts the known answer is a soundness bug and is printed
as WRONG. See docs/RANDOM_INSTANCES.md.
"""
from __future__ import annotations

import argparse
import csv
import platform
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import random_instances as ri  # noqa: E402

COLUMNS = ("instance", "seed", "known", "latent_dim", "method", "status", "verdict_vs_known", "time",
           "time_limit", "reason", "found_by", "cex_margin", "iterations", "breakpoints", "boxes",
           "solver_calls", "time_attack", "time_bounds", "time_encode", "time_solver",
           "known_min_margin_lo", "known_min_margin_hi", "sampled_violating_fraction")


def options_for(method: str, time_limit: float, overrides: dict | None = None):
    """(registered method name, Options) for a benchmark column name.

    ``method``: a name of ``cegarnn.verifier.methods.METHODS`` (its ``conf/verifier/<name>.yaml``
    when there is one, else the library's default options), or ``cegar-<policy>`` (``cegar`` with
    that policy) when no method of that name is registered. ``overrides``: further options
    (``--option key=value``). Raises ``ValueError`` naming the registered methods otherwise."""
    from omegaconf import OmegaConf
    from cegarnn.verifier.methods import METHODS
    from cegarnn.verifier.options import POLICIES, Options

    base, policy = method, ""
    if method not in METHODS and method.startswith("cegar-") and method[len("cegar-"):] in POLICIES:
        base, policy = "cegar", method[len("cegar-"):]
    if base not in METHODS:
        raise ValueError(f"unknown method {method!r}; registered: {', '.join(METHODS)} "
                         f"(or cegar-<policy>, policy one of {', '.join(POLICIES)})")
    conf = ROOT / "conf/verifier" / f"{base}.yaml"
    v = dict(OmegaConf.to_container(OmegaConf.load(conf))) if conf.is_file() else {}
    v.pop("method", None)
    v.update(time_limit=float(time_limit), bounds="auto", backend="highs")
    if policy:
        v["policy"] = policy
    v.update(overrides or {})
    return base, Options.from_mapping(v)


def parse_overrides(items) -> dict:
    """``key=value`` strings -> dict (values parsed as YAML scalars: 3, 0.5, true, ir-crown)."""
    import yaml
    out = {}
    for it in items or ():
        key, eq, val = it.partition("=")
        if not eq or not key:
            raise ValueError(f"--option expects key=value, got {it!r}")
        out[key.strip()] = yaml.safe_load(val)
    return out


def run(methods, timeout, seeds=None, progress=print, overrides=None):
    import torch
    from cegarnn.verifier.cegar import run as verify

    torch.set_num_threads(1)
    cache = ri.load_cache()
    insts = ri.default_instances(cache)
    if seeds:
        insts = [i for i in insts if i.base.seed in seeds]
    for inst in insts:                       # build (and check against torch) outside the timed run
        inst._problem = inst.problem()
    verify(insts[0]._problem, "crown", options_for("crown", 5.0)[1])   # warm up the imports
    rows = []
    chosen = [(m, *options_for(m, timeout, overrides)) for m in methods]   # fail fast on a bad name
    for m, base, opts in chosen:
        for inst in insts:
            k = inst.known
            row = dict(instance=inst.name, seed=inst.base.seed, known=inst.kind, latent_dim=inst.base.k, method=m,
                       time_limit=timeout,
                       known_min_margin_lo=k.get("min_margin_at_least", k.get("planted_margin")),
                       known_min_margin_hi=k.get("min_margin_at_most", k.get("planted_margin")),
                       sampled_violating_fraction=cache[str(inst.base.seed)]["independent_float32"]
                       ["sampled_violating_fraction"])
            t0 = time.perf_counter()
            res = verify(inst._problem, base, opts)
            s = res.stats
            status = str(getattr(res.status, "value", res.status))
            row.update(status=status, time=round(time.perf_counter() - t0, 3), reason=res.reason or "",
                       iterations=s.iterations, breakpoints=s.breakpoints_added, boxes=s.boxes_bounded,
                       solver_calls=s.solver_calls, time_attack=round(s.time_attack, 3),
                       time_bounds=round(s.time_bounds, 3), time_encode=round(s.time_encode, 3),
                       time_solver=round(s.time_solver, 3))
            if res.counterexample is not None and status == "falsified":
                row.update(found_by=res.counterexample.found_by, cex_margin=float(res.counterexample.margin_ir))
            row["verdict_vs_known"] = ("correct" if status == inst.kind else
                                       "WRONG" if status in ("verified", "falsified") else "undecided")
            rows.append(row)
            progress(f"{m:15s} {inst.name:28s} k={inst.base.k:2d} {status:9s} {row['time']:7.2f}s "
                     f"{row['verdict_vs_known']} {row['reason'][:60]}")
    return rows


def bisection_probe(inst, max_depth: int = 400, bounds: str = "ir-crown") -> dict:
    """Why input bisection is slow here: follow the one chain of boxes that contains the instance's
    best known point ``z*`` (the hardest place), each time halving the coordinate ``i`` with the
    largest ``|dm/dz_i| * width_i`` at ``z*`` (the split the loop's gradient rule makes), and bound
    the margin of each box (``bounds``, the disjunct minimum of :meth:`RunContext.disjunct_lower`).
    Returns the root bound, the depth at which the box is proved (None if not by ``max_depth``),
    the bounds at depths 0, k/2, k, 2k, 4k (k = latent dimension), and the y-width ratio
    (``sum |B_i| w_i`` of the box over the root's: what the network actually sees)."""
    from cegarnn.verifier.attack import margin_cotangent
    from cegarnn.verifier.context import RunContext
    from cegarnn.verifier.options import Options

    prob = getattr(inst, "_problem", None) or inst.problem()
    ctx = RunContext.create(prob, "cegar", Options(time_limit=1e9, policy="input"))
    z = np.asarray(inst.known["check"]["z_star"], dtype=np.float64)
    y, back = prob.network.vjp(z[None])
    g = np.abs(back(margin_cotangent(prob, y)[1])[0])
    lo, hi = prob.lower.copy(), prob.upper.copy()
    Bw = lambda lo, hi: float(np.abs(inst.base.B).sum(0) @ (hi - lo))
    root_w = Bw(lo, hi)
    k = len(lo)
    marks = {0: None, k // 2: None, k: None, 2 * k: None, 4 * k: None}
    proved_at, root = None, None
    for depth in range(max_depth + 1):
        lb = float(ctx.disjunct_lower(ctx.bounds(lo, hi, bounds)).min())
        root = lb if root is None else root
        if depth in marks:
            marks[depth] = (round(lb, 3), round(Bw(lo, hi) / root_w, 3))
        if lb > 0:
            proved_at = depth
            break
        i = int(np.argmax(g * (hi - lo)))
        mid = (lo[i] + hi[i]) / 2
        if z[i] <= mid:
            hi[i] = mid
        else:
            lo[i] = mid
    return {"k": k, "root": root, "proved_at_depth": proved_at, "at_depth": marks,
            "known_min": (inst.known["min_margin_at_least"], inst.known["min_margin_at_most"])}


def _first_layer_split(inst, prob):
    """The first pre-activation ``p = W z + b`` as ``A·y + e`` with ``y = B z`` (``B``: the rank-1
    latent direction of ``experiments/random_instances.py``) and ``e`` in ``ec ± er`` over the box
    (the full-rank part and the float32 rounding). Returns (A, ec, er, y range)."""
    L0 = prob.network.layers[0]
    W = np.asarray(L0.dense_W() if callable(L0.dense_W) else L0.dense_W, dtype=np.float64)
    B, A = inst.base.B[0], inst.base.A[:, 0]
    E = W - np.outer(A, B)
    zc, zr = (prob.lower + prob.upper) / 2, (prob.upper - prob.lower) / 2
    ec, er = E @ zc + np.asarray(L0.b, dtype=np.float64), np.abs(E) @ zr * (1 + 1e-9) + 1e-12
    return A, ec, er, (float(B @ zc - np.abs(B) @ zr), float(B @ zc + np.abs(B) @ zr))


def split_probe(inst, pieces=(1, 4, 16, 64, 256, 1024)) -> dict:
    """What neuron splitting could do, measured with our numpy CROWN (``ir-crown``):

    * ``split``: cut the range of ``y = B z`` into N equal pieces and give each piece, as a
      subproblem, the segments its y-range implies for **all 25** first-layer sigmoids (sound
      :class:`~cegarnn.bounds.crown.Splits`, the most any first-layer neuron split could say), over
      the full latent box: how many pieces CROWN proves, and the worst piece's bound;
    * ``one_dim``: the same network with ``y`` as its only input (``e`` fixed at its centre: a
      measurement of the bounds, not a proof of the instance), cut into N input intervals.
    """
    from cegarnn.bounds.crown.splits import Splits
    from cegarnn.verifier.context import RunContext
    from cegarnn.verifier.options import Options
    import copy
    import torch
    from torch import nn
    from cegarnn.specs.problem import generative_problem

    prob = getattr(inst, "_problem", None) or inst.problem()
    ctx = RunContext.create(prob, "cegar", Options(time_limit=1e9, policy="input"))
    A, ec, er, (y0, y1) = _first_layer_split(inst, prob)
    sig = next(i for i, L in enumerate(prob.network.layers) if type(L).__name__ == "Sigmoid")
    out = {"split": {}, "one_dim": {}}
    for N in pieces:
        ys = np.linspace(y0, y1, N + 1)
        a, c = ys[:-1, None], ys[1:, None]
        sp = Splits(seg_lo={sig: np.minimum(A * a, A * c) + ec - er}, seg_hi={sig: np.maximum(A * a, A * c) + ec + er})
        lo, hi = np.repeat(prob.lower[None], N, 0), np.repeat(prob.upper[None], N, 0)
        lb = ctx.disjunct_lower(ctx.bounder("ir-crown").bounds(lo, hi, splits=sp)[0]).min(-1)
        out["split"][N] = (int((lb > 0).sum()), float(lb.min()))
    b = inst.base
    first = nn.Linear(2, len(A))
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, 1] = torch.as_tensor(A)
        first.bias.copy_(torch.as_tensor(ec))
    gen = nn.Sequential(first, *list(copy.deepcopy(b.gen))[1:]).eval()
    q = generative_problem(gen, b.clf, np.zeros(1), b.label, latent_lower=np.array([y0]), latent_upper=np.array([y1]))
    qctx = RunContext.create(q, "cegar", Options(time_limit=1e9, policy="input"))
    for N in pieces:
        ys = np.linspace(y0, y1, N + 1)
        lb = qctx.disjunct_lower(qctx.bounds(ys[:-1, None], ys[1:, None], "ir-crown")).min(-1)
        out["one_dim"][N] = (int((lb > 0).sum()), float(lb.min()))
    return out


def write_csv(rows, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows({c: r.get(c, "") for c in COLUMNS} for r in rows)


def read_csv(paths):
    rows = []
    for p in paths:
        with open(p, newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def _num(v) -> float:
    return float(v) if v not in ("", None) else 0.0


def summary(rows, method: str) -> dict:
    """One method's numbers: decided, correct, wrong, and (median, max) seconds of the correct
    verified and the correct falsified verdicts (None when there are none)."""
    rs = [r for r in rows if r["method"] == method]
    ok = lambda kind: [_num(r["time"]) for r in rs if r["known"] == kind and r["verdict_vs_known"] == "correct"]
    mm = lambda ts: (statistics.median(ts), max(ts)) if ts else None
    return dict(n=len(rs), decided=sum(r["status"] in ("verified", "falsified") for r in rs),
                correct=sum(r["verdict_vs_known"] == "correct" for r in rs),
                wrong=sum(r["verdict_vs_known"] == "WRONG" for r in rs),
                verified=mm(ok("verified")), falsified=mm(ok("falsified")))


def _cells(s: dict | None) -> list[str]:
    if s is None:
        return ["–"] * 5
    t = lambda mm: "–" if mm is None else f"{mm[0]:.2f} / {mm[1]:.2f}"
    return [f"{s['decided']}/{s['n']}", str(s["correct"]), f"**{s['wrong']}**", t(s["verified"]), t(s["falsified"])]


def comparison(before_rows, after_rows, before_label="before", after_label="after") -> list[str]:
    """Markdown: one row per method, the before and after numbers side by side."""
    methods = list(dict.fromkeys([r["method"] for r in before_rows] + [r["method"] for r in after_rows]))
    head = ["decided", "correct", "wrong", "verified: median / max (s)", "falsified: median / max (s)"]
    lines = ["| method | " + " | ".join(f"{before_label}: {h}" for h in head) + " | "
             + " | ".join(f"{after_label}: {h}" for h in head) + " |", "|---|" + "---:|" * 10]
    for m in methods:
        b = summary(before_rows, m) if any(r["method"] == m for r in before_rows) else None
        a = summary(after_rows, m) if any(r["method"] == m for r in after_rows) else None
        lines.append(f"| {m} | " + " | ".join(_cells(b)) + " | " + " | ".join(_cells(a)) + " |")
    return lines


def report(rows, out: Path, command: str, before=None, before_command: str = ""):
    """Write ``out``.md: summary, time shares, per-instance table; with ``before`` (rows of an
    earlier run) first a before/after table of :func:`comparison`."""
    f = _num
    methods = list(dict.fromkeys(r["method"] for r in rows))
    names = list(dict.fromkeys(r["instance"] for r in rows))
    by = {(r["method"], r["instance"]): r for r in rows}
    lines = ["# Random generator+classifier instances with known answers (issue 15)", "",
             f"Command: `{command}`  ",
             f"Machine: 2 shared cores ({platform.machine()}, AMD EPYC), no GPU, other jobs running; "
             f"Python {platform.python_version()}, 1 torch thread.  ",
             "Instances: `experiments/random_instances.py` (known answers cached in "
             "`experiments/results/issue15/random_instances.json`), rows: "
             f"`{out.with_suffix('.csv').relative_to(ROOT) if out.is_absolute() and ROOT in out.parents else out.with_suffix('.csv')}`.",
             ""]
    if before:
        lines += ["Before and after (decided of 20; correct = the known answer; wrong must be 0; times of the "
                  "correct verdicts, median / max in seconds):", ""] + comparison(before, rows) + [
                  "", f"Before: `{before_command}`" if before_command else "", ""]
    lines += ["| method | verified (of 10) | falsified (of 10) | wrong | undecided | median time verified (s) | "
             "median time falsified (s) | total (s) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        v = [r for r in rs if r["known"] == "verified" and r["status"] == "verified"]
        fa = [r for r in rs if r["known"] == "falsified" and r["status"] == "falsified"]
        wrong = sum(r["verdict_vs_known"] == "WRONG" for r in rs)
        und = sum(r["verdict_vs_known"] == "undecided" for r in rs)
        med = lambda xs: f"{statistics.median(f(r['time']) for r in xs):.2f}" if xs else "–"
        lines.append(f"| {m} | {len(v)} | {len(fa)} | **{wrong}** | {und} | {med(v)} | {med(fa)} | "
                     f"{sum(f(r['time']) for r in rs):.1f} |")
    lines += ["", "Where the time goes (share of each method's total):", "",
              "| method | attack | bounds | encode | solver | other | boxes | solver calls | breakpoints |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        tt = sum(f(r["time"]) for r in rs) or 1.0
        parts = [sum(f(r[k]) for r in rs) for k in ("time_attack", "time_bounds", "time_encode", "time_solver")]
        lines.append(f"| {m} | " + " | ".join(f"{100 * p / tt:.1f} %" for p in parts)
                     + f" | {100 * (tt - sum(parts)) / tt:.1f} % | {sum(int(f(r['boxes'])) for r in rs)} | "
                     f"{sum(int(f(r['solver_calls'])) for r in rs)} | {sum(int(f(r['breakpoints'])) for r in rs)} |")
    lines += ["", "Per instance (status and seconds; `known min margin`: the proven range of the minimum margin "
              "of a verified instance, or the margin at the planted counterexample; `viol. frac.`: share of "
              "22,000 random latent points (uniform and corners) that violate):", "",
              "| instance | k | known | known min margin | viol. frac. | " + " | ".join(methods) + " |",
              "|---|---:|---|---|---:|" + "---|" * len(methods)]
    for n in names:
        r0 = next(r for r in rows if r["instance"] == n)
        lo, hi = f(r0["known_min_margin_lo"]), f(r0["known_min_margin_hi"])
        km = f"{lo:.3f}" if r0["known"] == "falsified" else f"[{lo:.3f}, {hi:.3f}]"
        cells = []
        for m in methods:
            r = by.get((m, n))
            if r is None:
                cells.append("")
                continue
            tag = {"correct": "", "WRONG": " **WRONG**", "undecided": ""}[r["verdict_vs_known"]]
            cells.append(f"{r['status']} {f(r['time']):.2f}{tag}")
        lines.append(f"| {n} | {r0['latent_dim']} | {r0['known']} | {km} | {f(r0['sampled_violating_fraction']):.4f} | "
                     + " | ".join(cells) + " |")
    reasons = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if r["verdict_vs_known"] == "undecided":
            reasons[r["method"]][r["reason"][:80]] += 1
    if reasons:
        lines += ["", "Undecided reasons:", ""] + [f"- {m}: {dict(c)}" for m, c in reasons.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=["cegar", "cegar-segments", "bab-crown"])
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per instance and method")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="default: all 20 instances")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments/results/issue15/random_instances",
                    help="path without suffix: writes <out>.csv and <out>.md")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a verifier option for every method (repeatable), e.g. --option bounds=ir-crown")
    ap.add_argument("--merge", nargs="+", type=Path, default=None, help="only merge these CSVs into --out")
    ap.add_argument("--command", default=None, help="the command line to record in the report")
    ap.add_argument("--before", type=Path, default=None,
                    help="CSV of an earlier run: the report starts with a before/after table")
    ap.add_argument("--before-command", default="", help="the command line of the --before run, for the report")
    ap.add_argument("--bisection-probe", action="store_true",
                    help="only print, per verified instance, how deep input bisection must go (bisection_probe)")
    ap.add_argument("--split-probe", action="store_true",
                    help="only print, per verified instance, what first-layer neuron splits give CROWN (split_probe)")
    args = ap.parse_args(argv)
    if args.split_probe:
        insts = [i for i in ri.default_instances()[:len(ri.VERIFIED_SEEDS)] if not args.seeds or i.base.seed in args.seeds]
        for inst in insts:
            r = split_probe(inst)
            fmt = lambda d: ", ".join(f"{n}: {v[0]}/{n} ({v[1]:.2f})" for n, v in d.items())
            print(f"{inst.name} (k={inst.base.k}) all first-layer sigmoids split by y-piece, over the {inst.base.k}-d box: "
                  f"{fmt(r['split'])}\n    same pieces as the input of the 1-d network: {fmt(r['one_dim'])}", flush=True)
        return 0
    if args.bisection_probe:
        print("| instance | k | known min margin | root bound | bound at depth k/2, k, 2k, 4k (y-width ratio) "
              "| proved at depth |\n|---|---:|---|---:|---|---:|")
        for inst in ri.default_instances()[:len(ri.VERIFIED_SEEDS)]:
            if args.seeds and inst.base.seed not in args.seeds:
                continue
            r = bisection_probe(inst)
            marks = ", ".join("–" if v is None else f"{v[0]} ({v[1]})" for d, v in r["at_depth"].items() if d)
            print(f"| {inst.name} | {r['k']} | [{r['known_min'][0]:.3f}, {r['known_min'][1]:.3f}] | {r['root']:.3f} | "
                  f"{marks} | {r['proved_at_depth']} |", flush=True)
        return 0
    command = args.command or "python experiments/bench_random_instances.py " + " ".join(sys.argv[1:])
    if args.merge:
        rows = read_csv(args.merge)
    else:
        rows = run(args.methods, args.timeout, args.seeds, progress=lambda s: print(s, flush=True),
                   overrides=parse_overrides(args.option))
        rows = [{c: r.get(c, "") for c in COLUMNS} for r in rows]
    write_csv(rows, args.out.with_suffix(".csv"))
    before = read_csv([args.before]) if args.before else None
    report(read_csv([args.out.with_suffix(".csv")]), args.out, command, before, args.before_command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
