"""``cegarnn repair`` and ``cegarnn-repair``: a tiny ONNX network repaired end to end (real HiGHS,
real files, the written repaired.onnx run by onnxruntime), the exit codes (0 repaired, 1
infeasible/unknown, 2 bad input with one ``error:`` line), algorithms reached through REPAIRS only,
and the Hydra entry writing the same result.json."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cegarnn.cli.commands import main as cli_main
from cegarnn.network import Affine, Network, ReLU
from cegarnn.network.onnx_io import save_onnx
from cegarnn.repair import REPAIRS, RepairAlgorithm, RepairReason, RepairResult
from cegarnn.repair.result import INFEASIBLE

ROOT = Path(__file__).resolve().parents[1]
N_IN, N_HID, N_OUT = 4, 8, 3


def _network() -> Network:
    rng = np.random.default_rng(1)
    return Network((Affine(rng.normal(size=(N_HID, N_IN)), rng.normal(size=N_HID)), ReLU(),
                    Affine(rng.normal(size=(N_OUT, N_HID)), rng.normal(size=N_OUT))), (N_IN,))


@pytest.fixture
def case(tmp_path):
    """net.onnx (4 -> 8 ReLU -> 3), fix.npz: 5 inputs with labels the network does not give them
    (its prediction + 1 mod 3), the same as x.npy + y.npy, and keep.npz (20 inputs, their labels)."""
    net = _network()
    model = tmp_path / "net.onnx"
    save_onnx(net, model)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(5, N_IN))
    y = (net.forward(X).argmax(1) + 1) % N_OUT
    np.savez(tmp_path / "fix.npz", x=X, y=y)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    Xk = rng.normal(size=(20, N_IN))
    np.savez(tmp_path / "keep.npz", x=Xk, y=net.forward(Xk).argmax(1))
    return {"dir": tmp_path, "model": model, "X": X, "y": y, "net": net}


def _run(capsys, *args):
    code = cli_main(["repair", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _onnx_labels(path, X) -> np.ndarray:
    """Labels of the ONNX model on X, run by onnxruntime in float32 (one input per run: batch 1)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.array([int(sess.run(None, {name: x[None].astype(np.float32)})[0].argmax()) for x in X])


# ----------------------------------------------------------------------------- repaired

@pytest.mark.parametrize("files, options", [
    (("--inputs", "fix.npz"), ["layer=-1", 'norm="l1"', "tie_break=linf"]),
    (("--inputs", "x.npy", "--labels", "y.npy"), ["layer=0", "margin=0.01"]),
], ids=["npz-last-layer", "npy-first-layer"])
def test_cli_repairs_and_the_written_onnx_gives_the_labels(case, capsys, files, options):
    d, out = case["dir"], case["dir"] / "out"
    assert np.all(_onnx_labels(case["model"], case["X"]) != case["y"])      # every input needs the repair
    args = [case["model"], *(d / f if f.endswith((".npz", ".npy")) else f for f in files), "--out", out]
    for o in options:
        args += ["-o", o]
    code, stdout, stderr = _run(capsys, *args)
    assert code == 0, stdout + stderr
    res = json.loads((out / "result.json").read_text())
    assert res["status"] == "repaired" and res["check"]["n_met_float32"] == len(case["y"])
    assert stdout.splitlines()[0].startswith("finetune: repaired")
    assert str(out / "result.json") in stdout and str(out / "repaired.onnx") in stdout
    np.testing.assert_array_equal(_onnx_labels(out / "repaired.onnx", case["X"]), case["y"])
    if "layer=0" in options:
        assert res["layer"] == 0                                            # the first Affine layer changed


def test_keep_inputs_and_time_limit_reach_the_algorithm(case, capsys):
    d = case["dir"]
    code, stdout, stderr = _run(capsys, case["model"], "--inputs", d / "fix.npz", "--keep", d / "keep.npz",
                                "-o", "keep_mode=hinge", "-o", "tie_break=keep", "--time-limit", "30",
                                "--out", d / "out")
    assert code == 0, stdout + stderr
    res = json.loads((d / "out" / "result.json").read_text())
    assert res["extra"]["keep_total"] == 20 and [s["name"] for s in res["stages"]] == ["min linf", "tie-break keep"]


# ----------------------------------------------------------------------------- infeasible

def _contradiction(case) -> Path:
    x = case["X"][0]
    path = case["dir"] / "contra.npz"
    np.savez(path, x=np.stack([x, x]), y=np.array([0, 2]))                 # one input, two labels
    return path


