"""`cegarnn bench --ray`: the message without the extra, the results log shared with the local
runner (durable appends, resume after a driver crash), and the Ray driver's bookkeeping run against
a stand-in `ray` module (tasks finishing out of order, a task lost for good). The real cluster runs
in experiments/bench_ray.py; the test at the end needs Ray and is deselected by default (slow)."""
import os
import sys
import types

import pytest

from cegarnn.cli.commands import main
from cegarnn.vnncomp import ray_runner, runner
from cegarnn.vnncomp.runner import BenchConfig, Instance, ResultsLog, read_results


def _instances(tmp_path, n=3):
    return [Instance("nets/a.onnx", f"p{k}.vnnlib", 10.0, tmp_path / "nets/a.onnx", tmp_path / f"p{k}.vnnlib")
            for k in range(n)]


def _csv(tmp_path, n=3):
    (tmp_path / "b").mkdir(exist_ok=True)
    path = tmp_path / "b" / "instances.csv"
    path.write_text("".join(f"nets/a.onnx,p{k}.vnnlib,10\n" for k in range(n)))
    return path


def test_without_ray_the_option_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)          # `import ray` fails even where Ray is installed
    out = tmp_path / "res.csv"
    rc = main(["bench", str(_csv(tmp_path)), "--ray", "auto", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "pip install -e '.[ray]'" in err and "make ray" in err and err.startswith("error: ")
    assert not out.exists() and not (tmp_path / "res.csv.d").exists()     # checked before anything is written


def test_results_log_appends_durably_and_resumes_after_a_crash(tmp_path, monkeypatch):
    insts = _instances(tmp_path)
    out = tmp_path / "res.csv"
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(runner.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    lines = []
    log = ResultsLog(out, insts, "bench", echo=lines.append)
    assert log.todo == insts
    log.record(insts[2], "sat", 0.5, 1.25)                  # finish order differs from the instances' order
    log.record(insts[0], "timeout", 0.1, 9.0, reason="time limit")
    assert len(synced) == 2                                # one fsync per row, before record returns
    assert [r[2] for r in read_results(out)] == ["p2.vnnlib", "p0.vnnlib"]
    assert [r[2] for r in log.rows()] == ["p0.vnnlib", "p2.vnnlib"]
    assert lines[0] == ("[1/3] a.onnx p2.vnnlib: sat in 1.2s | solved 1 (verified 0, falsified 1), unsolved 0")
    assert lines[1].endswith("(time limit) | solved 1 (verified 0, falsified 1), unsolved 1")
    # the driver dies here; a new one refuses to overwrite, and with resume runs only what is missing
    with pytest.raises(FileExistsError, match="--resume"):
        ResultsLog(out, insts, "bench")
    lines.clear()
    again = ResultsLog(out, insts, "bench", resume=True, echo=lines.append)
    assert again.todo == [insts[1]] and lines == [f"resume: 2 of 3 instances already in {out}"]
    again.record(insts[1], "unsat", 0.2, 2.0)
    assert lines[-1].startswith("[3/3]") and "solved 2 (verified 1, falsified 1), unsolved 1" in lines[-1]
    assert sorted(r[2] for r in read_results(out)) == ["p0.vnnlib", "p1.vnnlib", "p2.vnnlib"]
    assert read_results(out)[0] == ["bench", "nets/a.onnx", "p2.vnnlib", "0.500000", "sat", "1.250000"]
    # a crash in the middle of a write: the cut row is dropped on resume and its instance runs again
    text = out.read_text()
    out.write_text(text + "bench,nets/a.onnx,p3.vnnlib,0.1,uns")
    more = _instances(tmp_path, 4)
    cut = ResultsLog(out, more, "bench", resume=True, echo=lambda s: None)
    assert cut.todo == [more[3]] and out.read_text() == text
    cut.record(more[3], "unsat", 0.1, 1.0)
    assert read_results(out)[-1][2:5] == ["p3.vnnlib", "0.100000", "unsat"]


class _Ref:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args


def fake_ray(lose=(), order=None):
    """A stand-in for the `ray` module: tasks run when they are waited for, the last submitted first
    (or in ``order``); a task whose instance property is in ``lose`` fails as a dead node would."""
    ray = types.ModuleType("ray")
    exc = types.SimpleNamespace(RayError=type("RayError", (Exception,), {}))
    ray.exceptions = exc
    ray.calls = {"init": [], "shutdown": 0, "options": None}
    ray.is_initialized = lambda: bool(ray.calls["init"]) and not ray.calls["shutdown"]
    ray.init = lambda **kw: ray.calls["init"].append(kw)

    def shutdown():
        ray.calls["shutdown"] += 1
    ray.shutdown = shutdown
    ray.nodes = lambda: [{"Alive": True, "Resources": {"CPU": 1.0, "memory": 16 * 2 ** 30}}]
    ray.put = lambda obj: obj
    ray.cancel = lambda ref, force=False: None

    def remote(fn):
        def options(**kw):
            ray.calls["options"] = kw
            return types.SimpleNamespace(remote=lambda *args: _Ref(fn, args))
        return types.SimpleNamespace(options=options)
    ray.remote = remote

    def wait(refs, num_returns=1, timeout=None):
        pick = refs[-1] if order is None else min(refs, key=lambda r: order.index(r.args[0].property))
        return [pick], [r for r in refs if r is not pick]
    ray.wait = wait

    def get(ref):
        inst = ref.args[0]
        if inst.property in lose:
            raise exc.RayError(f"the node running {inst.property} died")
        return ref.fn(*ref.args)
    ray.get = get
    return ray


def _canned(inst, cfg):
    """What run_on_node returns, without a child (the driver's side is under test)."""
    res = {"p0.vnnlib": "unsat", "p1.vnnlib": "sat", "p2.vnnlib": "timeout"}[inst.property]
    return {"result": res, "prepare_seconds": 0.25, "run_seconds": 1.5, "reason": "", "node": "n1",
            "files": {"result": res + "\n", "json": "{}", "log": f"log of {inst.property}\n"}}


def test_driver_appends_as_tasks_finish_and_a_lost_task_gets_no_row(tmp_path, monkeypatch):
    csv_path = _csv(tmp_path)
    out = tmp_path / "res.csv"
    monkeypatch.setattr(ray_runner, "run_on_node", _canned)
    ray = fake_ray(lose={"p1.vnnlib"}, order=["p2.vnnlib", "p1.vnnlib", "p0.vnnlib"])
    monkeypatch.setitem(sys.modules, "ray", ray)
    lines = []
    cfg = BenchConfig(out=out, memory_gb=2.0)
    with pytest.raises(ray_runner.RayRunIncomplete, match="--resume"):
        ray_runner.run_benchmark_ray(csv_path, cfg, address="auto", echo=lines.append)
    assert ray.calls["init"][0]["address"] == "auto" and ray.calls["shutdown"] == 1
    assert ray.calls["options"] == {"num_cpus": 1, "max_retries": 3, "retry_exceptions": False,
                                    "memory": 2 * 2 ** 30}
    assert [(r[2], r[4]) for r in read_results(out)] == [("p2.vnnlib", "timeout"), ("p0.vnnlib", "unsat")]
    assert any(line.startswith("lost: a.onnx p1.vnnlib: Ray task failed") for line in lines)
    assert lines[-1].split()[:2] == ["instances", "verified"]         # the summary, before the error
    d = tmp_path / "res.csv.d"
    assert (d / "a.onnx__p0.vnnlib.result").read_text() == "unsat\n"
    assert (d / "a.onnx__p2.vnnlib.log").read_text() == "log of p2.vnnlib\n"
    assert not (d / "a.onnx__p1.vnnlib.result").exists()
    # the lost instance runs on --resume (a new driver, the cluster healthy again); nothing else does
    ray2 = fake_ray()
    monkeypatch.setitem(sys.modules, "ray", ray2)
    ran = []
    monkeypatch.setattr(ray_runner, "run_on_node", lambda inst, cfg: ran.append(inst.property) or _canned(inst, cfg))
    rows = ray_runner.run_benchmark_ray(csv_path, BenchConfig(out=out, resume=True), address="local",
                                        echo=lines.append)
    assert ran == ["p1.vnnlib"] and ray2.calls["init"][0]["address"] is None
    assert [(r[2], r[4]) for r in rows] == [("p0.vnnlib", "unsat"), ("p1.vnnlib", "sat"), ("p2.vnnlib", "timeout")]
    assert len(read_results(out)) == 3
    # all done: nothing to run, not even a connection
    ray3 = fake_ray()
    monkeypatch.setitem(sys.modules, "ray", ray3)
    assert len(ray_runner.run_benchmark_ray(csv_path, BenchConfig(out=out, resume=True), echo=lines.append)) == 3
    assert ray3.calls["init"] == []


def test_cli_exits_2_and_says_resume_when_a_task_is_lost(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ray_runner, "run_on_node", _canned)
    monkeypatch.setitem(sys.modules, "ray", fake_ray(lose={"p0.vnnlib"}))
    out = tmp_path / "res.csv"
    rc = main(["bench", str(_csv(tmp_path)), "--ray", "10.0.0.1:6390", "--out", str(out)])
    std = capsys.readouterr()
    assert rc == 2 and std.err.strip().splitlines()[-1].endswith("rerun the same command with --resume to run them")
    assert "[2/3]" in std.out and len(read_results(out)) == 2


def test_run_on_node_runs_the_child_in_a_scratch_dir(tiny_onnx, tmp_path):
    # the task body without Ray: the same child as the local runner, files returned, scratch removed
    bench = tmp_path / "bench"
    bench.mkdir()
    tiny_onnx("tiny.onnx", seed=1, sizes=(2, 5, 2), directory=bench)
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    bounds = "".join(f"(assert (>= X_{i} -0.1))\n(assert (<= X_{i} 0.1))\n" for i in range(2))
    (bench / "easy.vnnlib").write_text(decl + bounds + "(assert (>= Y_0 1000))\n")
    inst = Instance("tiny.onnx", "easy.vnnlib", 30.0, bench / "tiny.onnx", bench / "easy.vnnlib")
    before = set(os.listdir(ray_runner.tempfile.gettempdir()))
    out = ray_runner.run_on_node(inst, BenchConfig(out=tmp_path / "r.csv", grace=60, python="/nonexistent/python"))
    assert out["result"] == "unsat" and out["files"]["result"].startswith("unsat")
    assert '"result": "unsat"' in out["files"]["json"] and out["run_seconds"] >= 0
    after = set(os.listdir(ray_runner.tempfile.gettempdir()))
    assert not [n for n in after - before if n.startswith("cegarnn-ray-")]


@pytest.mark.slow
def test_a_local_ray_instance_runs_the_benchmark(tiny_onnx, tmp_path):
    """Needs Ray (`make ray`); deselected by default. The real check is experiments/bench_ray.py."""
    pytest.importorskip("ray")
    from test_runner import write_instances
    csv_path = write_instances(tmp_path, tiny_onnx)
    out = tmp_path / "results.csv"
    rows = ray_runner.run_benchmark_ray(csv_path, BenchConfig(out=out, grace=60, memory_gb=1.0), address="local",
                                        echo=lambda s: None)
    got = {(r[1], r[2]): r[4] for r in rows}
    assert got == {("nets/tiny.onnx", "props/easy.vnnlib"): "unsat", ("nets/corrupt.onnx", "props/easy.vnnlib"): "error",
                   ("nets/tiny.onnx", "props/wrong_size.vnnlib"): "error"}
    assert "not an ONNX model" in (tmp_path / "results.csv.d" / "corrupt.onnx__easy.vnnlib.result").read_text()
