"""``cegarnn repair``: repair a network on a set of inputs with any algorithm of
:data:`cegarnn.repair.REPAIRS` (wiring only: files → arrays → ``REPAIRS[name].run(...)`` → files).

    cegarnn repair MODEL --inputs X.npy|X.npz [--labels Y.npy] [--keep K.npz] [--algorithm finetune]
                         [--option KEY=VALUE ...] [--out DIR] [--time-limit S]
    cegarnn repair --list

:func:`run_repair` is the one function behind this command and the Hydra entry ``cegarnn-repair``
(:mod:`.repair_hydra`). It writes ``DIR/result.json`` (the result's ``to_dict()``) and, when
repaired, ``DIR/repaired.onnx`` (float32). Exit codes: 0 repaired, 1 infeasible or unknown,
2 bad input (one ``error: ...`` line on stderr, no traceback).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Optional

from .exits import EXIT_ERROR, one_line, print_error
from .repair_files import _existing, _failed, load_repair_data, parse_options

EXIT_REPAIRED, EXIT_NOT_REPAIRED = 0, 1
RESULT_FILE, NETWORK_FILE = "result.json", "repaired.onnx"


# --------------------------------------------------------------------------- the one call
def run_repair(model, inputs, labels=None, keep=None, algorithm: str = "finetune", options: Optional[dict] = None,
               out=".", time_limit: Optional[float] = None, echo: Callable[[str], None] = print):
    """Load, repair with ``REPAIRS[algorithm]``, write ``out/result.json`` (and ``out/repaired.onnx``
    when repaired). Returns ``(exit code, result or None)``: 0 repaired, 1 infeasible/unknown,
    2 bad input (one ``error:`` line on stderr) or a failure of the algorithm (its traceback, then
    the ``error:`` line)."""
    from ..network import load_network
    from ..repair import REPAIRED, RepairInputError, get_repair

    opts = dict(options or {})
    try:
        if time_limit is not None:
            t = float(time_limit)
            if not t > 0:
                raise RepairInputError(f"time limit must be > 0 seconds, got {time_limit!r}")
            opts["time_limit"] = t
        algo = get_repair(str(algorithm))
        network = load_network(_existing(model, "model"))
        X, y, keep_pair = load_repair_data(inputs, labels, keep)
        result = algo.run(network, X, y, keep_pair, **opts)
    except (ValueError, OSError) as e:          # RepairInputError, NetworkError: bad input
        print_error(e)
        return EXIT_ERROR, None
    except TypeError as e:
        if "keyword argument" in str(e):          # an option the algorithm does not take
            print_error(f"algorithm {algorithm!r} does not take this option: {one_line(e)}")
            return EXIT_ERROR, None
        return _failed(e), None
    except Exception as e:  # noqa: BLE001 - a failure, not bad input: its traceback, then the error line
        return _failed(e), None

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    res_path, net_path = out_dir / RESULT_FILE, out_dir / NETWORK_FILE
    res_path.write_text(json.dumps(result.to_dict(), indent=1))
    summary = result.summary()
    echo(summary if summary.startswith(f"{algorithm}:") else f"{algorithm}: {summary}")
    echo(f"result: {res_path}")
    repaired = result.status == REPAIRED
    if repaired:
        result.save_onnx(net_path)
        echo(f"repaired network: {net_path}")
    elif net_path.exists():                      # not this run's network
        net_path.unlink()
        echo(f"removed {net_path} of an earlier run")
    return (EXIT_REPAIRED if repaired else EXIT_NOT_REPAIRED), result


# --------------------------------------------------------------------------- the subcommand
def algorithms_text() -> str:
    from ..repair import REPAIRS
    width = max((len(n) for n in REPAIRS), default=0)
    return "\n".join(f"  {n:<{width}}  {REPAIRS[n].summary}" for n in sorted(REPAIRS))


def cmd_repair(a) -> int:
    if a.list:
        print("repair algorithms (--algorithm NAME):")
        print(algorithms_text())
        return EXIT_REPAIRED
    if a.spec is not None:
        return _cmd_spec(a)
    missing = [f for f, v in (("MODEL", a.model), ("--inputs", a.inputs)) if v is None]
    if missing:
        print_error(f"cegarnn repair needs {' and '.join(missing)} (see cegarnn repair --help)")
        return EXIT_ERROR
    options = _options(a)
    if options is None:
        return EXIT_ERROR
    code, _ = run_repair(a.model, a.inputs, a.labels, a.keep, a.algorithm, options, a.out, a.time_limit,
                         echo=lambda s: print(s, flush=True))
    return code


def _options(a):
    """The ``-o KEY=VALUE`` options as a dict, or None after printing the error."""
    try:
        return parse_options(a.option)
    except ValueError as e:
        print_error(e)
        return None


def _cmd_spec(a) -> int:
    from .repair_spec import run_spec_repair
    missing = [f for f, v in (("MODEL", a.model), ("--generator", a.generator)) if v is None]
    if missing or a.inputs is not None:
        print_error(f"cegarnn repair --spec needs {' and '.join(missing)}" if missing
                    else "--spec and --inputs exclude each other: repair generative problems or given inputs")
        return EXIT_ERROR
    options = _options(a)
    if options is None:
        return EXIT_ERROR
    code, _ = run_spec_repair(a.model, a.spec, a.generator, a.prior, a.delta, a.keep, options, a.out,
                              a.time_limit, echo=lambda s: print(s, flush=True), validation=a.validation)
    return code


def add_parser(sub, listing: bool = True) -> argparse.ArgumentParser:
    """Register ``repair`` on the subparsers ``sub`` of the ``cegarnn`` command (``listing``: name
    the registered algorithms in its help, which imports them)."""
    r = sub.add_parser(
        "repair", help="repair a network so that given inputs get their labels (cegarnn.repair)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Change the network so that every input gets its label; check it on the float32 export.\n"
                    "With --spec: repair until every generative problem is verified (exit 0 all verified).\n"
                    "Writes OUT/result.json and, when repaired, OUT/repaired.onnx (float32).\n"
                    "Exit codes: 0 repaired, 1 infeasible or unknown, 2 bad input.",
        epilog="algorithms:\n" + (algorithms_text() if listing else "  (cegarnn repair --list)") +
               "\n\nfinetune options (--option KEY=VALUE, values in JSON): layer=-1 norm=linf|l1 "
               "tie_break=l1|linf|keep\n  margin=0.001 bound=0.5 keep_mode=hard|hinge|count keep_margin=0 "
               "train_bias=true backend=highs")
    r.add_argument("model", nargs="?", help="the network: .onnx, .onnx.gz, .pt or .pth")
    r.add_argument("--inputs", help="X.npz with arrays x (or inputs) and y (or labels), or X.npy with --labels")
    r.add_argument("--labels", help="Y.npy: one integer label per input (overrides the npz's y)")
    r.add_argument("--keep", help="K.npz with arrays x and y: inputs whose labels must be kept")
    r.add_argument("--algorithm", default="finetune", help="a name of cegarnn.repair.REPAIRS (default finetune)")
    r.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="algorithm option, repeatable, e.g. -o layer=-1 -o norm=l1")
    r.add_argument("--out", default="repair_out", help="output directory (default repair_out)")
    r.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="seconds for the whole repair (the algorithm's time_limit option)")
    r.add_argument("--spec", help="SPEC.npz of generative problems (x, y, latent_lower, latent_upper): repair "
                                  "until C(G(x, z)) keeps y on every latent box (docs/REPAIR.md); needs --generator")
    r.add_argument("--generator", help="with --spec: the generator G([x, z]) (.onnx or .pt)")
    r.add_argument("--prior", help="with --spec without latent boxes: x -> (mu, log sigma^2)")
    r.add_argument("--delta", type=float, default=None, help="with --prior: the box mu ± delta·sigma")
    r.add_argument("--validation", help="with --spec: V.npz with x and y, clean data whose accuracy is reported "
                                        "(and bounded by -o max_accuracy_drop=0.01)")
    r.add_argument("--list", action="store_true", help="list the repair algorithms and exit")
    r.set_defaults(func=cmd_repair)
    return r


__all__ = ["run_repair", "load_repair_data", "parse_options", "add_parser", "cmd_repair"]
