"""Scale-out on Ray, checked on a local cluster (issue 16): `cegarnn bench --ray` and the Hydra sweeps
through `hydra/launcher=ray`, against the same runs on this machine without Ray.

Needs an environment with the `ray` extra (`make ray`, or `pip install -e '.[test,ray]'`); run it with
that environment's Python from the repository root:

    .venv/bin/python experiments/bench_ray.py            # -> experiments/results/issue16/bench_ray.{md,csv}

What it does (every step is a command of that environment, printed and written to the report):
 1. a small VNN-COMP benchmark (8 mnistfc 256x2 instances from ../shared/benchmarks) run locally
    (`cegarnn bench --workers 2`);
 2. a local Ray cluster: a head node with no CPU (`ray start --head --node-ip-address=127.0.0.1`,
    free non-default ports, its own temp dir, token authentication with a token made for this run)
    and two worker nodes of 1 CPU each (`ray start --address=...`);
 3. the same benchmark through the cluster (`cegarnn bench --ray auto`), verdicts compared
    instance by instance;
 4. again, with one worker node killed (SIGKILL of its raylet) while it runs an instance: the rows
    written before the kill must stay as they were, every instance must get exactly one row with
    the local verdict, and the killed node's child process must be gone;
 5. again, with the driver killed after 3 rows, then `--resume`: no row lost or duplicated;
 6. the shift sweep (2 cells x 3 images) and a repair sweep (2 jobs) through `hydra/launcher=ray`
    joining the cluster (`hydra.launcher.ray.init.address=auto`), compared with local runs;
 7. stops every process of the cluster (by process id: those whose command line names this run's
    temp dir or GCS address, and their descendants), also on failure.
Exit status 0 when every check passed.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MNISTFC = REPO.parent / "shared" / "benchmarks" / "vnncomp2021" / "mnistfc"
BIN = Path(sys.executable).parent
# (property, timeout s): 4 verified, 3 falsified, 1 that times out (30 s were not enough in vnncomp2021/)
INSTANCES = [("prop_2_0.03", 20), ("prop_7_0.03", 20), ("prop_4_0.03", 20), ("prop_14_0.03", 20),
             ("prop_1_0.03", 5), ("prop_8_0.03", 20), ("prop_1_0.05", 20), ("prop_10_0.03", 20)]
NET = "mnist-net_256x2.onnx"
BENCH_ARGS = ["--benchmark", "mnistfc", "--grace", "10", "--memory-gb", "4"]
SWEEP_ARGS = ["experiment=shift_sweep", "shift=rotation", "delta=0.5", "method=crown,cegar", "sweep.n_images=3",
              "verifier.time_limit=20"]


class Run:
    """Commands, checks and notes of this run, for the report; paths shown relative to the repo."""

    def __init__(self, tmp: Path):
        self.tmp, self.commands, self.checks, self.notes = tmp, [], [], []
        self.address = None          # the head's GCS address, shown as $RAY_ADDRESS

    def show(self, text: str) -> str:
        text = str(text).replace(str(self.tmp), "$TMP").replace(str(BIN) + "/", "")
        if self.address:
            text = text.replace(self.address, "$RAY_ADDRESS")
        return text.replace(str(REPO) + "/", "").replace(str(REPO), ".")

    def cmd(self, args, **kw) -> subprocess.CompletedProcess:
        """Run ``args`` (logged); returns the completed process (stdout+stderr in ``.stdout``)."""
        line = " ".join(map(str, args))
        self.commands.append(self.show(line))
        print("$ " + self.show(line), flush=True)
        t = time.perf_counter()
        p = subprocess.run(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
        p.seconds = time.perf_counter() - t
        return p

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append((name, bool(ok), self.show(detail)))
        print(f"[{'PASS' if ok else 'FAIL'}] {name}{': ' + self.show(detail) if detail else ''}", flush=True)
        return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procs() -> dict:
    """{pid: (ppid, command line)} of every process."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmdline = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out[int(d.name)] = (ppid, cmdline)
    return out


