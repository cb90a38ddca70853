"""Report of a distribution-shift sweep: tables and plots from the ``rows.csv`` of every job.

A Hydra multirun (``cegarnn-verify -m experiment=shift_sweep``) leaves, in each job directory
below the sweep root, a ``rows.csv`` (one row per image; columns ``COLUMNS``, see
``cegarnn.sweep``) and, if the job falsified an image, a ``counterexamples.npz``.

``collect`` reads and types every ``rows.csv``; ``write_csv`` / ``summary_table`` /
``time_breakdown_table`` / ``disagreements`` / ``cactus_plot`` / ``counterexample_figure`` turn the
rows into the committed outputs, and ``write_report`` (the ``cegarnn report`` command) does all of
it for a sweep root::

    cegarnn report multirun/shift_sweep/<date> --out experiments/results/shift_sweep

Only the standard library, numpy and matplotlib (Agg canvas, no pyplot state) are used.
"""
from __future__ import annotations

import csv
import logging
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from .sweep import COLUMNS   # the rows.csv schema is defined where the rows are written

log = logging.getLogger(__name__)

STATUSES = ("verified", "falsified", "unknown", "error")
DEFINITIVE = ("verified", "falsified")
METHOD_ORDER = ("cegar", "lp", "milp-fixed", "crown", "bab-crown", "marabou")
KEY = ("shift", "classifier", "delta", "method", "image")
INSTANCE = ("shift", "classifier", "delta", "image")

_STR = ("shift", "classifier", "method", "status", "reason", "found_by")
_INT = ("image", "mnist_index", "label", "iterations", "breakpoints", "binaries", "boxes", "solver_calls",
        "cex_pred")
_FLOAT = ("delta", "time", "time_limit", "time_attack", "time_bounds", "time_encode", "time_solver", "cex_margin")
_REQUIRED = ("shift", "classifier", "delta", "method", "image", "status")
_PARTS = ("attack", "bounds", "encode", "solver")
_CEX_ARRAYS = ("image", "label", "pred", "margin", "x", "shifted", "z", "z_units")
_CEX_SCALARS = ("shift", "classifier", "method", "delta")

PathLike = Union[str, Path]


# ----------------------------------------------------------------------------------------------
# reading


def _roots(roots) -> list[Path]:
    if isinstance(roots, (str, Path)):
        roots = [roots]
    roots = [Path(r) for r in roots]
    if not roots:
        raise ValueError("no sweep root given")
    return roots


def _find(roots, name: str, *, required: bool) -> list[Path]:
    """Every file called ``name`` below the roots (a root may also be such a file), resolved, each
    once, in sorted path order."""
    found = set()
    for root in _roots(roots):
        if root.is_file():
            if root.name == name or (name == "rows.csv" and root.suffix == ".csv"):
                found.add(root.resolve())
            elif required:
                raise ValueError(f"{root}: not a directory and not a {name} file")
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such directory")
        here = {p.resolve() for p in root.rglob(name) if p.is_file()}
        if required and not here:
            raise FileNotFoundError(f"no {name} found below {root} (is it a sweep root?)")
        found |= here
    return sorted(found)


def _parse_int(s: str):
    try:
        return int(s)
    except ValueError:
        f = float(s)
        if not f.is_integer():
            raise ValueError(f"not an integer: {s!r}") from None
        return int(f)


def _parse_row(raw: dict, path: Path, line: int) -> dict:
    if None in raw:
        raise ValueError(f"{path}:{line}: row has more fields than the header")
    if any(v is None for v in raw.values()):
        raise ValueError(f"{path}:{line}: row has fewer fields than the header (truncated line?)")
    row = {}
    for col in COLUMNS:
        s = raw[col].strip()
        if s == "":
            if col in _REQUIRED:
                raise ValueError(f"{path}:{line}: empty {col!r}")
            row[col] = "" if col in _STR else None
            continue
        try:
            row[col] = s if col in _STR else _parse_int(s) if col in _INT else float(s)
        except ValueError:
            kind = "an integer" if col in _INT else "a number"
            raise ValueError(f"{path}:{line}: column {col!r}: {s!r} is not {kind}") from None
    if row["status"] not in STATUSES:
        raise ValueError(f"{path}:{line}: unknown status {row['status']!r} (expected one of {', '.join(STATUSES)})")
    return row


