"""Hydra configs compose, map onto the verifier's options, and the CLI runs end to end."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from cegarnn.cli.verify import CONF_DIR, build_problem, options_from_cfg
from cegarnn.verifier.methods import METHODS
from cegarnn.verifier.options import Options

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "experiments" / "models"
needs_models = pytest.mark.skipif(not (MODELS / "generator.onnx").exists(), reason="demo models not committed")


def groups(name):
    return sorted(p.stem for p in (CONF_DIR / name).glob("*.yaml"))


def test_every_verifier_config_is_a_method_and_lists_every_option():
    assert set(groups("verifier")) == set(METHODS)
    fields = {f.name for f in dataclasses.fields(Options)} - {"bounds", "backend"}
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for v in groups("verifier"):
            cfg = compose("config", overrides=[f"verifier={v}"])
            assert set(cfg.verifier) - {"method"} == fields, v
            method, opts = options_from_cfg(cfg)
            assert method == v and isinstance(opts, Options)


@pytest.mark.parametrize("solver", groups("solver"))
@pytest.mark.parametrize("bounds", groups("bounds"))
@pytest.mark.parametrize("spec", groups("spec"))
def test_all_group_combinations_compose(solver, bounds, spec):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"solver={solver}", f"bounds={bounds}", f"spec={spec}"])
        _, opts = options_from_cfg(cfg)
        assert opts.bounds == bounds and opts.backend == cfg.solver.backend


def test_unknown_option_is_rejected():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["+verifier.colour=red"])
        with pytest.raises(ValueError, match="colour"):
            options_from_cfg(cfg)


@needs_models
def test_build_problem_from_config_and_bad_index():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["spec.image_index=2", "spec.delta=0.5"])
        prob = build_problem(cfg, ROOT)
        assert prob.n_free == 8 and prob.meta["label"] == int(__import__("numpy").load(MODELS / "test_images.npz")["labels"][2])
        cfg = compose("config", overrides=["spec.image_index=999"])
        with pytest.raises(ValueError, match="out of range"):
            build_problem(cfg, ROOT)


def _cli(tmp_path, *args):
    exe = Path(sys.executable).parent / "cegarnn-verify"
    env = dict(os.environ, HYDRA_FULL_ERROR="0")
    return subprocess.run([str(exe), f"hydra.run.dir={tmp_path}", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


@needs_models
def test_cli_end_to_end_writes_json_and_exit_code(tmp_path):
    p = _cli(tmp_path, "spec.image_index=3", "spec.delta=0.25", "verifier.time_limit=60")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "VERIFIED" in p.stdout
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "verified" and res["method"] == "cegar"


@needs_models
def test_cli_bad_input_exit_code_2(tmp_path):
    p = _cli(tmp_path, "spec.image_index=999")
    assert p.returncode == 2
    assert "out of range" in p.stderr and "Traceback" not in p.stderr
