"""Repair benchmarks of issue 12 (finite-set fine-tuning), beside the published numbers.

    python experiments/bench_repair.py watermark [--subsets S] [--second S2]
    python experiments/bench_repair.py reassure [--n 10 20 50 100] [--hidden-n 10 20] [--pool P]
    python experiments/bench_nnrepair.py            # backdoor repair with experts (its own script)

Data: ../shared/benchmarks/repair (see its README) and MNIST in ../shared/data/mnist. Results go to
experiments/results/issue12/{watermark,reassure}.{csv,md}. Every repaired network is re-checked
on its float32 ONNX export with onnxruntime (``RepairResult.check``); accuracies are measured on
that export too.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cegarnn.data.mnist import load_mnist                      # noqa: E402
from cegarnn.network.ir import Affine, Network, ReLU            # noqa: E402
from cegarnn.repair import beats, ensure, finetune, predictions  # noqa: E402

REPAIR_DATA = ROOT.parent / "shared" / "benchmarks" / "repair"
OUT = ROOT / "experiments" / "results" / "issue12"

#: Goldberger et al. (LPAR 2020), authors' result CSVs averaged over the subsets (README)
PUBLISHED_WM = {1: (0.342, 87.44), 2: (0.428, 78.88), 5: (0.794, 58.87), 25: (1.864, 9.49), 100: (2.176, 5.11)}
PUBLISHED_WM_L1 = {1: 94.11, 5: 85.60}


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


# --------------------------------------------------------------------------- watermark
def watermark_network() -> Network:
    m = np.load(REPAIR_DATA / "reassure" / "watermark" / "model.npz")
    return Network((Affine(m["W1"].T, m["b1"]), ReLU(), Affine(m["W2"].T, np.zeros(m["W2"].shape[1]))), (784,),
                   name="goldberger_watermark")


def watermark_subsets(k: int, limit: int) -> np.ndarray:
    if k == 1:
        return np.arange(100)[:limit, None]
    if k == 100:
        return np.arange(100)[None]
    return np.load(REPAIR_DATA / "goldberger_watermark_subsets" / f"{k}.wm.1000.random_samples.npy")[:limit]


def run_watermark(args) -> None:
    net = watermark_network()
    wm = np.load(REPAIR_DATA / "reassure" / "watermark" / "wm.images.npy").reshape(100, -1)
    Xt, yt = load_mnist("test")
    Xt = Xt.reshape(len(Xt), -1) * 255.0             # the model takes raw 0-255 test pixels (README)
    y = net.forward(wm)
    orig, second = y.argmax(1), np.argsort(y, 1)[:, -2]
    acc0 = float(np.mean(predictions(net, Xt) == yt))
    Xtr, ytr = load_mnist("train")
    pool = np.arange(args.keep_pool)
    Xk = Xtr[pool].reshape(len(pool), -1) * 255.0
    pool_ok = predictions(net, Xk) == ytr[pool]
    keep = (Xk[pool_ok], ytr[pool][pool_ok])
    modes = {"linf": dict(norm="linf"), "linf+l1": dict(norm="linf", tie_break="l1"), "l1": dict(norm="l1"),
             "l1+keep": dict(norm="l1", keep=keep, time_limit=args.time_limit),
             "linf+keep": dict(norm="linf", keep=keep, time_limit=args.time_limit)}
    rows = []
    for k in args.k:
        subs = watermark_subsets(k, args.subsets)
        for mode in args.modes:
            limit = len(subs) if mode == "linf" else min(len(subs), args.second_subsets)
            if mode.endswith("+keep"):
                limit = min(limit, args.keep_subsets) if k <= args.keep_max_k else 0
            if limit == 0:
                continue
            for s, idx in enumerate(subs[:limit]):
                idx = np.asarray(idx)
                t = time.perf_counter()
                # Goldberger's constraint: the second-best label (on the original network) reaches the
                # original label's score; weights only (the model has no output bias)
                r = finetune(net, wm[idx], beats(second[idx], orig[idx], 10, margin=0.0), train_bias=False,
                             **modes[mode])
                dt = time.perf_counter() - t
                acc = float(np.mean(predictions(r.network, Xt) == yt)) if r.network is not None else float("nan")
                rows.append(dict(k=k, subset=s, mode=mode, status=r.status.value,
                                 eps_linf=r.norms.get("linf", float("nan")), l1=r.norms.get("l1", float("nan")),
                                 lp_objective=r.extra.get("first_stage_objective", float("nan")),
                                 slack_max=r.extra.get("slack_max", float("nan")), test_acc=acc, time_s=dt))
            done = [x for x in rows if x["k"] == k and x["mode"] == mode]
            print(f"k={k} {mode}: {len(done)} subsets, mean eps {np.mean([x['eps_linf'] for x in done]):.4f}, "
                  f"mean acc {100 * np.nanmean([x['test_acc'] for x in done]):.2f} %, "
                  f"median {np.median([x['time_s'] for x in done]):.3f} s", flush=True)
    _write(rows, "watermark")
    _watermark_md(rows, acc0, args)


def _watermark_md(rows, acc0, args) -> None:
    lines = ["# Watermark removal (Goldberger et al. 2020), last-layer change",
             "", f"Machine: {machine()}. Command: `python experiments/bench_repair.py watermark "
             f"--subsets {args.subsets} --second-subsets {args.second_subsets} --keep-subsets {args.keep_subsets} "
             f"--keep-pool {args.keep_pool}`. L1 + hard keep: the L1-minimal change under which the correctly "
             f"classified images among the first {args.keep_pool} MNIST training images keep their label "
             "(rows added lazily when violated).",
             f"Test accuracy before: {100 * acc0:.2f} %. Constraint per image: score(second-best) >= "
             "score(original label), weights only. ε is the L∞ of the change of the repaired network (the "
             "LP optimum plus the float32 slack's share, see `lp_objective`/`slack_max` in the CSV); every "
             "repaired network met every row on its float32 ONNX export.", "",
             "| k | subsets | ε ours (mean) | ε published | acc L∞ ours | acc published | acc L∞ then L1 "
             "(subsets) | acc L1 only (subsets) | acc L1 published | acc L1 + hard keep (subsets) | "
             "median time L∞ | median time L1 + keep | repaired |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in sorted({r["k"] for r in rows}):
        def sel(mode):
            return [r for r in rows if r["k"] == k and r["mode"] == mode]
        a, b, c, e = sel("linf"), sel("linf+l1"), sel("l1"), sel("l1+keep")
        keep_time = f"{np.median([r['time_s'] for r in e]):.2f} s" if e else "–"
        pe, pa = PUBLISHED_WM.get(k, (float("nan"), float("nan")))

        def acc(x):
            return f"{100 * np.nanmean([r['test_acc'] for r in x]):.2f} % ({len(x)})" if x else "–"
        lines.append(
            f"| {k} | {len(a)} | {np.mean([r['eps_linf'] for r in a]):.4f} | {pe:.3f} | "
            f"{100 * np.nanmean([r['test_acc'] for r in a]):.2f} % | {pa:.2f} % | {acc(b)} | {acc(c)} | "
            f"{(f'{PUBLISHED_WM_L1[k]:.2f} %' if k in PUBLISHED_WM_L1 else '–')} | {acc(e)} | {np.median([r['time_s'] for r in a]):.3f} s | "
            f"{keep_time} | "
            f"{sum(r['status'] == 'repaired' for r in a + b + c + e)}/{len(a + b + c + e)} |")
    lines += ["", "ε matches the published value on every k (a mean over the same subsets: all 1000 for k = 2, 5, "
              "25). The L∞ optimum is not unique. HiGHS' interior point solution (the default for LPs) reproduces "
              "the published accuracies at k = 1 and 2 exactly, but not at k = 5, 25, 100. "
              "The tie-break L1 at the optimal ε keeps less accuracy than that solution. Keeping training images "
              "(hard, with the L1 objective) keeps the accuracy at k <= 5, at the price of a larger change."]
    (OUT / "watermark.md").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- REASSURE finite set
def reassure_network() -> Network:
    import torch
    sd = torch.load(REPAIR_DATA / "reassure" / "mnist" / "target_model.pt", map_location="cpu")
    layers = []
    for i in range(3):
        layers.append(Affine(sd[f"layers.{i}.weight"].double().numpy(), sd[f"layers.{i}.bias"].double().numpy()))
        if i < 2:
            layers.append(ReLU())
    return Network(tuple(layers), (784,), name="reassure_mnist")


def run_reassure(args) -> None:
    net = reassure_network()
    Xt, yt = load_mnist("test")
    Xt = Xt.reshape(len(Xt), -1).astype(np.float64)
    Xtr, ytr = load_mnist("train")
    Xtr = Xtr.reshape(len(Xtr), -1).astype(np.float64)
    p0 = predictions(net, Xt)
    wrong = np.flatnonzero(p0 != yt)
    pool = np.arange(min(args.pool, len(Xtr)))
    pool = pool[predictions(net, Xtr[pool]) == ytr[pool]]
    rows = []
    plan = [("last", n) for n in args.n] + [("hidden", n) for n in args.hidden_n]
    for where, n in plan:
        idx = wrong[:n]
        other = np.setdiff1d(np.arange(len(Xt)), idx)
        kw = dict(norm="linf", keep=(Xtr[pool], ytr[pool]), time_limit=args.time_limit)
        if where == "last":
            kw["layer"] = -1
        else:
            kw.update(layer=1, relu="pattern", solver_options={"solver": "ipm"})
            kw.pop("keep")
        t = time.perf_counter()
        r = finetune(net, Xt[idx], ensure(yt[idx], 10, 1e-3), **kw)
        dt = time.perf_counter() - t
        row = dict(layer=where, n=n, status=r.status.value, reason=r.reason.value, linf=r.norms.get("linf"),
                   l1=r.norms.get("l1"), time_s=dt, keep_pool=len(pool) if "keep" in kw else 0,
                   keep_rows_added=r.extra.get("keep_rows_added", 0))
        if r.network is not None:
            p1 = predictions(r.network, Xt)
            row.update(success=float(np.mean(p1[idx] == yt[idx])),
                       acc_other_before=float(np.mean(p0[other] == yt[other])),
                       acc_other_after=float(np.mean(p1[other] == yt[other])),
                       changed_other=float(np.mean(p1[other] != p0[other])))
        rows.append(row)
        print(row, flush=True)
    _write(rows, "reassure")
    lines = ["# Finite-set repair of misclassified MNIST test images (REASSURE's 784-256-256-10 model)", "",
             f"Machine: {machine()}. Command: `python experiments/bench_repair.py reassure --n {' '.join(map(str, args.n))}"
             f" --hidden-n {' '.join(map(str, args.hidden_n))} --pool {args.pool}`.",
             "The first N misclassified test images (test-set order) must get their label by a margin of 1e-3 on "
             "the float32 ONNX export. Last layer: L∞-minimal change with hard keep inputs (the correctly "
             f"classified images among the first {args.pool} training images, added lazily when violated). "
             "Hidden layer (second Affine): L∞-minimal change keeping every ReLU phase of the N inputs "
             "(`relu='pattern'`, an LP solved by HiGHS' interior point method; no keep set).", "",
             "| layer | N | status | success (float32) | acc. other test before | after | drawdown (points) | "
             "other predictions changed | L∞ | time |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "success" in r:
            lines.append(f"| {r['layer']} | {r['n']} | {r['status']} | {100 * r['success']:.0f} % | "
                         f"{100 * r['acc_other_before']:.2f} % | {100 * r['acc_other_after']:.2f} % | "
                         f"{100 * (r['acc_other_before'] - r['acc_other_after']):.2f} | "
                         f"{100 * r['changed_other']:.2f} % | {r['linf']:.4f} | {r['time_s']:.1f} s |")
        else:
            lines.append(f"| {r['layer']} | {r['n']} | {r['status']} ({r['reason']}) | – | – | – | – | – | – | "
                         f"{r['time_s']:.1f} s |")
    (OUT / "reassure.md").write_text("\n".join(lines) + "\n")


def _write(rows, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(OUT / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    w = sub.add_parser("watermark")
    w.add_argument("--k", type=int, nargs="+", default=[1, 2, 5, 25, 100])
    w.add_argument("--subsets", type=int, default=1000, help="first S subsets per k (L∞ stage)")
    w.add_argument("--second-subsets", type=int, default=100, help="first S subsets for the other modes")
    w.add_argument("--modes", nargs="+", default=["linf", "linf+l1", "l1", "l1+keep"])
    w.add_argument("--keep-pool", type=int, default=2000, help="first P training images as hard keep inputs")
    w.add_argument("--keep-subsets", type=int, default=20, help="first S subsets for the +keep modes")
    w.add_argument("--keep-max-k", type=int, default=5, help="the +keep modes only for k up to this")
    w.add_argument("--time-limit", type=float, default=120.0, help="per instance, +keep modes")
    r = sub.add_parser("reassure")
    r.add_argument("--n", type=int, nargs="+", default=[10, 20, 50, 100])
    r.add_argument("--hidden-n", type=int, nargs="+", default=[10, 20])
    r.add_argument("--pool", type=int, default=60000)
    r.add_argument("--time-limit", type=float, default=900.0)
    args = ap.parse_args(argv)
    {"watermark": run_watermark, "reassure": run_reassure}[args.what](args)


if __name__ == "__main__":
    main()