def descendants(roots, table=None) -> set:
    table = table or procs()
    found, grow = set(roots), True
    while grow:
        new = {p for p, (pp, _) in table.items() if pp in found and p not in found}
        found |= new
        grow = bool(new)
    return found


def kill_pids(pids, sig=signal.SIGKILL):
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def cluster_pids(marks) -> set:
    """Processes whose command line contains one of ``marks`` (temp dirs, the GCS address), with descendants."""
    table = procs()
    me = os.getpid()
    roots = {p for p, (_, c) in table.items() if p != me and any(m in c for m in marks)}
    return descendants(roots, table) - {me}


def stop_cluster(marks, wait=10.0) -> int:
    """SIGTERM, then SIGKILL, every process of the cluster (see ``cluster_pids``); returns how many were left."""
    pids = cluster_pids(marks)
    kill_pids(pids, signal.SIGTERM)
    deadline = time.time() + wait
    while time.time() < deadline and cluster_pids(marks):
        time.sleep(0.5)
    left = cluster_pids(marks)
    kill_pids(left, signal.SIGKILL)
    time.sleep(1.0)
    return len(cluster_pids(marks))


def read_rows(path: Path) -> list:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [r for r in csv.reader(f) if len(r) >= 6]


def verdicts(path: Path) -> dict:
    return {r[2]: r[4] for r in read_rows(path)}


def build_instances(tmp: Path) -> Path:
    """``tmp/inst/instances.csv`` over links to the mnistfc files (the rows name them as vnncomp2021 does)."""
    d = tmp / "inst"
    d.mkdir()
    (d / NET).symlink_to(MNISTFC / NET)
    for prop, _ in INSTANCES:
        (d / f"{prop}.vnnlib").symlink_to(MNISTFC / f"{prop}.vnnlib")
    path = d / "instances.csv"
    path.write_text("".join(f"{NET},{p}.vnnlib,{t}\n" for p, t in INSTANCES))
    return path


