"""The benchmark runner on a Ray cluster: ``cegarnn bench INSTANCES.csv --ray auto|local|ADDRESS``.

Each instance is one Ray task (1 CPU and ``memory_gb`` of Ray's ``memory`` resource) that runs the
same child as the local runner (``runner.run_instance_subprocess``: its own session, the
address-space limit, killed with its process group at ``timeout*scale + grace``) in a scratch
directory of the node it lands on, and returns the result with the texts of the child's result
file, stats and log. The driver writes those files to ``<out>.d/`` and appends the row to the
results file (``runner.ResultsLog``: one fsynced write per row) as tasks finish, in whatever order
they finish. A task whose worker or node dies is rerun by Ray (``max_retries``); an instance whose
task still fails gets **no** row (it is not the instance's fault), is reported, and the run ends
with ``RayRunIncomplete`` so that ``--resume`` runs it again.

The nodes need cegarnn and the instance files at the same paths as the driver (a shared file
system or identical copies); the child runs under the node's own Python (the worker's
``sys.executable``). ``ray`` is imported here only, and only when a Ray run starts.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from .runner import (BenchConfig, Instance, _slug, prepare_run, run_instance_subprocess,
                     summarize)

RAY_EXTRA = "pip install -e '.[ray]' (or: make ray)"
MAX_LOG_CHARS = 200_000          # a child's log is sent back to the driver up to this size (its tail)
FILE_KINDS = ("result", "json", "log")


class RayUnavailable(RuntimeError):
    """Ray is not installed (or cannot be imported); the message names the extra to install."""


class RayRunIncomplete(RuntimeError):
    """Some instances got no row because their Ray tasks failed; ``--resume`` runs them again."""


def import_ray():
    """The ``ray`` module, or ``RayUnavailable`` naming the optional extra when it cannot be imported."""
    try:
        import ray
    except ImportError as e:
        raise RayUnavailable(f"--ray needs Ray, an optional extra of cegarnn: {RAY_EXTRA} "
                             f"(import ray failed: {e})") from None
    return ray


# ===================================================================== on the worker node
def _pdeathsig_setter():
    """A callable for ``preexec_fn`` that makes the child get SIGKILL when its parent (the Ray
    worker) dies, resolved before the fork (Linux ``prctl``); ``None`` where unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    return lambda: prctl(pr_set_pdeathsig, sigkill)


def _read_tail(path: Path, limit: int = MAX_LOG_CHARS) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    return text if len(text) <= limit else "[... cut ...]\n" + text[-limit:]


def run_on_node(inst: Instance, cfg: BenchConfig) -> dict:
    """Run one instance as the local runner does, in a scratch directory of this node that is
    removed afterwards. Returns ``result``, ``prepare_seconds``, ``run_seconds``, ``reason``,
    ``node`` and ``files`` (the texts of the child's ``result``/``json``/``log`` files, or None).
    An exception of the runner itself becomes an ``error`` result, as in the local runner."""
    # the interpreter that runs this task on this node; workers = cores, so that the child's BLAS/OpenMP
    # threads (cores // workers, see runner._child_env) match the task's 1 CPU
    cfg = replace(cfg, python=sys.executable, workers=os.cpu_count() or 1)
    scratch = Path(tempfile.mkdtemp(prefix="cegarnn-ray-"))
    try:
        try:
            result, prep, run, reason = run_instance_subprocess(inst, cfg, scratch,
                                                                preexec_fn=_pdeathsig_setter())
        except Exception as e:  # noqa: BLE001 - the instance costs one row, never the run
            result, prep, run, reason = "error", 0.0, 0.0, f"runner: {type(e).__name__}: {e}"
        slug = _slug(inst)
        files = {k: _read_tail(scratch / f"{slug}.{k}") for k in FILE_KINDS}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"result": result, "prepare_seconds": prep, "run_seconds": run, "reason": reason,
            "node": platform.node(), "files": files}


# ===================================================================== on the driver
def write_instance_files(workdir: Path, inst: Instance, files: dict) -> None:
    """Write the texts a task sent back to ``workdir/<slug>.{result,json,log}`` (atomically each)."""
    slug = _slug(inst)
    for kind in FILE_KINDS:
        text = files.get(kind)
        if text is None:
            continue
        p = workdir / f"{slug}.{kind}"
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, p)


def _check_resources(ray, cfg: BenchConfig, echo) -> None:
    """Warn when no live node can take a task (1 CPU, ``memory_gb``): Ray would queue it silently."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    need = float(cfg.memory_gb) * 2 ** 30 if cfg.memory_gb and cfg.memory_gb > 0 else 0.0
    fits = [n for n in nodes if n["Resources"].get("CPU", 0) >= 1 and n["Resources"].get("memory", 0) >= need]
    if not fits:
        echo(f"warning: no live node of the Ray cluster has 1 CPU and {cfg.memory_gb:g} GB of memory "
             f"resource; the tasks wait until one joins (lower --memory-gb?)")


def connect(ray, address: str) -> bool:
    """Connect to the cluster at ``address`` (``auto``: the one ``ray start`` runs on this machine,
    or ``RAY_ADDRESS``; ``local``: a Ray instance of this process, or the running one). Returns
    True when this call connected (and so the caller should ``ray.shutdown()``)."""
    if ray.is_initialized():
        return False
    ray.init(address=None if address == "local" else address, logging_level=logging.WARNING,
             log_to_driver=False)
    return True


def run_benchmark_ray(instances_csv, cfg: BenchConfig, address: str = "auto", echo=print,
                      max_retries: int = 3) -> list[list[str]]:
    """Run every instance of ``instances_csv`` as a Ray task on the cluster at ``address``; append
    each row to ``cfg.out`` as its task finishes; return this benchmark's rows (as ``run_benchmark``).

    Raises ``RayUnavailable`` without Ray and ``RayRunIncomplete`` (after writing every finished
    row and the summary) when some task failed even after ``max_retries`` reruns by Ray."""
    ray = import_ray()
    log, workdir = prepare_run(instances_csv, cfg, echo)
    if not log.todo:
        rows = log.rows()
        echo(summarize(rows))
        return rows
    owned = connect(ray, address)
    try:
        _check_resources(ray, cfg, echo)
        options = {"num_cpus": 1, "max_retries": max_retries, "retry_exceptions": False}
        if cfg.memory_gb and cfg.memory_gb > 0:
            options["memory"] = int(float(cfg.memory_gb) * 2 ** 30)
        task = ray.remote(run_on_node).options(**options)
        cfg_ref = ray.put(cfg)
        pending = {task.remote(inst, cfg_ref): inst for inst in log.todo}
        lost = []
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    inst = pending.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayError as e:      # the worker or node died, even on retry
                        lost.append(inst)
                        msg = " ".join(str(e).split())[:300]
                        echo(f"lost: {inst.label}: Ray task failed ({type(e).__name__}: {msg}); no row written")
                        continue
                    write_instance_files(workdir, inst, out["files"])
                    log.record(inst, out["result"], out["prepare_seconds"], out["run_seconds"], out["reason"])
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            echo("interrupted: running Ray tasks cancelled; finished rows are in " + str(log.out))
            raise
    finally:
        if owned:
            ray.shutdown()
    rows = log.rows()
    echo(summarize(rows))
    if lost:
        raise RayRunIncomplete(f"{len(lost)} instance(s) got no row because their Ray tasks failed; "
                               f"rerun the same command with --resume to run them")
    return rows
