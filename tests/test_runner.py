"""Benchmark runner (subprocess per instance, kill on time, error rows, resume) and `cegarnn compare`."""
import sys
import time
from pathlib import Path

import pytest

from cegarnn.cli.commands import main
from cegarnn.vnncomp import runner
from cegarnn.vnncomp.compare import compare
from cegarnn.vnncomp.runner import BenchConfig, read_result, read_results, run_benchmark, run_child


def write_instances(tmp_path, tiny_onnx):
    """tiny.onnx + an easy unsat property, a corrupt ONNX, a property of the wrong size."""
    bench = tmp_path / "bench"
    (bench / "nets").mkdir(parents=True)
    (bench / "props").mkdir()
    tiny_onnx("tiny.onnx", seed=1, sizes=(2, 5, 2), directory=bench / "nets")
    (bench / "nets" / "corrupt.onnx").write_bytes(b"\x08\x07garbage" * 50)
    decl = "".join(f"(declare-const X_{i} Real)\n" for i in range(2)) + \
        "(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
    bounds = "".join(f"(assert (>= X_{i} -0.1))\n(assert (<= X_{i} 0.1))\n" for i in range(2))
    (bench / "props" / "easy.vnnlib").write_text(decl + bounds + "(assert (>= Y_0 1000))\n")
    (bench / "props" / "wrong_size.vnnlib").write_text(
        decl + "(declare-const X_2 Real)\n(assert (>= X_2 0))\n(assert (<= X_2 1))\n" + bounds
        + "(assert (>= Y_0 1000))\n")
    csv_path = bench / "instances.csv"
    csv_path.write_text("nets/tiny.onnx,props/easy.vnnlib,30\n"
                        "nets/corrupt.onnx,props/easy.vnnlib,30\n"
                        "nets/tiny.onnx,props/wrong_size.vnnlib,30.0\n")
    return csv_path


def test_kill_logic_kills_the_whole_process_group(tmp_path):
    # the child starts a grandchild; both must be gone when the limit expires
    pidfile = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time\n"
            f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
            "time.sleep(60)\n")
    start = time.perf_counter()
    rc, wall, killed = run_child([sys.executable, "-c", code], 1.0, tmp_path / "log.txt")
    assert killed and wall < 10 and time.perf_counter() - start < 10
    gpid = int(pidfile.read_text())
    deadline = time.time() + 5
    while time.time() < deadline and Path(f"/proc/{gpid}").exists():
        st = Path(f"/proc/{gpid}/stat").read_text().split()[2] if Path(f"/proc/{gpid}/stat").exists() else "X"
        if st == "Z":
            break
        time.sleep(0.1)
    alive = Path(f"/proc/{gpid}/stat").exists() and Path(f"/proc/{gpid}/stat").read_text().split()[2] != "Z"
    assert not alive, "grandchild survived the kill"
    rc, wall, killed = run_child([sys.executable, "-c", "print('hi')"], 10.0, tmp_path / "log2.txt")
    assert rc == 0 and not killed and (tmp_path / "log2.txt").read_text().strip() == "hi"


def test_runner_survives_bad_instances_and_resumes(tiny_onnx, tmp_path, monkeypatch):
    csv_path = write_instances(tmp_path, tiny_onnx)
    out = tmp_path / "results.csv"
    lines = []
    rows = run_benchmark(csv_path, BenchConfig(out=out, workers=2, grace=60), echo=lines.append)
    assert len(rows) == 3
    got = {(r[1], r[2]): r for r in read_results(out)}
    assert got[("nets/tiny.onnx", "props/easy.vnnlib")][4] == "unsat"
    assert got[("nets/corrupt.onnx", "props/easy.vnnlib")][4] == "error"
    assert got[("nets/tiny.onnx", "props/wrong_size.vnnlib")][4] == "error"
    for r in got.values():
        assert r[0] == "bench" and len(r) == 6 and float(r[3]) >= 0 and float(r[5]) >= 0
    # one-line reasons in the result files and the progress lines
    res_dir = tmp_path / "results.csv.d"
    err = (res_dir / "corrupt.onnx__easy.vnnlib.result").read_text().splitlines()
    assert err[0] == "error" and "not an ONNX model" in err[1]
    assert "3 inputs" in (res_dir / "tiny.onnx__wrong_size.vnnlib.result").read_text()
    assert any(line.startswith("[3/3]") and "unsolved 2" in line for line in lines)
    assert "verified" in lines[-1] or "verified" in lines[-2]

    # resume: nothing left to do, the file is unchanged; without --resume the run refuses
    before = out.read_text()
    calls = []
    monkeypatch.setattr(runner, "run_instance_subprocess", lambda inst, *a, **k: calls.append(inst) or ("unknown", 0, 0, ""))
    run_benchmark(csv_path, BenchConfig(out=out, resume=True), echo=lambda s: None)
    assert calls == [] and out.read_text() == before
    with pytest.raises(FileExistsError):
        run_benchmark(csv_path, BenchConfig(out=out), echo=lambda s: None)
    # drop one row: resume runs exactly that instance and appends its row
    out.write_text("".join(line + "\n" for line in before.splitlines() if "corrupt" not in line))
    run_benchmark(csv_path, BenchConfig(out=out, resume=True), echo=lambda s: None)
    assert [c.network for c in calls] == ["nets/corrupt.onnx"]
    assert len(read_results(out)) == 3