def test_contradictory_labels_exit_1_infeasible(case, capsys):
    out = case["dir"] / "out"
    out.mkdir()
    (out / "repaired.onnx").write_bytes(b"an earlier run's network")
    code, stdout, stderr = _run(capsys, case["model"], "--inputs", _contradiction(case), "-o", "layer=0",
                                "--out", out)
    assert code == 1, stdout + stderr
    res = json.loads((out / "result.json").read_text())
    assert res["status"] == "infeasible", res
    assert res["reason"] == RepairReason.MILP_INFEASIBLE.value
    assert not (out / "repaired.onnx").exists()                             # no stale network left behind
    assert "Traceback" not in stderr


def test_tiny_bound_on_the_first_layer_exit_1(case, capsys):
    out = case["dir"] / "out"
    code, stdout, stderr = _run(capsys, case["model"], "--inputs", case["dir"] / "fix.npz", "-o", "layer=0",
                                "-o", "bound=0.05", "--out", out)
    assert code == 1, stdout + stderr
    assert json.loads((out / "result.json").read_text())["status"] == "infeasible"


def test_contradictory_labels_on_the_last_layer_is_infeasible(case, capsys):
    out = case["dir"] / "out"
    code, _, _ = _run(capsys, case["model"], "--inputs", _contradiction(case), "--out", out)
    assert code == 1
    assert json.loads((out / "result.json").read_text())["status"] == "infeasible"


# ----------------------------------------------------------------------------- bad input: exit 2, one line

def _write(d: Path, name: str, **arrays) -> Path:
    path = d / name
    if name.endswith(".npy"):
        np.save(path, next(iter(arrays.values())))
    else:
        np.savez(path, **arrays)
    return path


BAD = {
    "label out of range": (lambda d, c: ["--inputs", _write(d, "b.npz", x=c["X"], y=np.array([0, 1, 2, 3, 0]))],
                           "label 3 out of range 0..2"),
    "input shape mismatch": (lambda d, c: ["--inputs", _write(d, "b.npz", x=np.zeros((2, 5)), y=np.array([0, 1]))],
                             "the network takes (4,)"),
    "label count mismatch": (lambda d, c: ["--inputs", d / "x.npy", "--labels",
                                           _write(d, "y3.npy", y=np.array([0, 1, 2]))], "5 inputs but 3 labels"),
    "empty input set": (lambda d, c: ["--inputs", _write(d, "b.npz", x=np.zeros((0, 4)), y=np.zeros(0, int))],
                        "empty"),
    "layer out of range": (lambda d, c: ["--inputs", d / "fix.npz", "-o", "layer=2"], "layer 2 out of range"),
    "missing inputs file": (lambda d, c: ["--inputs", d / "nope.npz"], "inputs file not found"),
    "npy without labels": (lambda d, c: ["--inputs", d / "x.npy"], "--labels"),
    "npz without x": (lambda d, c: ["--inputs", _write(d, "b.npz", a=c["X"])], "no array 'x' or 'inputs'"),
    "not a numpy file": (lambda d, c: ["--inputs", c["model"].with_suffix(".npy")], "cannot be read by numpy"),
    "keep labels out of range": (lambda d, c: ["--inputs", d / "fix.npz", "--keep",
                                               _write(d, "k.npz", x=c["X"], y=np.full(5, 9))], "out of range"),
    "unknown algorithm": (lambda d, c: ["--inputs", d / "fix.npz", "--algorithm", "magic"],
                          "unknown repair algorithm 'magic'"),
    "unknown option": (lambda d, c: ["--inputs", d / "fix.npz", "-o", "colour=red"], "colour"),
    "bad option value": (lambda d, c: ["--inputs", d / "fix.npz", "-o", "norm=l3"], "norm must be one of"),
    "option without =": (lambda d, c: ["--inputs", d / "fix.npz", "-o", "layer"], "KEY=VALUE"),
    "no inputs": (lambda d, c: [], "needs --inputs"),
}


@pytest.mark.parametrize("what", list(BAD))
def test_bad_input_exit_2_with_one_error_line(case, capsys, what):
    d = case["dir"]
    if what == "not a numpy file":
        case["model"].with_suffix(".npy").write_bytes(b"not numpy at all")
    make, message = BAD[what]
    code, stdout, stderr = _run(capsys, case["model"], *make(d, case), "--out", d / "out")
    assert code == 2, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert not (d / "out" / "result.json").exists()


