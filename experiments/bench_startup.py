"""Start-up of `cegarnn vnnlib` on small VNN-COMP 2021 instances (issue 15, item 4): how long until
the first bound, this tree side by side with another one (e.g. the previous commit).

For each tree and repetition it measures, each in a fresh process:
  (a) import: wall of ``python -c "import cegarnn.cli.commands"`` (interpreter start included);
  (b) first bound: seconds from spawning ``cegarnn vnnlib`` until its first bound call starts
      and until that call returns (``RunContext.bounds``, timed by a thin wrapper around the CLI that
      patches that one method, the same for both trees; `cegarnn vnnlib --log-level debug` logs
      the same moment in the current tree);
  (c) total: wall of the whole command (it also runs the deferred conversion check, etc.).
Configurations: the default bounds (``bounds='auto'``: in this tree our numpy CROWN, ``ir-crown``,
for the input policy and for the segments policy's root box, then auto_LiRPA alpha-CROWN on that
box only when CROWN does not prove it; in the previous commit auto_LiRPA CROWN / alpha-CROWN, i.e.
torch), ``-o bounds=crown`` (auto_LiRPA's CROWN, asked for explicitly) and ``-o bounds=interval``.

    .venv/bin/python experiments/bench_startup.py --old /tmp/old --reps 3
    (git archive HEAD | tar -x -C /tmp/old   makes the old tree)

Writes ``experiments/results/issue15/bench_startup.{csv,md}``; paths there are repo-relative.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT.parent / "shared" / "benchmarks" / "vnncomp2021"
INSTANCES = [      # (network, property) relative to BENCH: small, decided quickly (or capped by --timeout)
    ("mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_7_0.03.vnnlib"),      # sat (attack)
    ("mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_2_0.03.vnnlib"),      # unsat
    ("mnistfc/mnist-net_256x6.onnx", "mnistfc/prop_2_0.03.vnnlib"),      # unsat
    ("eran/nets/ffnnSIGMOID__Point_6x200.onnx", "eran/specs/mnist/mnist_spec_idx_7167_eps_0.01200.vnnlib"),  # sigmoid
]
CONFIGS = {"default": [], "crown": ["-o", "bounds=crown"], "interval": ["-o", "bounds=interval"]}
NEW_ONLY: set = set()

WRAPPER = r"""
import sys, time
from cegarnn.verifier import context
_orig, _done = context.RunContext.bounds, []
def bounds(self, *a, **k):
    if _done:
        return _orig(self, *a, **k)
    t = time.time()
    try:
        return _orig(self, *a, **k)
    finally:
        _done.append(1)
        print(f"FIRST_BOUND {t!r} {time.time()!r}", file=sys.stderr, flush=True)