def test_runner_kills_an_instance_over_its_time(tiny_onnx, tmp_path):
    csv_path = write_instances(tmp_path, tiny_onnx)
    out = tmp_path / "results.csv"
    start = time.perf_counter()
    rows = run_benchmark(csv_path, BenchConfig(out=out, timeout_scale=1e-3, grace=0.0, limit=1), echo=lambda s: None)
    assert time.perf_counter() - start < 15
    assert [r[4] for r in rows] == ["timeout"]
    assert read_result(tmp_path / "results.csv.d" / "tiny.onnx__easy.vnnlib.result")[0] == "timeout"


def write_tool(path, rows, crlf=False):
    end = "\r\n" if crlf else "\n"
    path.write_text("".join(",".join(r) + end for r in rows))


def test_compare_detects_a_planted_disagreement(tmp_path, capsys):
    ours = tmp_path / "ours.csv"
    other = tmp_path / "other.csv"
    third = tmp_path / "third.csv"
    write_tool(ours, [["mnistfc", "nets/a.onnx", "p1.vnnlib", "0.1", "unsat", "1.0"],
                      ["mnistfc", "nets/a.onnx", "p2.vnnlib", "0.1", "sat", "2.0"],
                      ["mnistfc", "nets/a.onnx", "p3.vnnlib", "0.1", "timeout", "9.0"]])
    write_tool(other, [["mnistfc", "./benchmarks/mnistfc/a.onnx", "./benchmarks/mnistfc/p1.vnnlib", "1", "holds", "3"],
                       ["mnistfc", "./benchmarks/mnistfc/a.onnx", "./benchmarks/mnistfc/p2.vnnlib", "1", "holds", "3"],
                       ["mnistfc", "./benchmarks/mnistfc/a.onnx", "./benchmarks/mnistfc/p3.vnnlib", "1", "violated", "3"],
                       ["other", "./b.onnx", "./q.vnnlib", "1", "violated", "3"]], crlf=True)
    write_tool(third, [["mnistfc", "a.onnx", "p1.vnnlib", "1", "UNSAT", "3"],
                       ["mnistfc", "a.onnx", "p2.vnnlib", "1", "SAT", "3"],
                       ["mnistfc", "a.onnx", "p3.vnnlib", "1", "run_instance_timeout", "3"]])
    order, keys, counts, dis = compare([ours, other, third])
    assert order == ["ours", "other", "third"] and len(keys) == 3
    assert counts["ours"] == {"verified": 1, "falsified": 1, "unsolved": 1, "missing": 0}
    assert counts["other"] == {"verified": 2, "falsified": 1, "unsolved": 0, "missing": 0}
    assert counts["third"] == {"verified": 1, "falsified": 1, "unsolved": 1, "missing": 0}
    assert [k for k, _ in dis] == [("a.onnx", "p2.vnnlib")]
    rc = main(["compare", str(ours), str(other), str(third)])
    text = capsys.readouterr().out
    assert rc == 1 and "DISAGREEMENT on a.onnx p2.vnnlib" in text
    assert main(["compare", str(ours), str(third)]) == 0
    assert "no disagreements" in capsys.readouterr().out


def test_compare_reads_the_2021_results_if_present(capsys):
    res = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "vnncomp2021" / "results"
    if not res.is_dir():
        pytest.skip(f"results folder absent: {res}")
    order, keys, counts, dis = compare([res / "a-b-CROWN.csv", res / "VeriNet.csv"])
    assert len(keys) > 100 and counts["a-b-CROWN"]["verified"] > 50 and counts["a-b-CROWN"]["falsified"] > 10