def read_rows(path: PathLike) -> list[dict]:
    """The typed rows of one ``rows.csv`` (see ``collect``); ``ValueError`` naming the file on a
    missing column or an unparsable value."""
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        if not header:
            raise ValueError(f"{path}: empty file (no header line)")
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s): {', '.join(missing)}")
        return [_parse_row(raw, path, reader.line_num) for raw in reader]


def _collect(roots) -> tuple[list[dict], list[Path], int]:
    paths = _find(roots, "rows.csv", required=True)
    by_key, dup = {}, 0
    for p in paths:
        for row in read_rows(p):
            k = tuple(row[c] for c in KEY)
            if k in by_key:
                dup += 1
                del by_key[k]           # re-insert: the later file's row also takes the later place
            by_key[k] = row
    if not by_key:
        raise ValueError(f"{len(paths)} rows.csv file(s) found below {', '.join(map(str, _roots(roots)))} "
                         "but they hold no rows")
    if dup:
        log.warning("%d duplicate row(s) (same shift, classifier, delta, method, image); kept the last one "
                    "read in sorted path order", dup)
    return list(by_key.values()), paths, dup


def collect(roots) -> list[dict]:
    """All rows of every ``rows.csv`` below ``roots`` (a path or several; searched recursively).

    Each row is a dict over ``COLUMNS`` with proper types: ``str`` for shift, classifier, method,
    status, reason, found_by (empty string if blank); ``float`` for delta and the times, ``int`` for
    image, counts and labels; ``None`` for a blank numeric field (e.g. cex_* unless falsified,
    the solver statistics of an ``error`` row). Guarantees one row per (shift, classifier, delta,
    method, image): a key seen in several files keeps the row of the last file in sorted path
    order, and the number of such duplicates is logged as a warning.

    Raises ``FileNotFoundError`` if a root does not exist or holds no ``rows.csv``, ``ValueError``
    naming the file for missing columns, unparsable values, unknown statuses, or no rows at all.
    """
    return _collect(roots)[0]


# ----------------------------------------------------------------------------------------------
# ordering and the tidy CSV


def method_rank(method: str) -> tuple:
    """Sort key of a method: cegar, lp, milp-fixed, crown, bab-crown, marabou, then others A-Z."""
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def _row_order(r: dict) -> tuple:
    return (r["classifier"], r["shift"], r["delta"], method_rank(r["method"]), r["image"])