context.RunContext.bounds = bounds
from cegarnn.cli.commands import main
sys.exit(main(sys.argv[1:]))
"""


def run_import(tree: Path) -> float:
    t = time.time()
    subprocess.run([sys.executable, "-c", "import cegarnn.cli.commands"], cwd=tree, check=True,
                   env=_env(tree))
    return time.time() - t


def _env(tree: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)          # this tree's cegarnn, not the installed one
    return env


def run_instance(tree: Path, net: str, prop: str, extra: list, timeout: float) -> dict:
    cmd = [sys.executable, "-c", WRAPPER, "vnnlib", str(BENCH / net), str(BENCH / prop),
           "--timeout", str(timeout)] + extra
    t0 = time.time()
    p = subprocess.run(cmd, cwd=tree, env=_env(tree), capture_output=True, text=True)
    total = time.time() - t0
    first = [ln.split() for ln in p.stderr.splitlines() if ln.startswith("FIRST_BOUND ")]
    start, end = (float(first[0][1]) - t0, float(first[0][2]) - t0) if first else (float("nan"),) * 2
    verdict = (p.stdout.splitlines() or ["?"])[0]
    return {"first_bound_start_s": start, "first_bound_end_s": end, "total_s": total, "verdict": verdict}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", type=Path, default=None, help="tree of the previous commit (git archive HEAD | tar -x)")
    ap.add_argument("--old-label", default="previous commit")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=10.0, help="--timeout of each cegarnn vnnlib run")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "issue15")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--instances", nargs="+", type=int, default=list(range(len(INSTANCES))),
                    help="indices into INSTANCES (default all)")
    ap.add_argument("--tag", default="bench_startup", help="output file stem")
    a = ap.parse_args(argv)
    instances = [INSTANCES[i] for i in a.instances]
    configs = {k: CONFIGS[k] for k in a.configs}
    if not BENCH.is_dir():
        print(f"skipped: {BENCH} not found")
        return 0
    trees = [("new", ROOT)] + ([("old", a.old.resolve())] if a.old else [])
    rows = []
    for rep in range(a.reps):                 # repetitions outermost: machine load drifts, trees interleave
        for label, tree in trees:
            rows.append({"tree": label, "config": "-", "instance": "import cegarnn.cli.commands", "rep": rep,
                         "import_s": run_import(tree)})
            for net, prop in instances:
                for config, extra in configs.items():
                    if config in NEW_ONLY and label != "new":
                        continue
                    r = run_instance(tree, net, prop, extra, a.timeout)
                    rows.append({"tree": label, "config": config, "instance": f"{net} {prop}", "rep": rep, **r})
                    print(f"[{rep}] {label:3s} {config:8s} {net} {prop}: first bound at "
                          f"{r['first_bound_start_s']:.2f}s (done {r['first_bound_end_s']:.2f}s), "
                          f"total {r['total_s']:.2f}s, {r['verdict']}", flush=True)
    a.out.mkdir(parents=True, exist_ok=True)
    cols = ["tree", "config", "instance", "rep", "import_s", "first_bound_start_s", "first_bound_end_s",
            "total_s", "verdict"]
    with (a.out / f"{a.tag}.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({c: (f"{r[c]:.4f}" if isinstance(r.get(c), float) else r.get(c, "")) for c in cols})
    (a.out / f"{a.tag}.md").write_text(report(rows, a, trees, instances, configs))
    print(f"wrote {a.out / (a.tag + '.csv')} and {a.out / (a.tag + '.md')}")
    return 0


def _med(rows, key):
    v = [r[key] for r in rows if key in r and r[key] == r[key]]
    return f"{statistics.median(v):.2f}" if v else "-"


def report(rows, a, trees, instances=INSTANCES, configs=CONFIGS) -> str:
    cpu = "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    labels = {"new": "this tree", "old": a.old_label}
    out = ["# Start-up of `cegarnn vnnlib` (issue 15, item 4)", "",
           f"Machine: {os.cpu_count()} shared cores, {cpu}, Python {platform.python_version()} "
           f"(other jobs running: absolute numbers are noisy; the trees interleave per repetition).",
           f"Command: `.venv/bin/python experiments/bench_startup.py --old <tree of the previous commit> "
           f"--old-label '{a.old_label}' --reps {a.reps} --timeout {a.timeout:g} --configs {' '.join(configs)} "
           f"--instances {' '.join(map(str, a.instances))} --tag {a.tag}`; medians of {a.reps} runs, seconds from spawning the process.",
           "", "Columns: *first bound* = when the first bound call starts (imports, ONNX load, attack done) / "
           "when it returns (the first call also imports torch + auto_LiRPA where the provider needs them); "
           "*total* = wall of the whole command. *default* = `bounds='auto'` (this tree: our numpy CROWN first; "
           "the previous commit: auto_LiRPA), *crown* = auto_LiRPA CROWN asked for explicitly.", "",
           "## (a) Import of the CLI (`python -c \"import cegarnn.cli.commands\"`)", "",
           "| tree | median s |", "|---|---|"]
    for label, _ in trees:
        out.append(f"| {labels[label]} | {_med([r for r in rows if r['tree'] == label and 'import_s' in r], 'import_s')} |")
    out += ["", "## (b), (c) First bound and total, per instance", "",
            "| instance | bounds | tree | first bound starts | first bound returns | total | verdict |",
            "|---|---|---|---|---|---|---|"]
    for net, prop in instances:
        inst = f"{net} {prop}"
        for config in configs:
            for label, _ in trees:
                sel = [r for r in rows if r["tree"] == label and r["config"] == config and r["instance"] == inst]
                if not sel:
                    continue
                verdicts = "/".join(sorted({r["verdict"] for r in sel}))
                out.append(f"| `{Path(net).name}` `{Path(prop).name}` | {config} | {labels[label]} | "
                           f"{_med(sel, 'first_bound_start_s')} | {_med(sel, 'first_bound_end_s')} | "
                           f"{_med(sel, 'total_s')} | {verdicts} |")
    out += ["", "## (d) Sum over the instances of the median total", "", "| bounds | tree | sum of totals (s) |",
            "|---|---|---|"]
    for config in configs:
        for label, _ in trees:
            meds = []
            for net, prop in instances:
                sel = [r["total_s"] for r in rows if r["tree"] == label and r["config"] == config
                       and r["instance"] == f"{net} {prop}"]
                if sel:
                    meds.append(statistics.median(sel))
            if meds:
                out.append(f"| {config} | {labels[label]} | {sum(meds):.2f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
