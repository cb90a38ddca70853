"""Report of a distribution-shift sweep (the ``cegarnn report`` command): tables and plots from the
``rows.csv`` of every job below a sweep root::

    cegarnn report multirun/shift_sweep/<date> --out experiments/results/shift_sweep

The parts, each usable alone (and re-exported here): ``rows`` (``collect`` reads and types every
``rows.csv``, ``collect_counterexamples`` the ``counterexamples.npz``; ``write_csv`` the tidy CSV),
``tables`` (``summary_table``, ``disagreements``, ``time_breakdown_table``) and ``figures``
(``cactus_plot``, ``counterexample_figure``). ``write_report`` does all of it for a sweep root.
Only the standard library, numpy and matplotlib are used.
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from .figures import cactus_plot, counterexample_figure, pick_counterexamples
from .rows import (COLUMNS, INSTANCE, PathLike, collect, collect_counterexamples, collect_with_sources,
                   group_rows, load_counterexamples, method_rank, methods_in, read_rows, write_csv)
from .tables import (cell_stats, disagreements, disagreements_markdown, summary_table, time_breakdown,
                     time_breakdown_table)

__all__ = ["write_report", "COLUMNS", "collect", "read_rows", "collect_counterexamples", "load_counterexamples",
           "write_csv", "method_rank", "cell_stats", "summary_table", "disagreements", "disagreements_markdown",
           "time_breakdown", "time_breakdown_table", "cactus_plot", "counterexample_figure",
           "pick_counterexamples"]


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
    rows, paths, dup = collect_with_sources(roots)
    cexs = collect_counterexamples(roots)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [write_csv(rows, out / "results.csv")]
    dis = disagreements(rows)

    n_inst = len({tuple(r[c] for c in INSTANCE) for r in rows})
    md = [f"# {title}", "",
          f"{len(rows)} rows: {n_inst} instances (shift, classifier, delta, image) x {len(methods_in(rows))} "
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
    for (clf, shift), rs in group_rows(rows, "classifier", "shift").items():
        files.append(cactus_plot(rs, out / f"cactus_{_slug(clf)}_{_slug(shift)}.png",
                                 title=f"{title}: {clf}, {shift}"))
        if cex_groups.get((clf, shift)):
            files.append(counterexample_figure(pick_counterexamples(cex_groups[(clf, shift)], max_examples),
                                               out / f"counterexamples_{_slug(clf)}_{_slug(shift)}.png"))
    return dict(n_rows=len(rows), n_files=len(paths), n_duplicates=dup, n_disagreements=len(dis),
                n_counterexamples=len(cexs), disagreements=dis, files=[str(f) for f in files])
