"""Compare results CSVs of several tools (VNN-COMP columns); flag contradictory definitive answers.

Spellings: ``holds``/``unsat`` (any case) = verified; ``violated``/``sat`` = falsified; everything
else (timeouts, errors, unknown, empty) = unsolved. Instances are matched by (network basename,
property basename). The first file is the reference: counts are over its instances unless
``union`` is set.
"""
from __future__ import annotations

from pathlib import Path

from .runner import read_results

VERIFIED, FALSIFIED, UNSOLVED, MISSING = "verified", "falsified", "unsolved", "missing"
_MAP = {"holds": VERIFIED, "unsat": VERIFIED, "violated": FALSIFIED, "sat": FALSIFIED}


def category(result: str) -> str:
    return _MAP.get(str(result).strip().lower(), UNSOLVED)


def _base(p: str) -> str:
    return p.replace("\\", "/").rstrip("/").split("/")[-1]


def load_tool(path) -> dict:
    """{(network basename, property basename): (category, raw result, run seconds)}."""
    out = {}
    for row in read_results(path):
        out[(_base(row[1]), _base(row[2]))] = (category(row[4]), row[4], row[5] if len(row) > 5 else "")
    return out


def compare(paths, union: bool = False, names=None):
    """Returns ``(tools, keys, counts, disagreements)``: ``counts[tool] = {category: n}``;
    ``disagreements``: list of ``(key, {tool: (category, raw)})`` where one tool says verified and
    another falsified."""
    paths = [Path(p) for p in paths]
    names = list(names) if names else []
    tools = {}
    for k, p in enumerate(paths):
        name = names[k] if k < len(names) else p.stem
        while name in tools:
            name += "'"
        tools[name] = load_tool(p)
    order = list(tools)
    if union:
        keys = sorted(set().union(*[set(t) for t in tools.values()]))
    else:
        keys = sorted(tools[order[0]])
    counts = {}
    for name, res in tools.items():
        c = {VERIFIED: 0, FALSIFIED: 0, UNSOLVED: 0, MISSING: 0}
        for key in keys:
            c[res[key][0] if key in res else MISSING] += 1
        counts[name] = c
    disagreements = []
    for key in keys:
        answers = {n: tools[n][key][:2] for n in order if key in tools[n] and tools[n][key][0] != UNSOLVED}
        if len({a[0] for a in answers.values()}) > 1:
            disagreements.append((key, answers))
    return order, keys, counts, disagreements


def report(paths, union: bool = False, echo=print) -> int:
    """Print the comparison; returns the number of disagreements."""
    order, keys, counts, dis = compare(paths, union=union)
    w = max([len(n) for n in order] + [4])
    echo(f"{len(keys)} instances ({'union of all files' if union else 'those of ' + str(paths[0])})")
    echo(f"{'tool':<{w}} {'verified':>8} {'falsified':>9} {'solved':>6} {'unsolved':>8} {'missing':>7}")
    for n in order:
        c = counts[n]
        echo(f"{n:<{w}} {c[VERIFIED]:>8} {c[FALSIFIED]:>9} {c[VERIFIED] + c[FALSIFIED]:>6} "
             f"{c[UNSOLVED]:>8} {c[MISSING]:>7}")
    if dis:
        echo("")
        for (net, prop), answers in dis:
            parts = ", ".join(f"{n}={cat} ({raw})" for n, (cat, raw) in answers.items())
            echo(f"!!! DISAGREEMENT on {net} {prop}: {parts}")
        echo(f"!!! {len(dis)} DISAGREEMENT(S): at least one tool is unsound on these instances")
    else:
        echo("no disagreements between definitive answers")
    return len(dis)