def _methods(rows) -> list[str]:
    return sorted({r["method"] for r in rows}, key=method_rank)


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_csv(rows: Iterable[dict], path: PathLike) -> Path:
    """Write ``rows`` to ``path`` with exactly ``COLUMNS``, sorted by (classifier, shift, delta,
    method in ``method_rank`` order, image); blanks stay blank, floats keep 6 significant digits
    (as in ``rows.csv``). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in sorted(rows, key=_row_order):
            w.writerow([_fmt(r.get(c)) for c in COLUMNS])
    return path


# ----------------------------------------------------------------------------------------------
# soundness check


def disagreements(rows: Iterable[dict]) -> list[dict]:
    """Instances (shift, classifier, delta, image) on which one method says ``verified`` and
    another ``falsified`` (``unknown``/``error`` never conflict). One dict per such instance, sorted:
    its shift, classifier, delta, image, mnist_index and ``statuses`` = {method: status} over all
    methods that ran it (in method order)."""
    groups = defaultdict(list)
    for r in rows:
        groups[tuple(r[c] for c in INSTANCE)].append(r)
    out = []
    for key, rs in groups.items():
        if len({r["status"] for r in rs if r["status"] in DEFINITIVE}) > 1:
            rs = sorted(rs, key=lambda r: method_rank(r["method"]))
            out.append(dict(zip(INSTANCE, key), mnist_index=rs[0]["mnist_index"],
                            statuses={r["method"]: r["status"] for r in rs}))
    out.sort(key=lambda d: (d["classifier"], d["shift"], d["delta"], d["image"]))
    return out


def disagreements_markdown(dis: list[dict]) -> str:
    """The disagreements section body: ``0 (none)`` or the count and a table of the instances."""
    if not dis:
        return "Instances where one method says verified and another falsified: 0 (none).\n"
    lines = [f"Instances where one method says verified and another falsified: **{len(dis)}** "
             "(at least one method is unsound on these).", "",
             "| classifier | shift | delta | image | mnist index | statuses |",
             "|---|---|---:|---:|---:|---|"]
    for d in dis:
        st = ", ".join(f"{m}={s}" for m, s in d["statuses"].items())
        lines.append(f"| {d['classifier']} | {d['shift']} | {d['delta']:g} | {d['image']} | "
                     f"{_fmt(d['mnist_index'])} | {st} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# tables


def cell_stats(rows: list[dict]) -> dict:
    """Counts per status, ``decided`` (verified + falsified), ``n``, ``median_time`` and
    ``max_over_limit`` = max(time - time_limit) (negative: every instance ended before its limit;
    ``None`` if no row has both)."""
    c = {s: 0 for s in STATUSES}
    for r in rows:
        c[r["status"]] += 1
    times = [r["time"] for r in rows if r["time"] is not None]
    over = [r["time"] - r["time_limit"] for r in rows if r["time"] is not None and r["time_limit"] is not None]
    c.update(n=len(rows), decided=c["verified"] + c["falsified"],
             median_time=float(np.median(times)) if times else None, max_over_limit=max(over) if over else None)
    return c


_SUMMARY_HEAD = ("| delta | method | verified | falsified | unknown | error | decided | median time (s) "
                 "| max over-limit (s) |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|")


def _summary_rows(rows: list[dict]) -> list[str]:
    """Table rows delta x method; in each delta the method(s) deciding the most (if > 0) in bold."""
    cells = defaultdict(list)
    for r in rows:
        cells[(r["delta"], r["method"])].append(r)
    lines = []
    for delta in sorted({d for d, _ in cells}):
        stats = {m: cell_stats(cells[(delta, m)]) for m in _methods(rows) if (delta, m) in cells}
        best = max(s["decided"] for s in stats.values())
        for m, s in stats.items():
            b = "**" if best > 0 and s["decided"] == best else ""
            med = "–" if s["median_time"] is None else f"{s['median_time']:.2f}"
            over = "–" if s["max_over_limit"] is None else f"{s['max_over_limit']:+.2f}"
            lines.append(f"| {delta:g} | {b}{m}{b} | {s['verified']} | {s['falsified']} | {s['unknown']} | "
                         f"{s['error']} | {b}{s['decided']}{b} | {med} | {over} |")
    return lines


def _groups(rows, *cols) -> dict:
    g = defaultdict(list)
    for r in rows:
        g[tuple(r[c] for c in cols)].append(r)
    return dict(sorted(g.items()))


def summary_table(rows: list[dict]) -> str:
    """Markdown: one table per (classifier, shift) with a row per delta x method (columns verified |
    falsified | unknown | error | decided | median time (s) | max over-limit (s)), then one table
    per classifier summed over all shifts (per delta x method). In each (classifier, shift, delta)
    (resp. (classifier, delta)) the method(s) deciding the most instances are in bold (name and
    decided count), unless none decides any."""
    rows = list(rows)
    out = []
    for (clf, shift), rs in _groups(rows, "classifier", "shift").items():
        out += [f"### {clf} / {shift}", "", _SUMMARY_HEAD, *_summary_rows(rs), ""]
    for (clf,), rs in _groups(rows, "classifier").items():
        shifts = sorted({r["shift"] for r in rs})
        out += [f"### {clf} / all shifts ({', '.join(shifts)})", "", _SUMMARY_HEAD, *_summary_rows(rs), ""]
    out.append("decided = verified + falsified; median time over all instances of the cell; "
               "max over-limit = max(time - time limit) (negative: every instance ended before its limit).")
    return "\n".join(out) + "\n"


def _mean(vals) -> Optional[float]:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def time_breakdown(rows: list[dict]) -> dict:
    """{(classifier, method): dict(n, total, share_attack, share_bounds, share_encode, share_solver,
    share_other, mean_iterations, mean_breakpoints, mean_binaries)}; shares are fractions of the
    total time (blank component times count as 0; other = time - the four parts, so shares sum
    to 1); ``None`` where undefined."""
    out = {}
    groups = _groups(rows, "classifier", "method")
    for key in sorted(groups, key=lambda k: (k[0], method_rank(k[1]))):
        rs = groups[key]
        total = sum(r["time"] or 0.0 for r in rs)
        parts = {p: sum(r[f"time_{p}"] or 0.0 for r in rs) for p in _PARTS}
        d = dict(n=len(rs), total=total)
        for p in _PARTS:
            d[f"share_{p}"] = parts[p] / total if total > 0 else None
        d["share_other"] = (total - sum(parts.values())) / total if total > 0 else None
        for c in ("iterations", "breakpoints", "binaries"):
            d[f"mean_{c}"] = _mean(r[c] for r in rs)
        out[key] = d
    return out


def time_breakdown_table(rows: list[dict]) -> str:
    """Markdown table per (classifier, method): instances, total time (s), share of it in attack /
    bounds / encode / solver / other (= time - the four), mean iterations, breakpoints, binaries."""
    lines = ["| classifier | method | instances | total time (s) | attack | bounds | encode | solver | other "
             "| mean iterations | mean breakpoints | mean binaries |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}%"

    def num(v):
        return "–" if v is None else f"{v:.1f}"

    for (clf, m), d in time_breakdown(rows).items():
        shares = " | ".join(pct(d[f"share_{p}"]) for p in (*_PARTS, "other"))
        lines.append(f"| {clf} | {m} | {d['n']} | {d['total']:.1f} | {shares} | {num(d['mean_iterations'])} | "
                     f"{num(d['mean_breakpoints'])} | {num(d['mean_binaries'])} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# plots


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
    for m in _methods(rows):
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


def _expand_npz(d, source: str = "") -> list[dict]:
    """One dict per counterexample of a file's arrays (a loaded npz or a dict of the same keys)."""
    missing = [k for k in (*_CEX_SCALARS, *_CEX_ARRAYS) if k not in d]
    if missing:
        raise ValueError(f"{source or 'counterexamples'}: missing key(s): {', '.join(missing)}")
    meta = {k: str(np.asarray(d[k]).item()) for k in ("shift", "classifier", "method")}
    meta["delta"] = float(np.asarray(d["delta"]).item())
    arrays = {k: np.asarray(d[k]) for k in _CEX_ARRAYS}
    n = len(arrays["image"])
    if any(len(a) != n for a in arrays.values()):
        raise ValueError(f"{source or 'counterexamples'}: arrays of different lengths "
                         f"({', '.join(f'{k}={len(a)}' for k, a in arrays.items())})")
    out = []
    for i in range(n):
        c = dict(meta, image=int(arrays["image"][i]), label=int(arrays["label"][i]), pred=int(arrays["pred"][i]),
                 margin=float(arrays["margin"][i]), x=np.asarray(arrays["x"][i], dtype=np.float64).reshape(-1),
                 shifted=np.asarray(arrays["shifted"][i], dtype=np.float64).reshape(-1),
                 z=np.asarray(arrays["z"][i], dtype=np.float64).reshape(-1),
                 z_units=np.asarray(arrays["z_units"][i], dtype=np.float64).reshape(-1))
        if source:
            c["source"] = source
        out.append(c)
    return out


