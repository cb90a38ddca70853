"""Markdown tables of experiments/bench_invariance.py (one per section), from its rows."""
from __future__ import annotations

from collections import Counter


def _f(v, digits=4) -> str:
    if v is None or v == "":
        return "–"
    return f"{float(v):.{digits}g}"


def _table(head: list, rows: list) -> list:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out + [""]


def _counts(rows) -> str:
    c = Counter(r.get("agrees") or "–" for r in rows)
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))


def markdown(rows: list, machine: str, command: str, seconds: float) -> str:
    sec = lambda s: [r for r in rows if r["section"] == s]          # noqa: E731
    L = ["# Issue 14: two copies of a network in one MILP (cegarnn.invariance)", "",
         f"Machine: {machine}. Command: `{command}` ({seconds / 60:.1f} min in all). "
         "Every row is in `bench_invariance.csv`. `bound`: the solver's proved upper bound on the maximum "
         "(MILP dual bound relaxed by its margin); `value`: the best value confirmed on the real network "
         "(float64 IR; the ONNX model under onnxruntime where the network came from a file). A certificate "
         "(`proved`) of (pseudo-)invertibility means `bound <= tol`; `refuted` comes with a confirmed pair.", ""]
    b = sec("blocks")
    if b:
        L += ["## Residual blocks with known answers", "",
              "Contractive: `x + W2 relu(W1 x + b1) + b2` with ||W2||₂·||W1||₂ = 0.9 (injective). Folding: a "
              "contractive part on the directions orthogonal to `u` plus `-2u relu(u·x - u·c)` (not injective on "
              "any ball around `c`). Ball radius 0.05, `tau = 0`, `tol = 1e-4`. "
              f"Answers against the known ones: {_counts(b)}.", ""]
        L += _table(["instance", "question", "expected", "status", "bound", "value", "time (s)", "nodes", "binaries"],
                    [[r["instance"], r["question"], r["expected"], r["status"], _f(r["bound"]), _f(r["value"]),
                      _f(r["time"], 3), r["nodes"], r["binaries"]] for r in b])
    b = sec("brusselator")
    if b:
        L += ["## Learned Brusselator time-stepper: certified radius", "",
              "`experiments/models/brusselator/brusselator.onnx` ([2, 64, 64, 2] ReLU, flow map over dt = 0.1, "
              "`experiments/train_brusselator.py`). Radius search up to 2 (invertibility) or 4 (pseudo-invertibility), "
              "tol 2e-4, tau 0: grow ×2 from r_max/64 while certified, then bisect. `proved radius`: the largest certified ball; `refuted radius`: the "
              "smallest ball with a confirmed pair.", ""]
        L += _table(["state", "question", "proved radius", "refuted radius", "queries", "time (s)", "queries (radius:answer:time)"],
                    [[r["instance"], r["question"], _f(r["bound"]), _f(r["value"]), r["solver_calls"],
                      _f(r["time"], 3), r["note"]] for r in b])
    b = sec("mnist")
    if b:
        L += ["## MNIST classifier against its pruned copies", "",
              "`experiments/models/classifier.onnx` (784-32-32-10 ReLU) against copies with the smallest 30/60/90 % "
              "of each layer's weights (by magnitude) set to 0; max over the box of ||f(x) - f_pruned(x)||∞ (logits), "
              "box = L∞ ball of radius eps around a test image ∩ [0, 1]^784. `sampled`: the largest difference over "
              f"2,000 random points of the box (the proved bound must cover it). Checks: {_counts(b)}.", ""]
        L += _table(["instance", "question", "status", "bound", "value", "sampled", "time (s)", "binaries", "note"],
                    [[r["instance"], r["question"], r["status"], _f(r["bound"], 6), _f(r["value"], 6),
                      _f(r["brute_lb"], 6), _f(r["time"], 3), r["binaries"], r["note"]] for r in b])
    b = sec("brute")
    if b:
        L += ["## Against brute force on tiny networks", "",
              "ReLU networks n-8-3 (n = 2, 3), ball radius 0.3, tau = 0.05. `lb`: largest distance among sampled pairs "
              "(dense grid + random) whose outputs are within tau; `ub`: interval splitting over pairs of sub-boxes "
              "(tests/invariance_brute.py, independent of cegarnn). Queries with tol = 0.9·lb must be refuted by a "
              "pair no farther apart than ub, with tol = ub + 1e-3 proved with a bound >= lb. max-difference: the "
              f"enclosure [value, bound] must meet [lb, ub]. Agreement: {_counts(b)}.", ""]
        L += _table(["instance", "question", "tol / threshold", "expected", "status", "bound", "value", "lb", "ub",
                     "check", "time (s)"],
                    [[r["instance"], r["question"], _f(r["threshold"]), r["expected"] or "–", r["status"],
                      _f(r["bound"]), _f(r["value"]), _f(r["brute_lb"]), _f(r["brute_ub"]), r["agrees"],
                      _f(r["time"], 3)] for r in b])
    b = sec("backends")
    if b:
        L += ["## Exact answer and time by solver", "",
              "The same questions with HiGHS (`split`: one MILP per coordinate and sign of the L∞ norm, the "
              "default; `joint`: one MILP with a binary per coordinate and sign; `coupling=signs`: mean-value cone "
              "rows linking the two copies, with a sign binary per open neuron) and PuLP with its bundled CBC (no early stop: PuLP has no "
              f"callback). Per question time limit as in the command. Checks: {_counts(b)}.", ""]
        L += _table(["instance", "question", "solver", "config", "status", "bound", "value", "time (s)", "nodes"],
                    [[r["instance"], r["question"], r["backend"], r["config"], r["status"], _f(r["bound"]),
                      _f(r["value"]), _f(r["time"], 3), r["nodes"]] for r in b])
    return "\n".join(L)