def test_missing_model_in_a_subprocess_no_traceback(case):
    p = subprocess.run([sys.executable, "-m", "cegarnn.cli", "repair", str(case["dir"] / "nonet.onnx"),
                        "--inputs", str(case["dir"] / "fix.npz"), "--out", str(case["dir"] / "out")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert p.stderr.strip() == f"error: model file not found: {case['dir'] / 'nonet.onnx'}"


# ----------------------------------------------------------------------------- the registry

def _dummy(network, inputs, labels, keep, **options):
    return RepairResult(INFEASIBLE, RepairReason.LP_FARKAS, network, message=f"options {sorted(options)}")


def test_list_help_and_run_reach_every_registered_algorithm(case, capsys, monkeypatch):
    monkeypatch.setitem(REPAIRS, "dummy", RepairAlgorithm(_dummy, "a stand-in registered by the test"))
    code, stdout, _ = _run(capsys, "--list")
    assert code == 0
    for name, algo in REPAIRS.items():
        assert f"{name}  " in stdout and algo.summary in stdout
    with pytest.raises(SystemExit) as exc:
        cli_main(["repair", "--help"])
    assert exc.value.code == 0 and "a stand-in registered by the test" in capsys.readouterr().out
    code, stdout, stderr = _run(capsys, case["model"], "--inputs", case["dir"] / "fix.npz", "--algorithm", "dummy",
                                "-o", "alpha=1", "--time-limit", "5", "--out", case["dir"] / "out")
    assert code == 1, stderr
    res = json.loads((case["dir"] / "out" / "result.json").read_text())
    assert res["status"] == "infeasible" and res["message"] == "options ['alpha', 'time_limit']"


def test_a_failing_algorithm_exits_2_with_its_traceback(case, capsys, monkeypatch):
    def broken(*args, **kw):
        raise RuntimeError("solver crashed")
    monkeypatch.setitem(REPAIRS, "broken", RepairAlgorithm(broken, "always fails"))
    code, _, stderr = _run(capsys, case["model"], "--inputs", case["dir"] / "fix.npz", "--algorithm", "broken",
                           "--out", case["dir"] / "out")
    assert code == 2 and "Traceback" in stderr
    assert stderr.strip().splitlines()[-1] == "error: repair failed: RuntimeError: solver crashed"


# ----------------------------------------------------------------------------- the Hydra entry

def _hydra(monkeypatch, *overrides):
    from cegarnn.cli.repair_hydra import main
    monkeypatch.setattr(sys, "argv", ["cegarnn-repair", *overrides, "hydra/job_logging=none",
                                      "hydra/hydra_logging=none"])
    try:
        main()
    except SystemExit as e:
        return e.code
    return None


def _same_result(a: dict, b: dict):
    for k in ("status", "reason", "layer", "optimal", "check"):
        assert a[k] == b[k], k
    for k in a["norms"]:
        assert a["norms"][k] == pytest.approx(b["norms"][k], rel=1e-6, abs=1e-9)


def test_hydra_entry_writes_the_same_result_json(case, capsys, monkeypatch):
    d = case["dir"]
    code, stdout, stderr = _run(capsys, case["model"], "--inputs", d / "fix.npz", "-o", "layer=-1", "-o", "norm=l1",
                                "--out", d / "cli")
    assert code == 0, stdout + stderr
    run_dir = d / "hydra_run"
    code = _hydra(monkeypatch, f"model={case['model']}", f"inputs={d / 'fix.npz'}", "algorithm=finetune",
                  "options.layer=-1", "options.norm=l1", f"hydra.run.dir={run_dir}")
    assert code == 0, capsys.readouterr()
    _same_result(json.loads((run_dir / "result.json").read_text()), json.loads((d / "cli" / "result.json").read_text()))
    np.testing.assert_array_equal(_onnx_labels(run_dir / "repaired.onnx", case["X"]), case["y"])
    # bad input: exit 2 and one error line, as the CLI
    capsys.readouterr()
    assert _hydra(monkeypatch, f"model={case['model']}", f"inputs={d / 'fix.npz'}", "options.layer=5",
                  f"hydra.run.dir={d / 'bad'}") == 2
    assert capsys.readouterr().err.strip().startswith("error: layer 5 out of range")


def test_hydra_sweep_over_an_option(case, capsys, monkeypatch):
    d = case["dir"]
    sweep = d / "sweep"
    assert _hydra(monkeypatch, "-m", f"model={case['model']}", f"inputs={d / 'fix.npz'}", "options.norm=linf,l1",
                  f"hydra.sweep.dir={sweep}") is None
    res = [json.loads((sweep / str(i) / "result.json").read_text()) for i in (0, 1)]
    assert [r["status"] for r in res] == ["repaired", "repaired"]
    assert [r["stages"][0]["name"] for r in res] == ["min linf", "min l1"]
    assert res[0]["norms"]["linf"] <= res[1]["norms"]["linf"] + 1e-9       # each minimises its own norm
    assert res[1]["norms"]["l1"] <= res[0]["norms"]["l1"] + 1e-9
