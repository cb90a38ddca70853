"""Figures of a distribution-shift sweep: cactus plots and counterexample pictures (matplotlib's
Agg canvas, no pyplot state)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .rows import DEFINITIVE, PathLike, expand_npz, load_counterexamples, method_rank, methods_in


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def cactus_plot(rows: list[dict], path: PathLike, title: str = "") -> Path:
    """PNG at ``path``: for each method (one step line, method order), the number of instances it
    decided (verified or falsified) within time t, t on a log axis; legend ``method (decided/n)``.
    Uses every row given (the caller passes one (classifier, shift)). Returns the path."""
    rows = list(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    floor = 1e-3
    all_t = [max(r["time"], floor) for r in rows if r["time"] is not None]
    lo = min(all_t) if all_t else floor
    hi = max(all_t) if all_t else 1.0
    limits = {r["time_limit"] for r in rows if r["time_limit"] is not None}
    n_max = 0
    for m in methods_in(rows):
        rs = [r for r in rows if r["method"] == m]
        t = sorted(max(r["time"], floor) for r in rs if r["status"] in DEFINITIVE and r["time"] is not None)
        n_max = max(n_max, len(rs))
        label = f"{m} ({len(t)}/{len(rs)})"
        if t:
            xs, ys = [lo] + t + [hi], [0] + list(range(1, len(t) + 1)) + [len(t)]
            ax.step(xs, ys, where="post", label=label, linewidth=1.6)
        else:
            ax.plot([], [], label=label)
    if len(limits) == 1:
        lim = limits.pop()
        if lim > 0:
            ax.axvline(lim, color="grey", linestyle="--", linewidth=0.8)
            hi = max(hi, lim)
    ax.set_xscale("log")
    ax.set_xlim(lo / 1.2, hi * 1.2)
    ax.set_ylim(0, max(n_max, 1) * 1.05)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("instances decided within time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, title="method (decided/instances)", title_fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _as_examples(items) -> list[dict]:
    if isinstance(items, (str, Path, dict)):
        items = [items]
    out = []
    for it in items:
        if isinstance(it, (str, Path)):
            out += load_counterexamples(it)
        elif np.asarray(it.get("x")).ndim == 2:         # a whole file's arrays
            out += expand_npz(it)
        else:
            out.append(it)
    return out


def _square(v: np.ndarray) -> np.ndarray:
    s = math.isqrt(v.size)
    return v.reshape(s, s) if s * s == v.size else v.reshape(1, -1)


def counterexample_figure(examples, path: PathLike, max_examples: int = 8) -> Path:
    """PNG at ``path`` with one row per counterexample (the first ``max_examples``): the original
    image (title ``x, label L``), the generated image G(x, z) that the classifier gets wrong
    (``G(x,z): pred P``) and a bar chart of z in units of the prior's sigma with y-limits ±delta
    (``z (σ units), δ=...``). ``examples``: paths of ``counterexamples.npz`` files, dicts of such
    files' arrays, or per-counterexample dicts (``collect_counterexamples``). ``ValueError`` if
    there is none. Returns the path."""
    ex = _as_examples(examples)[:max(int(max_examples), 0)]
    if not ex:
        raise ValueError("no counterexamples to draw")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = _figure(8.0, 2.2 * len(ex) + 0.3)
    axes = fig.subplots(len(ex), 3, squeeze=False, gridspec_kw=dict(width_ratios=[1, 1, 1.6]))
    for row, c in zip(axes, ex):
        a0, a1, a2 = row
        for ax, img, t in ((a0, c["x"], f"x, label {c['label']}"), (a1, c["shifted"], f"G(x,z): pred {c['pred']}")):
            ax.imshow(_square(np.asarray(img, dtype=np.float64)), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(t, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        a0.set_ylabel(f"{c.get('method', '')}\nimage {c.get('image', '')}", fontsize=8)
        zu = np.asarray(c["z_units"], dtype=np.float64).reshape(-1)
        delta = float(c.get("delta", 0.0) or 0.0)
        lim = delta if delta > 0 else max(float(np.max(np.abs(zu))) if zu.size else 1.0, 1e-6)
        a2.bar(np.arange(zu.size), zu, color=np.where(zu >= 0, "tab:red", "tab:blue"))
        for y in (-lim, lim):
            a2.axhline(y, color="grey", linestyle="--", linewidth=0.7)
        a2.axhline(0, color="black", linewidth=0.6)
        a2.set_ylim(-lim * 1.08, lim * 1.08)
        if zu.size <= 16:
            a2.set_xticks(np.arange(zu.size))
        a2.tick_params(labelsize=7)
        a2.set_title(f"z (σ units), δ={delta:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def pick_counterexamples(examples: list[dict], max_examples: int = 8) -> list[dict]:
    """Up to ``max_examples`` counterexamples, largest delta first (then method order, image),
    taking each image once before any image a second time."""
    ordered = sorted(examples, key=lambda c: (-c["delta"], method_rank(c["method"]), c["image"]))
    chosen, seen = [], set()
    for c in ordered:
        if len(chosen) < max_examples and c["image"] not in seen:
            chosen.append(c)
            seen.add(c["image"])
    for c in ordered:
        if len(chosen) >= max_examples:
            break
        if not any(c is d for d in chosen):
            chosen.append(c)
    return chosen
