"""The before/after picture of a :func:`~.spec_loop.repair_spec` run (matplotlib's Agg canvas, no
pyplot state): per problem that had a counterexample, the image, the first counterexample
``G(x, z)`` with the original classifier's label, the same image under the repaired classifier,
and the final state — ``verified`` (a proof on the repaired classifier) or the latest
counterexample with its label."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _square(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    s = math.isqrt(v.size)
    return v.reshape(s, s) if s * s == v.size else v.reshape(1, -1)


def spec_repair_figure(generator, before, after, problems, result, path, images=None,
                       max_rows: int = 8) -> Path:
    """PNG at ``path`` (see the module) for up to ``max_rows`` problems of ``result`` (a
    :class:`~.spec_loop.SpecRepairResult` of ``problems`` on ``generator``) that had a
    counterexample, repaired ones first. ``before``/``after``: the classifier before and after
    (IR networks). ``images``: names of the problems for the row labels (default: their index).
    ``ValueError`` if no problem had a counterexample. Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    idx = [i for i, z in enumerate(result.first_counterexamples) if z is not None]
    if not idx:
        raise ValueError("no problem had a counterexample: nothing to draw")
    idx = sorted(idx, key=lambda i: (result.verdicts[i] != "verified", i))[:max(int(max_rows), 1)]
    names = list(images) if images is not None else list(range(len(problems)))
    fig = Figure(figsize=(7.2, 1.9 * len(idx) + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(idx), 4, squeeze=False)
    for row, i in zip(axes, idx):
        x, label = np.asarray(problems[i][0], dtype=np.float64).reshape(-1), int(problems[i][1])
        g0 = generator.forward(np.concatenate([x, result.first_counterexamples[i]]))
        panels = [(x, f"x, label {label}"),
                  (g0, f"before: pred {int(before.forward(g0).argmax())}"),
                  (g0, f"after: pred {int(after.forward(g0).argmax())}")]
        z1 = result.last_counterexamples[i]
        if z1 is not None:
            g1 = generator.forward(np.concatenate([x, z1]))
            panels.append((g1, f"still wrong: pred {int(after.forward(g1).argmax())}"))
        else:
            panels.append((None, result.verdicts[i]))
        for ax, (img, title) in zip(row, panels):
            ax.set_xticks([])
            ax.set_yticks([])
            if img is None:
                ax.text(0.5, 0.5, title, ha="center", va="center", fontsize=11,
                        color="tab:green" if title == "verified" else "tab:orange")
                for s in ax.spines.values():
                    s.set_visible(False)
                continue
            ax.imshow(_square(img), cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(title, fontsize=9)
        row[0].set_ylabel(f"image {names[i]}", fontsize=8)
    fig.suptitle("counterexamples before repair, and after", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    return path


__all__ = ["spec_repair_figure"]
