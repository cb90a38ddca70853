"""The ``cegarnn`` command: VNN-COMP style instances, benchmark runs, result comparison and the
report of a distribution-shift sweep.

    cegarnn vnnlib NETWORK.onnx PROPERTY.vnnlib [--timeout S] [--out RESULT] [--method M] [--seed N]
    cegarnn bench INSTANCES.csv [--out results.csv] [--workers N | --ray auto|ADDRESS] [--timeout-scale F] [--resume] [--limit N]
    cegarnn compare results.csv OTHER_TOOL.csv ...
    cegarnn report SWEEP_ROOT [SWEEP_ROOT ...] --out DIR [--title T]
    cegarnn repair MODEL --inputs X.npz [--algorithm A] [--option K=V ...] [--out DIR]   (see cli/repair.py)
    cegarnn invariance PROBLEM MODEL [MODEL2] --center C --radius R [--option K=V ...]   (see cli/invariance.py)

Exit codes (``cli.exits``) of ``vnnlib``: 0 sat/unsat, 1 timeout/unknown, 2 error. ``compare``
exits 1 when two tools disagree on a definitive answer. ``report`` (tables and plots from every
``rows.csv`` below the roots, see ``cegarnn.shift.report``) exits 1 when two methods disagree on a
definitive answer and 2 on bad input. ``python -m cegarnn.cli ...`` runs the same command.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

from .exits import (EXIT_DEFINITIVE, EXIT_DISAGREEMENT, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_UNKNOWN, one_line,
                    print_error)

from ..verifier.methods import DEFAULT_METHOD, METHODS, check_method


def _parse_options(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"verifier option {item!r} must be KEY=VALUE")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip()
        if v in ("True", "False"):
            out[k] = v == "True"
            continue
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out


def _set_memory_limit(gb: float):
    import resource
    limit = int(gb * 1024 ** 3)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def cmd_vnnlib(a) -> int:
    t0 = time.perf_counter()
    if a.log_level:                 # cegarnn's own loggers only
        import logging
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(created).6f %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("cegarnn")
        logger.setLevel(a.log_level.upper())
        logger.addHandler(handler)
    from ..vnncomp.runner import InstanceResult, format_result, solve_instance, write_result

    if a.memory_gb:
        _set_memory_limit(a.memory_gb)

    def finish(res: InstanceResult) -> int:
        text = format_result(res.result, res.x, res.y, res.reason)
        if a.out:
            write_result(a.out, res.result, res.x, res.y, res.reason)
        if a.stats:
            Path(a.stats).write_text(json.dumps(res.to_json()))
        sys.stdout.write(text)        # for non-sat results the reason is the comment line
        sys.stdout.flush()
        return {"sat": EXIT_DEFINITIVE, "unsat": EXIT_DEFINITIVE, "error": EXIT_ERROR}.get(res.result, EXIT_UNKNOWN)

    from ..bounds.box import BoxError
    from ..network import NetworkError
    from ..specs.property import SpecError
    try:
        options = _parse_options(a.option)
        if a.seed is not None:
            options["seed"] = a.seed
        from ..verifier.options import Options
        Options.from_mapping(options)          # OptionError (a ValueError) naming an unknown option
        check_method(a.method)                 # ValueError listing the methods
        if not a.timeout > 0:
            raise ValueError("--timeout must be > 0 seconds")
        from ..specs.vnnlib_problems import vnnlib_problems
        problems = vnnlib_problems(a.network, a.property)
        if a.proof_covers == "ir":               # proofs about the float64 IR only (no padding)
            for p in problems:
                p.precision = None
    except (NetworkError, SpecError, BoxError, OSError, ValueError, TypeError) as e:
        return finish(InstanceResult("error", one_line(e), prepare_seconds=time.perf_counter() - t0))
    except MemoryError:
        return finish(InstanceResult("error", "out of memory while loading the instance",
                                     prepare_seconds=time.perf_counter() - t0))
    except Exception as e:  # noqa: BLE001 - an instance must end in a result file
        traceback.print_exc()
        return finish(InstanceResult("error", f"{type(e).__name__}: {one_line(e)}",
                                     prepare_seconds=time.perf_counter() - t0))
    prep = time.perf_counter() - t0
    t1 = time.perf_counter()
    try:
        res = solve_instance(problems, a.timeout, a.method, **options)
    except MemoryError:
        res = InstanceResult("error", "out of memory" + (f" (limit {a.memory_gb:g} GB)" if a.memory_gb else ""))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        res = InstanceResult("error", f"verifier failed: {type(e).__name__}: {one_line(e)}")
    if res.result != "error":
        # IR vs onnxruntime on each box (ConversionMismatch -> error) before any answer is reported;
        # after the solve, so that a run which confirms no candidate imports onnxruntime only here
        try:
            from ..network.reference import check_problem_reference
            check_problem_reference(problems)
        except (NetworkError, OSError, ValueError) as e:
            res = InstanceResult("error", one_line(e))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            res = InstanceResult("error", f"{type(e).__name__}: {one_line(e)}")
    res.prepare_seconds = prep
    res.run_seconds = time.perf_counter() - t1
    return finish(res)


PROOF_COVERS = ("executed", "ir")


def cmd_bench(a) -> int:
    from ..vnncomp.runner import BenchConfig, run_benchmark
    cfg = BenchConfig(out=Path(a.out), workers=a.workers, timeout_scale=a.timeout_scale, method=a.method,
                      resume=a.resume, limit=a.limit, memory_gb=a.memory_gb, grace=a.grace, seed=a.seed,
                      benchmark=a.benchmark, proof_covers=a.proof_covers, options=dict(o.split("=", 1) for o in (a.option or []) if "=" in o))
    echo = lambda s: print(s, flush=True)  # noqa: E731
    try:
        if a.ray:
            from ..vnncomp.ray_runner import RayRunIncomplete, RayUnavailable, run_benchmark_ray
            try:
                run_benchmark_ray(a.instances, cfg, address=a.ray, echo=echo)
            except (RayUnavailable, RayRunIncomplete) as e:
                print_error(e)
                return EXIT_ERROR
        else:
            run_benchmark(a.instances, cfg, echo=echo)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print_error(e)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_DEFINITIVE


def cmd_compare(a) -> int:
    from ..vnncomp.compare import report
    try:
        n = report(a.results, union=a.union)
    except (OSError, ValueError) as e:
        print_error(e)
        return EXIT_ERROR
    return EXIT_DISAGREEMENT if n else EXIT_DEFINITIVE


def cmd_report(a) -> int:
    from ..shift.report import write_report
    try:
        info = write_report(a.roots, a.out, title=a.title)
    except (OSError, ValueError) as e:
        print_error(e)
        return EXIT_ERROR
    dup = f" ({info['n_duplicates']} duplicate(s) dropped)" if info["n_duplicates"] else ""
    print(f"rows: {info['n_rows']} from {info['n_files']} rows.csv file(s){dup}; "
          f"counterexamples: {info['n_counterexamples']}")
    print(f"disagreements: {info['n_disagreements']}")
    for d in info["disagreements"]:
        st = ", ".join(f"{m}={s}" for m, s in d["statuses"].items())
        print(f"!!! DISAGREEMENT {d['classifier']} {d['shift']} delta={d['delta']:g} image {d['image']}: {st}")
    print(f"files ({len(info['files'])}):")
    for f in info["files"]:
        print(f"  {f}")
    return EXIT_DISAGREEMENT if info["n_disagreements"] else EXIT_DEFINITIVE


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The ``cegarnn`` parser. ``command``: the subcommand about to run, when known; the repair and
    invariance registries (listed in their help) are then imported only for those subcommands
    (about 0.1 s of start-up for the others)."""
    methods = ", ".join(METHODS)
    p = argparse.ArgumentParser(prog="cegarnn", description="cegarnn: VNN-COMP style verification commands")
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("vnnlib", help="verify one ONNX network against one VNN-LIB property")
    v.add_argument("network", help=".onnx or .onnx.gz")
    v.add_argument("property", help=".vnnlib or .vnnlib.gz")
    v.add_argument("--timeout", type=float, default=60.0, help="seconds for all input boxes together (default 60)")
    v.add_argument("--out", help="write the VNN-COMP result file here")
    v.add_argument("--stats", help=argparse.SUPPRESS)        # JSON for the benchmark runner
    v.add_argument("--method", default=DEFAULT_METHOD, help=f"one of {methods} (default {DEFAULT_METHOD})")
    v.add_argument("--seed", type=int, default=None)
    v.add_argument("--proof-covers", choices=PROOF_COVERS, default="executed",
                   help="executed (default): unsat covers the ONNX model run by onnxruntime in float32; "
                        "ir: only the float64 network in real arithmetic (like most verifiers)")
    v.add_argument("--memory-gb", type=float, default=None, help="address-space limit for this process")
    v.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="verifier option (fields of cegarnn.verifier.Options), e.g. -o bounds=interval")
    v.add_argument("--log-level", choices=("debug", "info", "warning"), default=None,
                   help="log cegarnn's messages to stderr, each line stamped with its time (debug: e.g. when the "
                        "first bound is done)")
    v.set_defaults(func=cmd_vnnlib)

    b = sub.add_parser("bench", help="run a benchmark (network,property,timeout CSV), one subprocess per instance")
    b.add_argument("instances", help="CSV with rows network,property,timeout (paths relative to it)")
    b.add_argument("--out", default="results.csv", help="results CSV, appended row by row (default results.csv)")
    b.add_argument("--workers", type=int, default=1, help="instances at once on this machine (ignored with --ray)")
    b.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run each instance as a Ray task: auto (the cluster `ray start` runs here), local "
                        "(a Ray instance of this command) or HOST:PORT; needs pip install -e '.[ray]' (make ray)")
    b.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every instance's timeout")
    b.add_argument("--method", default=DEFAULT_METHOD, help=f"one of {methods} (default {DEFAULT_METHOD})")
    b.add_argument("--resume", action="store_true", help="skip instances already in --out")
    b.add_argument("--limit", type=int, default=None, help="only the first N instances")
    b.add_argument("--memory-gb", type=float, default=8.0, help="address-space limit per instance (default 8)")
    b.add_argument("--grace", type=float, default=30.0,
                   help="seconds beyond timeout*scale before an instance is killed (default 30)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--proof-covers", choices=PROOF_COVERS, default="executed", help="passed to vnnlib")
    b.add_argument("--benchmark", default=None, help="benchmark column (default: the CSV's folder name)")
    b.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="verifier option, passed on")
    b.set_defaults(func=cmd_bench)

    c = sub.add_parser("compare", help="compare results CSVs of several tools")
    c.add_argument("results", nargs="+", help="results CSVs; the first one is the reference")
    c.add_argument("--union", action="store_true", help="count over the instances of all files")
    c.set_defaults(func=cmd_compare)

    r = sub.add_parser("report", help="tables and plots of a distribution-shift sweep (rows.csv of every job)")
    r.add_argument("roots", nargs="+", metavar="ROOT", help="sweep root(s); every rows.csv below is read")
    r.add_argument("--out", required=True, help="output directory (results.csv, tables.md, *.png)")
    r.add_argument("--title", default="Distribution-shift experiment", help="title of tables.md and the plots")
    r.set_defaults(func=cmd_report)

    from .repair import add_parser as add_repair_parser
    add_repair_parser(sub, listing=command in (None, "repair"))
    from .invariance import add_parser as add_invariance_parser
    add_invariance_parser(sub, listing=command in (None, "invariance"))
    return p


def main(argv=None) -> int:
    """``cegarnn``: parse ``argv`` (default: the command line), run the subcommand, return its exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    a = build_parser(args[0] if args and not args[0].startswith("-") else None).parse_args(args)
    return a.func(a)
