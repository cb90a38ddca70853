"""``cegarnn invariance``: any question of :data:`cegarnn.invariance.PROBLEMS` on one or two models
(wiring only: files → arrays → ``run_problem(...)`` → ``result.json``).

    cegarnn invariance PROBLEM MODEL [MODEL2] --center C --radius R [--index I] [--domain LO,HI]
                       [--option KEY=VALUE ...] [--time-limit S] [--out DIR]
    cegarnn invariance --list

``C``: comma-separated numbers, a ``.npy`` array (one centre, or a row chosen by ``--index``) or an
``.npz`` with an array ``x`` (or ``inputs``/``images``) and ``--index``. :func:`run_invariance` is
the one function behind this command and the Hydra entry ``cegarnn-invariance``
(:mod:`.invariance_hydra`). Exit codes: 0 proved or refuted, 1 unknown, 2 bad input (one
``error: ...`` line on stderr, no traceback).
"""
from __future__ import annotations

import argparse
import json
import traceback
from pathlib import Path
from typing import Callable, Optional

from .exits import EXIT_DEFINITIVE, EXIT_ERROR, EXIT_UNKNOWN, one_line, print_error
from .repair import parse_options

RESULT_FILE = "result.json"
CENTER_KEYS = ("x", "inputs", "images")


