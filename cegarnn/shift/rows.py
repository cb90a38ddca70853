"""``rows.csv`` of the distribution-shift sweep: its schema, reading the rows (and the
``counterexamples.npz`` beside them) back, their order, and the tidy CSV of a whole sweep.

A Hydra multirun (``cegarnn-verify -m experiment=shift_sweep``) leaves, in each job directory
below the sweep root, a ``rows.csv`` (one row per image, columns ``COLUMNS``, written by
``cegarnn.shift.sweep``) and, if the job falsified an image, a ``counterexamples.npz``.
"""
from __future__ import annotations

import csv
import logging
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from ..verifier.methods import METHODS
from ..verifier.result import Verdict

log = logging.getLogger(__name__)

COLUMNS = ("shift", "classifier", "delta", "method", "image", "mnist_index", "label", "status", "reason",
           "time", "time_limit", "iterations", "breakpoints", "binaries", "boxes", "solver_calls",
           "time_attack", "time_bounds", "time_encode", "time_solver", "found_by", "cex_margin", "cex_pred")
ERROR = "error"                # the status of an image whose run raised (the exception is the reason)
STATUSES = (*(v.value for v in Verdict), ERROR)
DEFINITIVE = (Verdict.VERIFIED.value, Verdict.FALSIFIED.value)
METHOD_ORDER = tuple(METHODS)  # the order of tables, plots and the tidy CSV
KEY = ("shift", "classifier", "delta", "method", "image")
INSTANCE = ("shift", "classifier", "delta", "image")

_STR = ("shift", "classifier", "method", "status", "reason", "found_by")
_INT = ("image", "mnist_index", "label", "iterations", "breakpoints", "binaries", "boxes", "solver_calls",
        "cex_pred")
_FLOAT = ("delta", "time", "time_limit", "time_attack", "time_bounds", "time_encode", "time_solver", "cex_margin")
_REQUIRED = ("shift", "classifier", "delta", "method", "image", "status")
_CEX_ARRAYS = ("image", "label", "pred", "margin", "x", "shifted", "z", "z_units")
_CEX_SCALARS = ("shift", "classifier", "method", "delta")

PathLike = Union[str, Path]


def fmt_value(v) -> str:
    """A value as written to ``rows.csv``: blank for None, floats with 6 significant digits."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


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


def collect_with_sources(roots) -> tuple[list[dict], list[Path], int]:
    """``collect``'s rows, the ``rows.csv`` files read, and the number of duplicate rows dropped."""
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
    return collect_with_sources(roots)[0]


# ----------------------------------------------------------------------------------------------
# counterexamples.npz


def expand_npz(d, source: str = "") -> list[dict]:
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
        return expand_npz(z, str(path))


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


# ----------------------------------------------------------------------------------------------
# ordering, grouping and the tidy CSV


def method_rank(method: str) -> tuple:
    """Sort key of a method: the order of ``cegarnn.verifier`` METHODS (cegar, lp, milp-fixed, crown,
    bab-crown, marabou), then others A-Z."""
    return (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)


def _row_order(r: dict) -> tuple:
    return (r["classifier"], r["shift"], r["delta"], method_rank(r["method"]), r["image"])


def methods_in(rows) -> list[str]:
    """The methods of ``rows``, in ``method_rank`` order."""
    return sorted({r["method"] for r in rows}, key=method_rank)


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
            w.writerow([fmt_value(r.get(c)) for c in COLUMNS])
    return path


def group_rows(rows, *cols) -> dict:
    """{values of ``cols``: rows with them}, sorted by key."""
    g = defaultdict(list)
    for r in rows:
        g[tuple(r[c] for c in cols)].append(r)
    return dict(sorted(g.items()))
