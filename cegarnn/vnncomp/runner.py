"""Solving VNN-COMP instances, their result files, and the benchmark runner.

Result file (VNN-COMP convention): first line ``unsat`` | ``sat`` | ``timeout`` | ``unknown`` |
``error``; after ``sat`` the counterexample ``((X_0 v)\\n (X_1 v)\\n ... (Y_0 v) ...)``; other
results may be followed by a comment line ``; reason``.

Results CSV (VNN-COMP columns, no header, one row per instance, fsynced as it goes; ``ResultsLog``,
shared with the Ray driver of ``ray_runner``): ``benchmark,network,property,prepare_seconds,result,run_seconds``.

Every instance of a benchmark runs in its own subprocess (``python -m cegarnn.cli vnnlib
...``) in its own session, with an address-space limit set in the child and its time limit enforced
from outside (killed, with its process group, after ``timeout*scale + grace`` seconds), so a crash,
a memory blow-up or a hung solver costs one row, never the run.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..verifier.methods import DEFAULT_METHOD
from ..verifier.result import Reason, Verdict

RESULTS = ("unsat", "sat", "timeout", "unknown", "error")
CSV_COLUMNS = ("benchmark", "network", "property", "prepare_seconds", "result", "run_seconds")


# ===================================================================== one instance
@dataclass
class InstanceResult:
    result: str                          # one of RESULTS
    reason: str = ""
    x: Optional[np.ndarray] = None       # counterexample (full network input) when result == 'sat'
    y: Optional[np.ndarray] = None       # its outputs (onnxruntime when available, else the IR)
    prepare_seconds: float = 0.0
    run_seconds: float = 0.0
    cases: list = field(default_factory=list)   # per input box: (status, reason, seconds, split counts or None)

    def to_json(self) -> dict:
        return {"result": self.result, "reason": self.reason, "prepare_seconds": self.prepare_seconds,
                "run_seconds": self.run_seconds, "cases": self.cases}


def split_counts(res) -> Optional[dict]:
    """The input / neuron split counts of a neuron branch-and-bound run (``cegar``'s neuron policy,
    ``neuron-bab``), None for other runs: what tells a proof by splits from one at the root."""
    from ..verifier.neuron_bab import SUMMARY
    last = res.stats.trajectory[-1] if res.stats.trajectory else None
    if not isinstance(last, dict) or last.get("move") != SUMMARY:
        return None
    out = {k: last.get(k, 0) for k in ("input_splits", "neuron_splits", "segment_splits", "relu_splits",
                                       "lp_calls", "lp_guided_splits")}
    out.update(root_lirpa_alpha=bool(last.get("root_lirpa_alpha")), segment_phase_s=last.get("segment_phase_s"))
    return out


def solve_instance(problems: list, timeout: float, method: str = DEFAULT_METHOD, **options) -> InstanceResult:
    """Solve all input boxes of one instance within ``timeout`` seconds in total.

    ``unsat`` iff every box is verified; ``sat`` as soon as one box is falsified (its confirmed
    counterexample); ``timeout`` when the time ran out first; else ``unknown``.
    """
    from ..verifier import verify

    start = time.perf_counter()
    cases = []
    unknown_reason = ""
    for k, problem in enumerate(problems):
        remaining = timeout - (time.perf_counter() - start)
        if remaining <= 0:
            return InstanceResult("timeout", f"time limit reached before input box {k + 1}/{len(problems)}",
                                  run_seconds=time.perf_counter() - start, cases=cases)
        res = verify(problem, method=method, time_limit=remaining, **options)
        cases.append((res.status, res.reason, round(res.stats.wall_time, 4), split_counts(res)))
        if res.status == Verdict.FALSIFIED:
            c = res.counterexample
            y = c.output_reference if c.output_reference is not None else c.output_ir
            return InstanceResult("sat", res.reason, np.asarray(c.full_input, dtype=np.float64),
                                  np.asarray(y, dtype=np.float64), run_seconds=time.perf_counter() - start,
                                  cases=cases)
        if res.status != Verdict.VERIFIED:
            if res.reason == Reason.TIME_LIMIT or time.perf_counter() - start >= timeout:
                return InstanceResult("timeout", f"input box {k + 1}/{len(problems)}: {res.reason}",
                                      run_seconds=time.perf_counter() - start, cases=cases)
            unknown_reason = unknown_reason or f"input box {k + 1}/{len(problems)}: {res.reason}"
    elapsed = time.perf_counter() - start
    if unknown_reason:
        return InstanceResult("unknown", unknown_reason, run_seconds=elapsed, cases=cases)
    reason = "every input box verified" if problems else "the property is unsatisfiable (no input region)"
    return InstanceResult("unsat", reason, run_seconds=elapsed, cases=cases)


# ===================================================================== result files
def format_result(result: str, x=None, y=None, reason: str = "") -> str:
    """The text of a VNN-COMP result file."""
    if result not in RESULTS:
        raise ValueError(f"unknown result {result!r}; expected one of {', '.join(RESULTS)}")
    lines = [result]
    if result == "sat":
        if x is None or y is None:
            raise ValueError("a 'sat' result needs the counterexample's inputs and outputs")
        entries = [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.asarray(x).reshape(-1))]
        entries += [f"(Y_{i} {float(v)!r})" for i, v in enumerate(np.asarray(y).reshape(-1))]
        lines.append("(" + "\n ".join(entries) + ")")
    elif reason:
        lines.append("; " + " ".join(str(reason).split()))
    return "\n".join(lines) + "\n"


def write_result(path, result: str, x=None, y=None, reason: str = "") -> str:
    text = format_result(result, x, y, reason)
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
    return text


_ENTRY = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")


def read_result(path) -> tuple[str, Optional[np.ndarray], Optional[np.ndarray]]:
    """``(result, x, y)`` from a result file (``x``, ``y`` only for ``sat``). Accepts the other
    spellings of VNN-COMP 2021 tools (``holds``/``violated``) and maps them to unsat/sat."""
    text = Path(path).read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: empty result file")
    head = lines[0].lower()
    head = {"holds": "unsat", "violated": "sat"}.get(head, head)
    if head != "sat":
        return head, None, None
    xs, ys = {}, {}
    for m in _ENTRY.finditer(text):
        (xs if m.group(1) == "X" else ys)[int(m.group(2))] = float(m.group(3))

    def arr(d):
        if sorted(d) != list(range(len(d))):
            raise ValueError(f"{path}: counterexample indices are not 0..n-1")
        return np.array([d[i] for i in range(len(d))])
    return head, arr(xs), arr(ys)


# ===================================================================== instances CSV
@dataclass
class Instance:
    network: str          # as written in the CSV (relative to it)
    property: str
    timeout: float
    network_path: Path
    property_path: Path

    @property
    def key(self) -> tuple[str, str]:
        return (self.network, self.property)

    @property
    def label(self) -> str:
        return f"{Path(self.network).name} {Path(self.property).name}"


def read_instances(csv_path) -> list[Instance]:
    """Rows ``network,property,timeout`` (paths relative to the CSV); a header row is skipped."""
    p = Path(csv_path)
    if not p.is_file():
        raise FileNotFoundError(f"instances file not found: {p}")
    out = []
    with p.open(newline="") as f:
        for lineno, row in enumerate(csv.reader(f), 1):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if len(row) < 3:
                raise ValueError(f"{p}:{lineno}: expected network,property,timeout, got {','.join(row)!r}")
            try:
                timeout = float(row[2])
            except ValueError:
                if not out and lineno == 1:
                    continue        # header
                raise ValueError(f"{p}:{lineno}: timeout {row[2]!r} is not a number") from None
            out.append(Instance(row[0], row[1], timeout, (p.parent / row[0]).resolve(),
                                (p.parent / row[1]).resolve()))
    return out


def read_results(csv_path) -> list[list[str]]:
    """Rows of a results CSV (VNN-COMP columns; header and blank lines skipped; CRLF tolerated)."""
    p = Path(csv_path)
    rows = []
    with p.open(newline="") as f:
        for row in csv.reader(f):
            row = [c.strip() for c in row]
            if len(row) < 5 or (row[0] == "benchmark" and row[4] == "result"):
                continue
            rows.append(row)
    return rows


# ===================================================================== children
def kill_group(proc: subprocess.Popen, term_wait: float = 2.0):
    """SIGTERM the child's process group, then SIGKILL if it is still there."""
    for sig, wait in ((signal.SIGTERM, term_wait), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


class _Children:
    """Running children, so an interrupted run can kill them all (each by its own id)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.procs: set = set()
        self.stopping = False

    def kill_all(self):
        with self.lock:
            self.stopping = True
            procs = list(self.procs)
        for p in procs:
            kill_group(p, term_wait=0.5)


def run_child(cmd: list, limit: float, log_path, env=None, children: Optional[_Children] = None,
              preexec_fn=None) -> tuple[Optional[int], float, bool]:
    """Run ``cmd`` in its own session with stdout/stderr to ``log_path``; kill it (whole process
    group) after ``limit`` seconds. Returns ``(returncode, wall_seconds, killed)``. ``preexec_fn``
    runs in the child before ``cmd`` (e.g. to make it die with its parent)."""
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, preexec_fn=preexec_fn)
        if children is not None:
            with children.lock:
                if children.stopping:
                    kill_group(proc, 0.1)
                children.procs.add(proc)
        killed = False
        try:
            rc = proc.wait(timeout=max(limit, 0.0))
        except subprocess.TimeoutExpired:
            killed = True
            kill_group(proc)
            rc = proc.returncode
        finally:
            if children is not None:
                with children.lock:
                    children.procs.discard(proc)
    return rc, time.perf_counter() - start, killed


def _log_tail(path, n: int = 1) -> str:
    try:
        lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def _slug(inst: Instance) -> str:
    s = f"{Path(inst.network).name}__{Path(inst.property).name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)


# ===================================================================== the benchmark runner
@dataclass
class BenchConfig:
    out: Path
    workers: int = 1
    timeout_scale: float = 1.0
    method: str = DEFAULT_METHOD
    resume: bool = False
    limit: Optional[int] = None
    memory_gb: float = 8.0
    grace: float = 30.0
    seed: int = 0
    benchmark: Optional[str] = None
    proof_covers: str = "executed"   # or "ir": see `cegarnn vnnlib --proof-covers`
    options: dict = field(default_factory=dict)
    python: str = sys.executable


def child_command(inst: Instance, cfg: BenchConfig, result_file: Path, stats_file: Path) -> list[str]:
    cmd = [cfg.python, "-m", "cegarnn.cli", "vnnlib", str(inst.network_path), str(inst.property_path),
           "--timeout", repr(inst.timeout * cfg.timeout_scale), "--out", str(result_file),
           "--stats", str(stats_file), "--method", cfg.method, "--seed", str(cfg.seed),
           "--proof-covers", cfg.proof_covers]
    if cfg.memory_gb and cfg.memory_gb > 0:
        cmd += ["--memory-gb", repr(float(cfg.memory_gb))]
    for k, v in cfg.options.items():
        cmd += ["-o", f"{k}={v}"]
    return cmd


def _child_env(workers: int) -> dict:
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, threads)
    return env


def run_instance_subprocess(inst: Instance, cfg: BenchConfig, workdir: Path,
                            children: Optional[_Children] = None, preexec_fn=None) -> tuple[str, float, float, str]:
    """Run one instance in a child; ``(result, prepare_seconds, run_seconds, reason)``."""
    slug = _slug(inst)
    result_file, stats_file, log_file = (workdir / f"{slug}.result", workdir / f"{slug}.json",
                                         workdir / f"{slug}.log")
    for f in (result_file, stats_file):
        f.unlink(missing_ok=True)
    budget = inst.timeout * cfg.timeout_scale
    rc, wall, killed = run_child(child_command(inst, cfg, result_file, stats_file), budget + cfg.grace,
                                 log_file, env=_child_env(cfg.workers), children=children, preexec_fn=preexec_fn)
    stats = None
    if stats_file.is_file():
        try:
            stats = json.loads(stats_file.read_text())
        except (OSError, ValueError):
            stats = None
    if killed:
        prep = float(stats["prepare_seconds"]) if stats else 0.0
        reason = f"killed after {wall:.1f}s (limit {budget:g}s + {cfg.grace:g}s grace)"
        write_result(result_file, "timeout", reason=reason)
        return "timeout", prep, wall, reason
    if stats is None or stats.get("result") not in RESULTS:
        if rc is not None and rc < 0:
            try:
                why = f"child killed by signal {signal.Signals(-rc).name}"
            except ValueError:
                why = f"child killed by signal {-rc}"
        else:
            why = f"child exited with code {rc} without a result"
        tail = _log_tail(log_file)
        reason = why + (f": {tail}" if tail else "")
        write_result(result_file, "error", reason=reason)
        return "error", 0.0, wall, reason
    return stats["result"], float(stats.get("prepare_seconds", 0.0)), float(stats.get("run_seconds", wall)), \
        str(stats.get("reason", ""))


def _counts(results) -> dict:
    c = {r: 0 for r in RESULTS}
    for r in results:
        c[r if r in c else "unknown"] += 1
    return c


def summarize(rows: list[list[str]]) -> str:
    """A summary table of results rows (VNN-COMP columns)."""
    res = [r[4] for r in rows]
    c = _counts(res)
    times_all = [float(r[5]) for r in rows if _isnum(r[5])]
    times_solved = [float(r[5]) for r in rows if r[4] in ("unsat", "sat") and _isnum(r[5])]
    med = lambda ts: f"{statistics.median(ts):.2f}s" if ts else "-"  # noqa: E731
    head = f"{'instances':>9} {'verified':>8} {'falsified':>9} {'unknown':>7} {'timeout':>7} {'error':>5} " \
           f"{'median time (solved)':>20} {'median time (all)':>17}"
    line = f"{len(rows):>9} {c['unsat']:>8} {c['sat']:>9} {c['unknown']:>7} {c['timeout']:>7} {c['error']:>5} " \
           f"{med(times_solved):>20} {med(times_all):>17}"
    return head + "\n" + line


def _isnum(s) -> bool:
    try:
        return math.isfinite(float(s))
    except (TypeError, ValueError):
        return False


class ResultsLog:
    """The results CSV of one run. On ``resume`` the rows already there are read back (a last row
    cut short by a crash is dropped) and their instances are left out of ``todo``; ``record`` appends one row (a single write, flushed and
    fsynced before it returns, so a crash of the driver loses no finished row) and prints the
    progress line. Thread-safe; shared by the local runner and the Ray driver."""

    def __init__(self, out, instances: list, benchmark: str, resume: bool = False, echo=print):
        self.out, self.instances, self.benchmark, self.echo = Path(out), instances, benchmark, echo
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict = {}
        if self.out.is_file():
            if not resume:
                raise FileExistsError(f"{self.out} exists: pass --resume to skip its finished instances, "
                                      f"or choose another --out")
            data = self.out.read_bytes()
            if data and not data.endswith(b"\n"):     # a row cut by a crash mid-write: its instance reruns
                with self.out.open("r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)
            for row in read_results(self.out):
                self.done[(row[1], row[2])] = row
        self.todo = [i for i in instances if i.key not in self.done]
        self.finished = len(instances) - len(self.todo)
        if self.done:
            echo(f"resume: {self.finished} of {len(instances)} instances already in {self.out}")
        self.tally = _counts(self.done[i.key][4] for i in instances if i.key in self.done)
        self._lock = threading.Lock()

    def record(self, inst: Instance, result: str, prep: float, run: float, reason: str = "") -> list[str]:
        """Append (durably) and return the row of a finished instance; print the progress line."""
        row = [self.benchmark, inst.network, inst.property, f"{prep:.6f}", result, f"{run:.6f}"]
        with self._lock:
            with self.out.open("a", newline="") as f:
                csv.writer(f, lineterminator="\n").writerow(row)
                f.flush()
                os.fsync(f.fileno())
            self.done[inst.key] = row
            self.tally[result if result in self.tally else "unknown"] += 1
            self.finished += 1
            solved = self.tally["unsat"] + self.tally["sat"]
            self.echo(f"[{self.finished}/{len(self.instances)}] {inst.label}: {result} in {run:.1f}s"
                      f"{' (' + reason + ')' if result in ('error', 'unknown', 'timeout') and reason else ''}"
                      f" | solved {solved} (verified {self.tally['unsat']}, falsified {self.tally['sat']}),"
                      f" unsolved {self.finished - solved}")
        return row

    def rows(self) -> list[list[str]]:
        """The rows of this run's instances that are in the file, in the instances' order."""
        return [self.done[i.key] for i in self.instances if i.key in self.done]


def prepare_run(instances_csv, cfg: BenchConfig, echo=print) -> tuple[ResultsLog, Path]:
    """The instances of ``instances_csv`` (the first ``cfg.limit``) as a ``ResultsLog`` on
    ``cfg.out``, and the directory of per-instance result files and logs (``<out>.d``)."""
    instances_csv = Path(instances_csv)
    instances = read_instances(instances_csv)
    if cfg.limit is not None:
        instances = instances[: max(0, cfg.limit)]
    benchmark = cfg.benchmark or instances_csv.parent.name or instances_csv.stem
    log = ResultsLog(cfg.out, instances, benchmark, resume=cfg.resume, echo=echo)
    workdir = log.out.with_name(log.out.name + ".d")
    workdir.mkdir(parents=True, exist_ok=True)
    return log, workdir


def run_benchmark(instances_csv, cfg: BenchConfig, echo=print) -> list[list[str]]:
    """Run every instance of ``instances_csv``; append rows to ``cfg.out``; return this benchmark's rows."""
    log, workdir = prepare_run(instances_csv, cfg, echo)
    children = _Children()

    def job(inst: Instance):
        if children.stopping:
            return
        try:
            result, prep, run, reason = run_instance_subprocess(inst, cfg, workdir, children)
        except Exception as e:  # noqa: BLE001 - the runner must go on (e.g. cannot start the child)
            result, prep, run, reason = "error", 0.0, 0.0, f"runner: {type(e).__name__}: {e}"
        if children.stopping:
            return
        log.record(inst, result, prep, run, reason)

    try:
        if cfg.workers <= 1:
            for inst in log.todo:
                job(inst)
        else:
            with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
                futures = [pool.submit(job, inst) for inst in log.todo]
                for fu in futures:
                    while not fu.done():
                        time.sleep(0.2)     # wake up for KeyboardInterrupt
    except KeyboardInterrupt:
        children.kill_all()
        echo("interrupted: running instances killed; finished rows are in " + str(log.out))
        raise
    rows = log.rows()
    echo(summarize(rows))
    return rows