def wait_for(cond, timeout: float, step: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return None


def sweep_statuses(root: Path) -> dict:
    """{(method, image): status} from every rows.csv below ``root``."""
    out = {}
    for f in root.rglob("rows.csv"):
        with f.open(newline="") as fh:
            for r in csv.DictReader(fh):
                out[(r["method"], int(r["image"]))] = r["status"]
    return out


def repair_results(root: Path) -> dict:
    import json
    out = {}
    for f in sorted(root.rglob("result.json")):
        d = json.loads(f.read_text())
        out[f.parent.name] = (d["status"], {k: round(v, 6) for k, v in d["norms"].items()})
    return out


def make_repair_case(d: Path):
    """A 4-8-3 ReLU ONNX network and 5 inputs labelled (its prediction + 1) mod 3: a finetune repair."""
    import numpy as np
    from cegarnn.network import Affine, Network, ReLU, save_onnx
    rng = np.random.default_rng(0)
    net = Network((Affine(rng.normal(size=(8, 4)), rng.normal(size=8)), ReLU(),
                   Affine(rng.normal(size=(3, 8)), rng.normal(size=3))), (4,))
    d.mkdir()
    save_onnx(net, d / "net.onnx")
    X = np.random.default_rng(7).normal(size=(5, 4))
    np.savez(d / "fix.npz", x=X, y=(net.forward(X).argmax(1) + 1) % 3)


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ray
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "ray": ray.__version__,
            "commit": commit, "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=str(REPO / "experiments" / "results" / "issue16"))
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (results, logs, Ray logs)")
    a = ap.parse_args()
    try:
        import ray  # noqa: F401
    except ImportError:
        print("error: this benchmark needs Ray: make ray (or pip install -e '.[test,ray]')", file=sys.stderr)
        return 2
    if not MNISTFC.is_dir():
        print(f"error: benchmark folder absent: {MNISTFC}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bray-", dir="/tmp"))      # short: Ray's socket paths must fit
    run = Run(tmp)
    info = machine()
    port = free_port()
    marks = [str(tmp) + "/"]          # + the GCS address once the head runs
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), PYTHONUNBUFFERED="1")
    result = {}
    scratch_before = set(Path(tempfile.gettempdir()).glob("cegarnn-ray-*"))
    try:
        result = experiment(run, tmp, port, env, marks)
    except Exception as e:  # noqa: BLE001 - reported, then the cluster is stopped
        run.check("the benchmark ran to its end", False, f"{type(e).__name__}: {e}")
    finally:
        left = stop_cluster(marks)
        run.check("every process of the cluster stopped", left == 0, f"{left} left")
        # a task killed with its worker cannot remove its scratch dir: these are this run's
        stale = set(Path(tempfile.gettempdir()).glob("cegarnn-ray-*")) - scratch_before
        run.notes.append(f"scratch dirs left by killed tasks (removed): {len(stale)}")
        for d in stale:
            shutil.rmtree(d, ignore_errors=True)
    write_report(run, info, result, Path(a.out_dir))
    if not a.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = [c for c in run.checks if not c[1]]
    print(f"{len(run.checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def start_node(run, env, tmp, name, head_port, head=False) -> subprocess.CompletedProcess:
    ray_bin = BIN / "ray"
    common = ["--temp-dir", tmp / name, "--disable-usage-stats"]
    if head:
        args = [ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={head_port}", "--num-cpus=0",
                "--include-dashboard=false", f"--dashboard-port={free_port()}",
                f"--ray-client-server-port={free_port()}", "--object-store-memory=200000000", *common]
    else:
        args = [ray_bin, "start", f"--address={env['RAY_ADDRESS']}", "--num-cpus=1",
                f"--node-manager-port={free_port()}", "--object-store-memory=100000000", *common]
    p = run.cmd(args, env=env, cwd=REPO)
    if p.returncode != 0:
        raise RuntimeError(f"ray start failed: {p.stdout[-2000:]}")
    if head:
        m = re.search(r"ray start --address='([^']+)'", p.stdout)
        env["RAY_ADDRESS"] = m.group(1) if m else f"127.0.0.1:{head_port}"
        run.address = env["RAY_ADDRESS"]
    return p


def alive_nodes(env) -> int:
    p = subprocess.run([str(BIN / "ray"), "status", f"--address={env['RAY_ADDRESS']}"], env=env,
                       capture_output=True, text=True)
    active = p.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return len(re.findall(r"\bnode_[0-9a-f]+", active))


def vnnlib_children(table=None) -> dict:
    """{pid: property} of the instance processes that Ray tasks started (their result goes to a
    `cegarnn-ray-*` scratch dir), wherever they are in the process tree."""
    table = table or procs()
    out = {}
    for p, (_, c) in table.items():
        m = re.search(r"(prop_[^ /]+)\.vnnlib", c)
        if "cegarnn.cli vnnlib" in c and "/cegarnn-ray-" in c and m:
            out[p] = m.group(1)
    return out


def node_children(tmp, name) -> dict:
    """``vnnlib_children`` below the raylet of node ``name``."""
    table = procs()
    raylets = {p for p, (_, c) in table.items() if "raylet/raylet" in c and f"{tmp}/{name}/" in c}
    below = descendants(raylets, table)
    return {p: prop for p, prop in vnnlib_children(table).items() if p in below}


def bench(run, env, csv_path, out, *extra, background=False):
    args = [BIN / "cegarnn", "bench", csv_path, "--out", out, *BENCH_ARGS, *extra]
    if background:
        run.commands.append(run.show(" ".join(map(str, args))) + "   # in the background")
        print("$ " + run.show(" ".join(map(str, args))) + " &", flush=True)
        log = open(str(out) + ".stdout", "w")
        return subprocess.Popen(list(map(str, args)), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True), log
    return run.cmd(args, env=env, cwd=REPO)


def experiment(run: Run, tmp: Path, port: int, env: dict, marks) -> dict:
    res = {}
    csv_path = build_instances(tmp)
    local_env = {k: v for k, v in env.items() if not k.startswith("RAY_")}
    # 1. local reference
    p = bench(run, local_env, csv_path, tmp / "local.csv", "--workers", "2")
    local = verdicts(tmp / "local.csv")
    res["local"] = (p.seconds, read_rows(tmp / "local.csv"))
    run.check("local run: every instance has a row", p.returncode == 0 and len(local) == len(INSTANCES),
              f"{len(local)} rows, exit {p.returncode}")
    # 2. the cluster
    start_node(run, env, tmp, "h", port, head=True)
    marks.append(env["RAY_ADDRESS"])
    for name in ("w1", "w2"):
        start_node(run, env, tmp, name, port)
    run.check("cluster up: head + 2 workers", wait_for(lambda: alive_nodes(env) == 3, 60) is not None,
              f"{alive_nodes(env)} live nodes")
    # 3. the benchmark through Ray
    p = bench(run, env, csv_path, tmp / "ray.csv", "--ray", "auto")
    ray_v = verdicts(tmp / "ray.csv")
    res["ray"] = (p.seconds, read_rows(tmp / "ray.csv"))
    run.check("Ray run: verdicts equal the local run's, instance by instance", p.returncode == 0 and ray_v == local,
              f"{sum(ray_v.get(k) == v for k, v in local.items())}/{len(local)} equal, exit {p.returncode}")
    # 4. a worker node killed mid-run
    out = tmp / "ray_kill.csv"
    t0 = time.perf_counter()
    proc, log = bench(run, env, csv_path, out, "--ray", "auto", background=True)
    victim = wait_for(lambda: len(read_rows(out)) >= 2 and node_children(tmp, "w2"), 300, 0.2)
    before = out.read_text() if out.is_file() else ""
    kill = {"rows_before": len(read_rows(out)), "running": sorted((victim or {}).values())}
    if victim:
        table = procs()
        raylet = [p for p, (_, c) in table.items() if "raylet/raylet" in c and f"{tmp}/w2/" in c]
        kill_pids(raylet)                                  # the node "crashes"
        run.notes.append(f"killed worker node w2 (SIGKILL of its raylet) after {time.perf_counter() - t0:.1f} s, "
                         f"with {kill['rows_before']} rows written and {', '.join(kill['running'])} running on it")
        gone = wait_for(lambda: not set(victim) & set(vnnlib_children()), 15)
        run.check("the killed node's child process died with it", gone is not None,
                  ", ".join(f"pid {pid} ({prop})" for pid, prop in victim.items()))
        stop_cluster([f"{tmp}/w2/"])                       # what is left of that node (its log monitor)
    run.check("a worker was killed while running an instance", bool(victim))
    rc = proc.wait(timeout=900)
    log.close()
    res["kill"] = (time.perf_counter() - t0, read_rows(out), Path(str(out) + ".stdout").read_text())
    rows = read_rows(out)
    keys = [r[2] for r in rows]
    run.check("kill run: the rows written before the kill are unchanged", out.read_text().startswith(before),
              f"{kill['rows_before']} rows before the kill")
    run.check("kill run: every instance exactly one row, verdicts equal the local run's",
              rc == 0 and sorted(keys) == sorted(local) and verdicts(out) == local,
              f"{len(rows)} rows for {len(set(keys))} instances, exit {rc}")
    retried = [ln for ln in res["kill"][2].splitlines() if "retries remaining" in ln]
    run.notes.append("Ray's message: " + (re.sub(r"\x1b\[[0-9;]*m", "", retried[0]).strip()[:200] if retried
                                          else "(no retry message)"))
    # 5. the driver killed, then --resume
    out = tmp / "ray_resume.csv"
    t0 = time.perf_counter()
    proc, log = bench(run, env, csv_path, out, "--ray", "auto", background=True)
    wait_for(lambda: len(read_rows(out)) >= 3, 300, 0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    log.close()
    n_before = len(read_rows(out))
    orphans = wait_for(lambda: not vnnlib_children(), 30)
    run.notes.append(f"killed the driver (SIGKILL) with {n_before} rows written")
    run.check("after the driver died, its running instances were stopped", orphans is not None)
    p = bench(run, env, csv_path, out, "--ray", "auto", "--resume")
    rows = read_rows(out)
    res["resume"] = (time.perf_counter() - t0, rows, p.stdout)
    run.check("resume after a driver crash: nothing lost or duplicated, verdicts equal",
              p.returncode == 0 and sorted(r[2] for r in rows) == sorted(local) and verdicts(out) == local
              and f"resume: {n_before} of {len(INSTANCES)}" in p.stdout, f"{n_before} rows before, {len(rows)} after")
    # 6. the sweeps: worker w2 rejoins, then Hydra's Ray launcher joins the cluster
    start_node(run, env, tmp, "w2b", port)
    wait_for(lambda: alive_nodes(env) == 3, 60)
    verify = BIN / "cegarnn-verify"
    p_loc = run.cmd([verify, "-m", *SWEEP_ARGS, f"hydra.sweep.dir={tmp}/sweep_local"], env=local_env, cwd=REPO)
    p_ray = run.cmd([verify, "-m", *SWEEP_ARGS, "hydra/launcher=ray", "hydra.launcher.ray.init.address=auto",
                     f"hydra.sweep.dir={tmp}/sweep_ray"], env=env, cwd=REPO)
    s_loc, s_ray = sweep_statuses(tmp / "sweep_local"), sweep_statuses(tmp / "sweep_ray")
    res["sweep"] = (p_loc.seconds, p_ray.seconds, s_loc, s_ray)
    run.check("shift sweep through hydra/launcher=ray: statuses equal the local (joblib) sweep's",
              p_loc.returncode == 0 and p_ray.returncode == 0 and s_ray == s_loc and len(s_loc) == 6,
              f"{len(s_ray)} rows, exit {p_loc.returncode}/{p_ray.returncode}"
              + ("" if "Connecting to existing Ray cluster" in p_ray.stdout else "; did NOT join the cluster"))
    make_repair_case(tmp / "rep")
    rep_args = [BIN / "cegarnn-repair", "-m", f"model={tmp}/rep/net.onnx", f"inputs={tmp}/rep/fix.npz",
                "options.layer=-1", "options.norm=linf,l1"]
    r_loc = run.cmd([*rep_args, f"hydra.sweep.dir={tmp}/rep/local"], env=local_env, cwd=REPO)
    r_ray = run.cmd([*rep_args, "hydra/launcher=ray", "hydra.launcher.ray.init.address=auto",
                     "+hydra.launcher.ray.init.object_store_memory=null", f"hydra.sweep.dir={tmp}/rep/ray"],
                    env=env, cwd=REPO)
    q_loc, q_ray = repair_results(tmp / "rep" / "local"), repair_results(tmp / "rep" / "ray")
    res["repair"] = (r_loc.seconds, r_ray.seconds, q_loc, q_ray)
    run.check("repair sweep through hydra/launcher=ray: results equal the local sweep's",
              r_loc.returncode == 0 and r_ray.returncode == 0 and q_ray == q_loc and len(q_loc) == 2,
              f"{q_ray}")
    return res


def write_report(run: Run, info: dict, res: dict, out_dir: Path):
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [k for k in ("local", "ray", "kill", "resume") if k in res]
    by = {k: {r[2]: r for r in res[k][1]} for k in runs}
    props = [f"{p}.vnnlib" for p, _ in INSTANCES]
    with (out_dir / "bench_ray.csv").open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["network", "property", "timeout"] + [f"{k}_{c}" for k in runs for c in ("result", "run_seconds")])
        for (p, t), prop in zip(INSTANCES, props):
            w.writerow([NET, prop, t] + [x for k in runs for x in
                                         ((by[k][prop][4], by[k][prop][5]) if prop in by[k] else ("", ""))])
    title = {"local": "local (--workers 2)", "ray": "Ray (2 workers)", "kill": "Ray, a worker killed",
             "resume": "Ray, driver killed + --resume"}
    L = ["# Scale-out on Ray: `cegarnn bench --ray` and `hydra/launcher=ray` on a local cluster", "",
         f"Machine: {info.get('nproc')} cores ({info.get('cpu')}), shared with other work (load at start "
         f"{info.get('load')}); Python {info.get('python')}, Ray {info.get('ray')}; commit {info.get('commit')} "
         f"plus the working tree. Command: `python experiments/bench_ray.py` with the Python of an environment "
         "installed as `make ray` does (torch 2.13.0 CPU first, then `pip install -e '.[test,ray]'`, then "
         "auto-lirpa 0.3 without dependencies).", "",
         "The cluster: a head node without CPUs and two worker nodes of 1 CPU each, all on this machine "
         "(`ray start`, token authentication, non-default ports; Ray replaces `--node-ip-address=127.0.0.1` "
         "by the machine's own address). Benchmark: 8 mnistfc 256x2 instances (VNN-COMP 2021), method cegar, "
         "timeouts from the CSV (20 s; 5 s for `prop_1_0.03`, which times out).", "",
         "## Checks", "", "| check | result | detail |", "|---|---|---|"]
    L += [f"| {n} | {'pass' if ok else '**FAIL**'} | {d} |" for n, ok, d in run.checks]
    L += ["", "## Benchmark: verdicts per instance (run seconds)", "",
          "| property | timeout | " + " | ".join(title[k] for k in runs) + " |", "|---|---|" + "---|" * len(runs)]
    for (p, t), prop in zip(INSTANCES, props):
        cells = [f"{by[k][prop][4]} ({float(by[k][prop][5]):.1f})" if prop in by[k] else "-" for k in runs]
        L.append(f"| {prop} | {t} | " + " | ".join(cells) + " |")
    L.append("| wall time of the run | | " + " | ".join(f"{res[k][0]:.1f} s" for k in runs) + " |")
    L += ["", "Per-instance rows: `bench_ray.csv`. Times differ between runs (other work shares the 2 cores, "
          "and 2 instances run at once in every run); the verdicts must not.", ""]
    if run.notes:
        L += ["## What happened", ""] + [f"- {run.show(n)}" for n in run.notes] + [""]
    if "kill" in res:
        prog = [run.show(ln) for ln in res["kill"][2].splitlines() if ln.startswith(("[", "lost:"))]
        L += ["Progress of the run with the worker killed (as printed by `cegarnn bench`):", "", "```"] + prog + ["```", ""]
    if "sweep" in res:
        t_loc, t_ray, s_loc, s_ray = res["sweep"]
        L += ["## Sweeps", "", f"Shift sweep, 2 cells x 3 images: local (joblib, 2 jobs) {t_loc:.1f} s, Ray {t_ray:.1f} s "
              "(both including start-up).", "", "| method | image | local | Ray |", "|---|---|---|---|"]
        L += [f"| {m} | {i} | {s_loc.get((m, i), '-')} | {s_ray.get((m, i), '-')} |" for m, i in sorted(set(s_loc) | set(s_ray))]
    if "repair" in res:
        t_loc, t_ray, q_loc, q_ray = res["repair"]
        L += ["", f"Repair sweep (finetune of the last layer of a 4-8-3 ReLU network on 5 inputs, norm linf and l1): "
              f"local {t_loc:.1f} s, Ray {t_ray:.1f} s.", "", "| job | local | Ray |", "|---|---|---|"]
        L += [f"| {j} | {q_loc.get(j)} | {q_ray.get(j)} |" for j in sorted(set(q_loc) | set(q_ray))]
    L += ["", "## Commands", "", "`$TMP` is the run's temp dir; every command ran from the repository root with the "
          "environment's `bin/` first on PATH, and `RAY_ADDRESS`, `RAY_AUTH_MODE=token`, `RAY_AUTH_TOKEN` set for "
          "the Ray ones.", "", "```"] + run.commands + ["```", ""]
    (out_dir / "bench_ray.md").write_text("\n".join(L))
    print(f"report: {run.show(out_dir / 'bench_ray.md')}")


if __name__ == "__main__":
    sys.exit(main())
