"""Randomised soundness benchmark: every method against cegarnn-independent ground truth.

    .venv/bin/python experiments/bench_soundness.py --n 2000 --time-limit 2 --workers 2 \\
        --out experiments/results/bench_soundness.csv

For each seeded random instance (``tests/soundness_lib.py``: 1-3 free inputs, 1-3 hidden layers
of ReLU/Sigmoid/Tanh, thresholds near the true extreme; flavours ``plain``, ``large`` and
``saturate`` (sigmoid/tanh pre-activations beyond ±500, where auto_LiRPA 0.3 clips), ``cancel``
(nearly cancelling rows amplified: float32 rounding matters), ``mixed``), the ground truth is
computed by sampling + local refinement on the float64 network and on onnxruntime (float32), and by
interval bisection; then every method of ``cegarnn.verifier.methods.METHODS`` (``marabou`` only where
available) runs on two paths:

* ``library``: ``cegarnn.verify`` on the float64 network, the float32 ONNX model (onnxruntime) as
  the problem's reference, with the cheap attack OFF (``attack=False``; ``--library-attack`` turns
  it on) so that the proofs themselves are tested - with it on, most barely-unsafe instances in
  1-3 dimensions are falsified before any bound is computed;
* ``vnnlib``: the float32 ONNX file and a ``.vnnlib`` property through ``cegarnn vnnlib``
  (``cegarnn.cli.commands.main``, in-process, default options: as a user runs it).

A ``verified``/``unsat`` where a violation was sampled, or a ``falsified``/``sat`` whose
counterexample is not unsafe at that point, is WRONG. The two hand-made instances of issue 10
(auto_LiRPA clipping; float32 widening) are added unless ``--no-issue10``.

Writes one CSV row per (instance, method, path) to ``--out`` (as it goes) and a Markdown summary
(``--md``, default: ``--out`` with ``.md``) with counts per method and path, the wrong answers,
the machine and the command line. ``--seeds 3 17`` re-runs chosen instances. To run another
checkout of cegarnn (e.g. an older commit extracted with ``git archive``), put it first on
``PYTHONPATH``; the summary names the cegarnn that ran.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import soundness_lib as S  # noqa: E402

COLUMNS = ("instance", "seed", "flavour", "n_in", "arch", "n_disjuncts", "offset", "method", "path",
           "verdict", "reason", "seconds", "truth", "viol64", "viol32", "joint", "proved64", "proved32",
           "min_margin64", "min_margin32", "max_pre_sampled", "max_pre_interval", "beyond500", "cancel_pairs",
           "f32_gap", "cex_margin64", "cex_margin32", "wrong", "wrong_kind", "truth_seconds")

def rows_of(rep: S.Report) -> list[dict]:
    t = rep.truth
    rows = []
    for v in rep.verdicts:
        rows.append({
            "instance": rep.name, "seed": rep.seed, "flavour": rep.flavour, "n_in": rep.n_in, "arch": rep.arch,
            "n_disjuncts": rep.n_disjuncts, "offset": f"{rep.offset:.3g}", "method": v.method, "path": v.path,
            "verdict": v.verdict, "reason": " ".join(str(v.reason).split())[:200], "seconds": f"{v.seconds:.3f}",
            "truth": rep.label(v.path), "viol64": int(t.viol64), "viol32": int(t.viol32), "joint": int(t.joint),
            "proved64": int(t.proved64), "proved32": int(t.proved32),
            "min_margin64": f"{t.min_margin64:.6g}", "min_margin32": f"{t.min_margin32:.6g}",
            "max_pre_sampled": f"{t.max_pre_sampled:.4g}", "max_pre_interval": f"{t.max_pre_interval:.4g}",
            "beyond500": int(t.max_pre_interval > 500), "cancel_pairs": int(rep.meta.get("pairs", 0)),
            "f32_gap": f"{t.f32_gap:.3g}", "cex_margin64": f"{v.cex_margin64:.6g}",
            "cex_margin32": f"{v.cex_margin32:.6g}", "wrong": int(v.wrong), "wrong_kind": v.wrong_kind,
            "truth_seconds": f"{t.seconds:.2f}",
        })
    return rows


def run_instance(key, methods, paths, time_limit, budget, prove_seconds, library_attack):
    rep = S.check_instance(key, methods, paths, time_limit, dense=True, budget=budget, prove_seconds=prove_seconds,
                           library_options={"attack": library_attack})
    return key, rows_of(rep), rep.harness


# ===================================================================== summary
def summarise(rows: list[dict], args, wall: float, harness: list[str]) -> str:
    import torch
    import onnxruntime
    methods = list(dict.fromkeys(r["method"] for r in rows))
    paths = list(dict.fromkeys(r["path"] for r in rows))
    instances = list(dict.fromkeys(r["instance"] for r in rows))
    inst_rows = {}
    for r in rows:
        inst_rows.setdefault(r["instance"], r)
    cpu = platform.processor() or "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = ["# Randomised soundness benchmark", ""]
    out.append(f"Command: `{' '.join(shlex.quote(a) for a in [sys.executable.replace(str(ROOT) + '/', '')] + sys.argv)}`")
    out.append("")
    out.append(f"Machine: {os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, torch {torch.__version__}, "
               f"onnxruntime {onnxruntime.__version__}; {args.workers} worker process(es); wall time {wall / 60:.1f} min; "
               f"{time.strftime('%Y-%m-%d %H:%M')}.")
    out.append("")
    seeds = (f"seeds {' '.join(map(str, args.seeds))}" if args.seeds is not None
             else f"seeds {args.seed0}..{args.seed0 + args.n - 1}")
    if args.flavours:
        seeds += f" with flavour {'/'.join(args.flavours)}"
    out.append(f"Instances: {len(instances)} ({seeds} of "
               f"`tests/soundness_lib.make_instance`" + (" plus the two issue-10 instances" if not args.no_issue10 else "")
               + f"); time limit {args.time_limit:g} s per call (Marabou: at least 2 s); paths: "
               "`library` = `cegarnn.verify` on the float64 network with the float32 ONNX model (onnxruntime) as "
               f"reference, attack {'on' if args.library_attack else 'off'}; "
               "`vnnlib` = `cegarnn vnnlib` (default options) on the float32 ONNX file and a .vnnlib property.")
    import cegarnn
    src = Path(cegarnn.__file__).resolve().parent.parent
    rev = ""
    try:
        import subprocess
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--", "cegarnn"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        rev = (rev + (" + uncommitted changes in cegarnn/" if dirty else "")) if rev else ""
    except (OSError, subprocess.SubprocessError):
        pass
    out.append("")
    out.append(f"cegarnn under test: `{src}`" + (f" (git {rev})" if rev else " (not a git checkout)") + ".")
    out.append("")
    # ground truth overview
    fl = Counter(r["flavour"] for r in inst_rows.values())
    out.append("Instances by flavour: " + ", ".join(f"{k} {v}" for k, v in sorted(fl.items())) + ".")
    b500 = sum(int(r["beyond500"]) for r in inst_rows.values())
    canc = sum(1 for r in inst_rows.values() if int(r["cancel_pairs"]) > 0)
    out.append(f"Conditions: {b500} instances with a sigmoid/tanh pre-activation interval bound beyond ±500 on the "
               f"whole box; {canc} with cancelling row pairs.")
    out.append("")
    for p in paths:
        labels = Counter()
        for inst in instances:
            rr = [r for r in rows if r["instance"] == inst and r["path"] == p]
            if rr:
                labels[rr[0]["truth"]] += 1
        out.append(f"Ground truth, `{p}` path: " + ", ".join(f"{k} {v}" for k, v in sorted(labels.items())) + ".")
    out.append("")
    out.append("| method | path | verified/unsat | falsified/sat | unknown/timeout | error | WRONG | time total (s) |")
    out.append("|---|---|---|---|---|---|---|---|")
    for m in methods:
        for p in paths:
            rr = [r for r in rows if r["method"] == m and r["path"] == p]
            if not rr:
                continue
            c = Counter(r["verdict"] for r in rr)
            ver = c["verified"] + c["unsat"]
            fal = c["falsified"] + c["sat"]
            unk = c["unknown"] + c["timeout"]
            err = c["error"] + sum(v for k, v in c.items() if k not in ("verified", "unsat", "falsified", "sat",
                                                                         "unknown", "timeout", "error"))
            wrong = sum(int(r["wrong"]) for r in rr)
            tt = sum(float(r["seconds"]) for r in rr)
            out.append(f"| {m} | {p} | {ver} | {fal} | {unk} | {err} | **{wrong}** | {tt:.0f} |")
    out.append("")
    wrong_rows = [r for r in rows if int(r["wrong"])]
    out.append(f"## Wrong answers: {len(wrong_rows)}")
    out.append("")
    if wrong_rows:
        by = Counter((r["method"], r["path"], r["wrong_kind"]) for r in wrong_rows)
        out.append("| method | path | kind | count |")
        out.append("|---|---|---|---|")
        for (m, p, k), n in sorted(by.items()):
            out.append(f"| {m} | {p} | {k} | {n} |")
        out.append("")
        byf = defaultdict(set)
        for r in wrong_rows:
            byf[r["flavour"]].add(r["instance"])
        out.append("Instances with a wrong answer, by flavour: "
                   + ", ".join(f"{k} {len(v)}" for k, v in sorted(byf.items())) + ".")
        wi = {r["instance"] for r in wrong_rows}
        cond = Counter()
        for i in wi:
            r = inst_rows[i]
            cond["pre-activation bound beyond ±500"] += int(r["beyond500"])
            cond["cancelling pairs"] += int(int(r["cancel_pairs"]) > 0)
            cond["neither"] += int(not int(r["beyond500"]) and not int(r["cancel_pairs"]))
        out.append("Conditions among them: " + ", ".join(f"{k}: {v}" for k, v in cond.items()) + ".")
        out.append("")
        out.append("Wrong answers (first 60; re-run one with `--seeds SEED`):")
        out.append("")
        out.append("| instance | flavour | arch | offset | method | path | verdict | kind | truth | min margin f64 | "
                   "min margin f32 | max pre (interval) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in wrong_rows[:60]:
            out.append(f"| {r['instance']} | {r['flavour']} | {r['arch']} | {r['offset']} | {r['method']} | {r['path']} | "
                       f"{r['verdict']} | {r['wrong_kind']} | {r['truth']} | {r['min_margin64']} | {r['min_margin32']} | "
                       f"{r['max_pre_interval']} |")
        out.append("")
    out.append(f"Harness self-check (a confirmed counterexample on a model the interval bisection proved safe): "
               f"{len(harness)} contradiction(s)." + ("" if not harness else " " + "; ".join(harness[:10])))
    out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="number of random instances (seeds seed0..seed0+n-1)")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="run exactly these seeds instead")
    ap.add_argument("--time-limit", type=float, default=2.0, help="seconds per method call (default 2)")
    ap.add_argument("--flavours", nargs="*", default=None, choices=S.FLAVOURS,
                    help="only the seeds whose instance has one of these flavours")
    ap.add_argument("--methods", nargs="*", default=None, help="default: every available method")
    ap.add_argument("--paths", nargs="*", default=["library", "vnnlib"], choices=["library", "vnnlib"])
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--budget", type=int, default=100_000, help="interval bisection: boxes per model")
    ap.add_argument("--prove-seconds", type=float, default=10.0, help="interval bisection: seconds per instance")
    ap.add_argument("--library-attack", action="store_true",
                    help="library path with cegarnn's cheap attack on (default off: the proofs alone are tested)")
    ap.add_argument("--no-issue10", action="store_true", help="leave out the two issue-10 instances")
    ap.add_argument("--out", default=str(ROOT / "experiments/results/bench_soundness.csv"))
    ap.add_argument("--md", default=None, help="Markdown summary (default: --out with .md)")
    args = ap.parse_args(argv)

    methods = args.methods or S.methods_available()
    keys = [str(k) for k in (args.seeds if args.seeds is not None else range(args.seed0, args.seed0 + args.n))]
    if args.flavours:
        keys = [k for k in keys if S.flavour_of(int(k)) in args.flavours]
    if args.seeds is not None:
        args.n = len(keys)
    if not args.no_issue10:
        keys = ["issue10-clipping", "issue10-float32"] + keys
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = Path(args.md) if args.md else out.with_suffix(".md")
    t0 = time.perf_counter()
    all_rows: dict = {}
    harness: list[str] = []
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()

        def take(key, rows, h):
            all_rows[key] = rows
            harness.extend(f"{key}: {x}" for x in h)
            for r in rows:
                w.writerow(r)
            fh.flush()
            nw = sum(int(r["wrong"]) for r in rows)
            done = len(all_rows)
            verdicts = " ".join(f"{r['method'][:6]}/{r['path'][0]}={r['verdict'][:5]}" for r in rows)
            print(f"[{done}/{len(keys)} {time.perf_counter() - t0:.0f}s] {key} truth={rows[0]['truth'] if rows else '?'}"
                  f"{' WRONG x' + str(nw) if nw else ''} {verdicts}", flush=True)

        job = (methods, args.paths, args.time_limit, args.budget, args.prove_seconds, args.library_attack)
        if args.workers <= 1:
            S.quiet_worker()
            for k in keys:
                take(*run_instance(k, *job))
        else:
            import multiprocessing as mp
            with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("spawn"), initializer=S.quiet_worker) as ex:
                futs = [ex.submit(run_instance, k, *job) for k in keys]
                for f in as_completed(futs):
                    take(*f.result())
    wall = time.perf_counter() - t0
    rows = [r for k in keys for r in all_rows.get(k, [])]
    with out.open("w", newline="") as fh:        # rewritten in instance order
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    text = summarise(rows, args, wall, harness)
    md.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