def load_counterexamples(path: PathLike) -> list[dict]:
    """The counterexamples of one ``counterexamples.npz``, one dict each (see ``collect_counterexamples``)."""
    path = Path(path)
    with np.load(path) as z:
        return _expand_npz(z, str(path))


def collect_counterexamples(roots) -> list[dict]:
    """One dict per counterexample in every ``counterexamples.npz`` below ``roots``: shift,
    classifier, method (str), delta (float), image, label, pred (int), margin (float), x, shifted,
    z, z_units (1-d float arrays) and source (the file). Files are read in sorted path order; a
    (shift, classifier, delta, method, image) seen twice keeps the last. No file: ``[]``."""
    by_key = {}
    for p in _find(roots, "counterexamples.npz", required=False):
        for c in load_counterexamples(p):
            k = tuple(c[col] for col in KEY)
            by_key.pop(k, None)
            by_key[k] = c
    return list(by_key.values())


def _as_examples(items) -> list[dict]:
    if isinstance(items, (str, Path, dict)):
        items = [items]
    out = []
    for it in items:
        if isinstance(it, (str, Path)):
            out += load_counterexamples(it)
        elif np.asarray(it.get("x")).ndim == 2:         # a whole file's arrays
            out += _expand_npz(it)
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


# ----------------------------------------------------------------------------------------------
# the whole report


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(s)).strip("-") or "x"


