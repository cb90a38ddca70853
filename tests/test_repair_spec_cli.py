"""``cegarnn repair --spec`` and ``cegarnn-repair spec=...``: generative problems repaired end to end
from files (tiny ONNX generator and classifier, real HiGHS, the written repaired.onnx re-verified),
the exit codes (0 all verified, 1 some not, 2 bad input with one ``error:`` line), the shift
experiment config, and the low-margin sampler."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cegarnn.cli.commands import main as cli_main
from cegarnn.network import load_network
from cegarnn.network.onnx_io import save_onnx
from cegarnn.repair.inputs import as_network
from cegarnn.repair.spec_samples import low_margin_points, unsafe_margin
from cegarnn.specs.problem import generative_problem
from cegarnn.verifier import verify

from test_repair_cli import _hydra

pytest.importorskip("highspy")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path, generative_case):
    """g.onnx, c.onnx and spec.npz with one falsified problem (seed 0, radius 2) and one verified
    one (the same image, radius 0.05)."""
    _, G, C, x, label, lo, hi = generative_case(0, 2.0)
    x1, label1, lo1, hi1 = x, label, lo / 40, hi / 40
    Gn, Cn = as_network(G), as_network(C)
    save_onnx(Gn, tmp_path / "g.onnx")
    save_onnx(Cn, tmp_path / "c.onnx")
    np.savez(tmp_path / "spec.npz", x=np.stack([x, x1]), y=np.array([label, label1]),
             latent_lower=np.stack([lo, lo1]), latent_upper=np.stack([hi, hi1]), names=np.array([10, 11]))
    return dict(dir=tmp_path, G=Gn, C=Cn, probs=[(x, label, lo, hi), (x1, label1, lo1, hi1)])


def _cli(capsys, *args):
    code = cli_main(["repair", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_repairs_until_every_problem_is_verified(files, capsys):
    d = files["dir"]
    before = [verify(generative_problem(files["G"], files["C"], *p[:2], latent_lower=p[2], latent_upper=p[3]),
                     time_limit=20).status for p in files["probs"]]
    assert before == ["falsified", "verified"]
    x0, lo0 = files["probs"][0][0], files["probs"][0][2]
    val = files["G"].forward(np.concatenate([np.tile(x0, (3, 1)), np.zeros((3, lo0.size))], 1))
    np.savez(d / "val.npz", x=val, y=files["C"].forward(val).argmax(1))       # the original is right on all 3
    code, out, err = _cli(capsys, d / "c.onnx", "--spec", d / "spec.npz", "--generator", d / "g.onnx",
                          "-o", "rounds=6", "-o", "verify_time=10", "--out", d / "out", "--validation", d / "val.npz")
    assert code == 0, out + err
    res = json.loads((d / "out" / "result.json").read_text())
    assert res["verdicts"] == ["verified", "verified"] and res["problems"] == ["10", "11"]
    assert res["stopped"] == "ALL_VERIFIED" and res["accuracy"][0] == 1.0
    assert "validation accuracy: 100.00 %" in out
    assert res["first_counterexamples"][0] is not None and res["first_counterexamples"][1] is None
    assert (d / "out" / "before_after.png").stat().st_size > 1000
    # the written classifier (float32 ONNX) is what is verified: an independent run agrees
    C1 = load_network(d / "out" / "repaired.onnx")
    for x, label, lo, hi in files["probs"]:
        assert verify(generative_problem(d / "g.onnx", d / "out" / "repaired.onnx", x, label, latent_lower=lo,
                                         latent_upper=hi), time_limit=20).status == "verified"
    z = np.array(res["first_counterexamples"][0])
    x, label = files["probs"][0][:2]
    img = files["G"].forward(np.concatenate([x, z]))
    assert files["C"].forward(img).argmax() != label and C1.forward(img).argmax() == label


@pytest.mark.parametrize("args, message", [
    (lambda d: ["--spec", d / "spec.npz"], "needs --generator"),
    (lambda d: ["--spec", d / "spec.npz", "--generator", d / "g.onnx", "--inputs", d / "spec.npz"], "exclude"),
    (lambda d: ["--spec", d / "nope.npz", "--generator", d / "g.onnx"], "spec file not found"),
    (lambda d: ["--spec", d / "nobox.npz", "--generator", d / "g.onnx"], "give --prior and --delta"),
    (lambda d: ["--spec", d / "badbox.npz", "--generator", d / "g.onnx"], "must both be (2, 2)"),
    (lambda d: ["--spec", d / "spec.npz", "--generator", d / "c.onnx"], "classifier expects"),
    (lambda d: ["--spec", d / "spec.npz", "--generator", d / "g.onnx", "-o", "samples=-1"], "samples must be"),
    (lambda d: ["--spec", d / "spec.npz", "--generator", d / "g.onnx", "-o", "area=maybe"], "area must be"),
    (lambda d: ["--spec", d / "spec.npz", "--generator", d / "g.onnx", "-o", "max_accuracy_drop=0.01"],
     "needs validation"),
    (lambda d: ["--spec", d / "spec.npz", "--generator", d / "g.onnx", "--validation", d / "none.npz"], "none.npz"),
])
def test_bad_spec_input_is_one_error_line(files, capsys, args, message):
    d = files["dir"]
    with np.load(d / "spec.npz") as z:
        np.savez(d / "nobox.npz", x=z["x"], y=z["y"])
        np.savez(d / "badbox.npz", x=z["x"], y=z["y"], latent_lower=z["latent_lower"][:, :1],
                 latent_upper=z["latent_upper"][:, :1])
    code, out, err = _cli(capsys, d / "c.onnx", *args(d), "--out", d / "out")
    assert code == 2, out + err
    assert err.strip().startswith("error:") and message in err and "Traceback" not in err
    assert not (d / "out" / "repaired.onnx").exists()


def test_hydra_shift_experiment_runs_spec_repair(files, monkeypatch, capsys):
    """The experiment config, with its files swapped for the tiny ones: the same repair as the CLI."""
    d = files["dir"]
    code = _hydra(monkeypatch, "--config-name", "cegarnn_repair_shifts", f"model={d / 'c.onnx'}",
                  f"spec={d / 'spec.npz'}", f"generator={d / 'g.onnx'}", "keep=null", "options.verify_time=10",
                  f"hydra.run.dir={d / 'run'}")
    assert code == 0, capsys.readouterr()
    assert json.loads((d / "run" / "result.json").read_text())["verdicts"] == ["verified", "verified"]


def test_shift_experiment_config_names_committed_files():
    from hydra import compose, initialize
    from omegaconf import OmegaConf

    from cegarnn.cli.repair_hydra import register_config
    register_config()
    with initialize(config_path=None, version_base="1.3"):          # as the entry point: no conf/ groups
        for shift in compose("cegarnn_repair_shifts", return_hydra_config=True).hydra.sweeper.params.shift.split(","):
            cfg = compose("cegarnn_repair_shifts", overrides=[f"shift={shift}"])
            c = OmegaConf.to_container(cfg, resolve=True)
            for key in ("model", "spec", "generator", "keep"):
                assert (ROOT / c[key]).is_file(), (shift, key, c[key])
            with np.load(ROOT / c["spec"]) as z:
                assert len(z["x"]) == len(z["y"]) == len(z["latent_lower"]) > 0


def test_low_margin_points_lie_in_the_box_below_the_threshold(generative_case):
    prob, *_ = generative_case(0, 2.0)
    z = low_margin_points(prob, 16, below=0.0, seed=3)
    assert len(z) >= 1                                  # a falsified problem: PGD finds violations
    assert np.all(z >= prob.lower) and np.all(z <= prob.upper)
    import torch
    m = unsafe_margin(prob, torch.as_tensor(prob.network.forward(z))).numpy()
    assert np.all(m < 0.0) and np.all(np.diff(m) >= 0)  # counterexamples on the IR, lowest first
    ok, *_ = generative_case(1, 1.0)
    assert verify(ok, time_limit=20).status == "verified"
    assert len(low_margin_points(ok, 16, below=0.0)) == 0      # a verified problem has none
    assert len(low_margin_points(ok, 16, below=np.inf)) == 16