def load_center(spec, index: Optional[int] = None):
    """A centre from comma-separated numbers, a ``.npy`` file or an ``.npz`` file (module
    docstring); images are flattened. Raises ``InvarianceInputError``."""
    import numpy as np

    from ..invariance import InvarianceInputError
    s = str(spec)
    if s.endswith((".npy", ".npz")):
        p = Path(s)
        if not p.is_file():
            raise InvarianceInputError(f"centre file not found: {s}")
        try:
            data = np.load(p, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise InvarianceInputError(f"centre file {s} cannot be read by numpy: {one_line(e)}") from None
        if not isinstance(data, np.ndarray):
            with data:
                key = next((k for k in CENTER_KEYS if k in data.files), None)
                if key is None:
                    raise InvarianceInputError(f"{s} has no array {' or '.join(CENTER_KEYS)}")
                data = data[key]
            if index is None:
                raise InvarianceInputError(f"{s} holds {data.shape[0]} inputs: choose one with --index")
        if index is not None:
            if not 0 <= index < data.shape[0]:
                raise InvarianceInputError(f"--index {index} out of range 0..{data.shape[0] - 1}")
            data = data[index]
        return np.asarray(data, dtype=np.float64).reshape(-1)
    try:
        return np.array([float(v) for v in s.split(",")])
    except ValueError:
        raise InvarianceInputError(f"centre {s!r} is neither a .npy/.npz file nor comma-separated numbers") from None


def parse_domain(spec):
    """``"LO,HI"`` → ``(LO, HI)`` (the same for every coordinate); None stays None."""
    from ..invariance import InvarianceInputError
    if spec is None:
        return None
    try:
        lo, hi = (float(v) for v in str(spec).split(","))
    except ValueError:
        raise InvarianceInputError(f"domain {spec!r} must be LO,HI") from None
    return lo, hi


def run_invariance(problem: str, models: list, center, radius, index=None, domain=None,
                   options: Optional[dict] = None, out=".", time_limit: Optional[float] = None,
                   echo: Callable[[str], None] = print):
    """Load, run ``PROBLEMS[problem]``, write ``out/result.json``. Returns ``(exit code, result or
    None)``: 0 proved/refuted, 1 unknown, 2 bad input (one ``error:`` line) or a failure (its
    traceback, then the ``error:`` line)."""
    import numpy as np

    from ..invariance import run_problem
    opts = dict(options or {})
    try:
        c = load_center(center, index)
        dom = parse_domain(domain)
        if dom is not None:
            dom = (np.full(c.shape, dom[0]), np.full(c.shape, dom[1]))
        if time_limit is not None:
            opts["time_limit"] = float(time_limit)
        result = run_problem(problem, list(models), c, float(radius), dom, **opts)
    except (ValueError, OSError) as e:          # InvarianceInputError, NetworkError, BoxError: bad input
        print_error(e)
        return EXIT_ERROR, None
    except TypeError as e:
        if "keyword argument" in str(e):
            print_error(f"problem {problem!r} does not take this option: {one_line(e)}")
            return EXIT_ERROR, None
        traceback.print_exc()
        print_error(f"invariance failed: {type(e).__name__}: {one_line(e)}")
        return EXIT_ERROR, None
    except Exception as e:  # noqa: BLE001 - a failure, not bad input: its traceback, then the error line
        traceback.print_exc()
        print_error(f"invariance failed: {type(e).__name__}: {one_line(e)}")
        return EXIT_ERROR, None
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULT_FILE
    path.write_text(json.dumps(result.to_dict(), indent=1))
    echo(result.summary())
    echo(f"result: {path}")
    return (EXIT_DEFINITIVE if result.decided else EXIT_UNKNOWN), result


def problems_text() -> str:
    from ..invariance import PROBLEMS
    width = max(len(n) for n in PROBLEMS)
    return "\n".join(f"  {n:<{width}}  ({p.n_networks} model{'s' if p.n_networks > 1 else ''}) {p.summary}"
                     for n, p in PROBLEMS.items())


def cmd_invariance(a) -> int:
    if a.list:
        print("invariance problems (PROBLEM):")
        print(problems_text())
        return EXIT_DEFINITIVE
    missing = [f for f, v in (("PROBLEM", a.problem), ("MODEL", a.models or None), ("--center", a.center),
                              ("--radius", a.radius)) if not v]
    if missing:
        print_error(f"cegarnn invariance needs {' and '.join(missing)} (see cegarnn invariance --help)")
        return EXIT_ERROR
    try:
        options = parse_options(a.option)
    except ValueError as e:
        print_error(e)
        return EXIT_ERROR
    code, _ = run_invariance(a.problem, a.models, a.center, a.radius, a.index, a.domain, options, a.out,
                             a.time_limit, echo=lambda s: print(s, flush=True))
    return code


def add_parser(sub, listing: bool = True) -> argparse.ArgumentParser:
    """Register ``invariance`` on the subparsers ``sub`` of the ``cegarnn`` command (``listing``:
    name the registered problems in its help, which imports them)."""
    r = sub.add_parser(
        "invariance", help="invertibility, certified radius, network matching (cegarnn.invariance)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Two copies of a network in one MILP. Writes OUT/result.json.\n"
                    "Exit codes: 0 proved or refuted, 1 unknown, 2 bad input.",
        epilog="problems:\n" + (problems_text() if listing else "  (cegarnn invariance --list)") +
               "\n\noptions (--option KEY=VALUE, values in JSON): tau=0 tol=0.0001 norm=linf|l1 threshold=0.5\n"
               "  bounds=crown|interval|lp backend=highs|pulp top_k=4 max_rounds=30 confirm_tol=1e-8 "
               "reference_tol=1e-4\n  split=true coupling=none|bounds|signs; radius: kind=invertibility|"
               "pseudo-invertibility r0=... query_time_limit=...")
    r.add_argument("problem", nargs="?", help="a name of cegarnn.invariance.PROBLEMS (see --list)")
    r.add_argument("models", nargs="*", help="the network(s): .onnx, .onnx.gz, .pt or .pth")
    r.add_argument("--center", help="comma-separated numbers (negative first value: --center=-1,2), X.npy, or X.npz with --index")
    r.add_argument("--index", type=int, default=None, help="row of the centre file")
    r.add_argument("--radius", type=float, help="L∞ radius of the ball (radius: the largest radius tried)")
    r.add_argument("--domain", default=None, metavar="LO,HI", help="intersect the ball with [LO, HI]^n, e.g. 0,1 (negative: --domain=-1,1)")
    r.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="problem option, repeatable")
    r.add_argument("--time-limit", type=float, default=None, metavar="S", help="seconds for the whole question")
    r.add_argument("--out", default="invariance_out", help="output directory (default invariance_out)")
    r.add_argument("--list", action="store_true", help="list the problems and exit")
    r.set_defaults(func=cmd_invariance)
    return r


__all__ = ["add_parser", "cmd_invariance", "load_center", "parse_domain", "run_invariance"]