def write_report(roots, out_dir: PathLike, *, title: str = "Distribution-shift experiment",
                 max_examples: int = 8) -> dict:
    """Collect the rows below ``roots`` and write into ``out_dir``: ``results.csv`` (``write_csv``),
    ``tables.md`` (summary tables, a disagreements section — ``0 (none)`` or the list — and the
    time breakdown), ``cactus_<classifier>_<shift>.png`` per (classifier, shift), and
    ``counterexamples_<classifier>_<shift>.png`` per (classifier, shift) with counterexamples
    (``pick_counterexamples``: largest delta first, distinct images first).

    Returns dict(n_rows, n_files (rows.csv read), n_duplicates, n_disagreements, n_counterexamples,
    disagreements (the list), files (paths written)). Input errors raise as in ``collect``.
    """
    rows, paths, dup = _collect(roots)
    cexs = collect_counterexamples(roots)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_csv(rows, out / "results.csv")]
    dis = disagreements(rows)

    n_inst = len({tuple(r[c] for c in INSTANCE) for r in rows})
    md = [f"# {title}", "",
          f"{len(rows)} rows: {n_inst} instances (shift, classifier, delta, image) x {len(_methods(rows))} "
          f"method(s), from {len(paths)} rows.csv file(s)"
          + (f"; {dup} duplicate row(s) dropped (kept the last in sorted path order)" if dup else "") + ".",
          "", "## Results per classifier and shift", "", summary_table(rows),
          "## Disagreements", "", disagreements_markdown(dis),
          "## Where the time goes", "", time_breakdown_table(rows),
          "Shares of the total time per (classifier, method); other = time - attack - bounds - encode - solver.", ""]
    tables = out / "tables.md"
    tables.write_text("\n".join(md))
    files.append(tables)

    cex_groups = defaultdict(list)
    for c in cexs:
        cex_groups[(c["classifier"], c["shift"])].append(c)
    for (clf, shift), rs in _groups(rows, "classifier", "shift").items():
        files.append(cactus_plot(rs, out / f"cactus_{_slug(clf)}_{_slug(shift)}.png",
                                 title=f"{title}: {clf}, {shift}"))
        if cex_groups.get((clf, shift)):
            files.append(counterexample_figure(pick_counterexamples(cex_groups[(clf, shift)], max_examples),
                                               out / f"counterexamples_{_slug(clf)}_{_slug(shift)}.png"))
    return dict(n_rows=len(rows), n_files=len(paths), n_duplicates=dup, n_disagreements=len(dis),
                n_counterexamples=len(cexs), disagreements=dis, files=[str(f) for f in files])
