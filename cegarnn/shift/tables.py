"""Markdown tables of a distribution-shift sweep: results per (classifier, shift) and radius, the
disagreements between methods (the soundness check), and where the time goes."""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Optional

import numpy as np

from .rows import DEFINITIVE, INSTANCE, STATUSES, fmt_value, group_rows, method_rank, methods_in

_PARTS = ("attack", "bounds", "encode", "solver")


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
                     f"{fmt_value(d['mnist_index'])} | {st} |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# results and time


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
        stats = {m: cell_stats(cells[(delta, m)]) for m in methods_in(rows) if (delta, m) in cells}
        best = max(s["decided"] for s in stats.values())
        for m, s in stats.items():
            b = "**" if best > 0 and s["decided"] == best else ""
            med = "–" if s["median_time"] is None else f"{s['median_time']:.2f}"
            over = "–" if s["max_over_limit"] is None else f"{s['max_over_limit']:+.2f}"
            lines.append(f"| {delta:g} | {b}{m}{b} | {s['verified']} | {s['falsified']} | {s['unknown']} | "
                         f"{s['error']} | {b}{s['decided']}{b} | {med} | {over} |")
    return lines


def summary_table(rows: list[dict]) -> str:
    """Markdown: one table per (classifier, shift) with a row per delta x method (columns verified |
    falsified | unknown | error | decided | median time (s) | max over-limit (s)), then one table
    per classifier summed over all shifts (per delta x method). In each (classifier, shift, delta)
    (resp. (classifier, delta)) the method(s) deciding the most instances are in bold (name and
    decided count), unless none decides any."""
    rows = list(rows)
    out = []
    for (clf, shift), rs in group_rows(rows, "classifier", "shift").items():
        out += [f"### {clf} / {shift}", "", _SUMMARY_HEAD, *_summary_rows(rs), ""]
    for (clf,), rs in group_rows(rows, "classifier").items():
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
    groups = group_rows(rows, "classifier", "method")
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
