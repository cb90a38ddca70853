"""Every config in conf/ composes, the shift-sweep experiment resolves into a consistent grid, and the
launcher configs (joblib, SLURM/local via submitit, Ray) compose and are accepted in multirun mode.
Nothing here runs a verification: multirun goes through Hydra's real sweeper with the launch step
replaced (joblib) or stopped at submission (submitit), and the CLI is only asked for `--cfg`."""
from __future__ import annotations

import inspect
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.utils import get_class
from omegaconf import OmegaConf

from cegarnn.cli.verify import CONF_DIR, options_from_cfg
from cegarnn.verifier.methods import METHODS

ROOT = Path(__file__).resolve().parents[1]
SHIFT_MODELS = ROOT / "experiments" / "models" / "shifts"
SWEEP = "shift_sweep"                      # the experiment the launcher configs are meant for
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"


# ----------------------------------------------------------------------------- discovery

def _defaults_groups(path: Path) -> set[str]:
    """Config groups a yaml's defaults list selects (`model: demo`, `/shift: x`, `override /hydra/launcher: y`)."""
    groups = set()
    for entry in OmegaConf.load(path).get("defaults", []):
        if isinstance(entry, str):          # `_self_` or a config of the same group
            continue
        for key in entry:
            groups.add(str(key).removeprefix("override ").strip().lstrip("/"))
    return groups


BASE_GROUPS = _defaults_groups(CONF_DIR / "config.yaml")       # model, spec, verifier, solver, bounds, experiment
EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def discover() -> list[tuple[str, str]]:
    """(group, option) for every yaml under conf/; group "" for primary configs (conf/config.yaml)."""
    out = []
    for p in sorted(CONF_DIR.rglob("*.yaml")):
        rel = p.relative_to(CONF_DIR)
        out.append(("/".join(rel.parent.parts), rel.stem))
    return out


def overrides_for(group: str, option: str) -> tuple[str, list[str]]:
    """(primary config, overrides) that compose `option` in the context where it is meant to be used."""
    if group == "":
        return option, []
    if group.startswith("hydra/"):                                  # launchers: the sweep on another backend
        return "config", [f"experiment={SWEEP}", f"{group}={option}"]
    if group in BASE_GROUPS:
        return "config", [f"{group}={option}"]
    users = [e for e in EXPERIMENTS if group in _defaults_groups(CONF_DIR / "experiment" / f"{e}.yaml")]
    if users:                                                       # only meaningful inside an experiment
        return "config", [f"experiment={users[0]}", f"{group}={option}"]
    return "config", [f"+{group}={option}"]                         # a new optional group


OPTIONS = discover()
LAUNCHERS = sorted(o for g, o in OPTIONS if g == "hydra/launcher")


def test_discovery_covers_every_yaml():
    files = sorted(CONF_DIR.rglob("*.yaml"))
    assert files and len(OPTIONS) == len(files)
    groups = {g for g, _ in OPTIONS}
    assert {"", "model", "spec", "verifier", "solver", "bounds", "experiment", "shift", "classifier",
            "hydra/launcher"} <= groups
    assert BASE_GROUPS >= {"model", "spec", "verifier", "solver", "bounds", "experiment"}
    assert {"slurm", "ray"} <= set(LAUNCHERS) and SWEEP in EXPERIMENTS


# ----------------------------------------------------------------------------- helpers

def _compose(overrides, config="config"):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose(config, overrides=list(overrides), return_hydra_config=True)


def _resolved_app(cfg) -> dict:
    """The non-hydra part with every interpolation resolved (`${hydra:...}` included)."""
    HydraConfig.instance().set_config(cfg)
    app = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    return OmegaConf.to_container(app, resolve=True)


def _subdir(cfg) -> str:
    HydraConfig.instance().set_config(cfg)          # ${hydra:runtime.choices...} reads the current config
    return cfg.hydra.sweep.subdir


def _sweep_values(key: str, value: str) -> list[str]:
    """The values of one sweeper param (`a,b,c`, `choice(...)`, `range(...)`), as Hydra expands them."""
    ov = OverridesParser.create().parse_override(f"{key}={value}")
    return list(ov.sweep_string_iterator()) if ov.is_sweep_override() else [ov.get_value_element_as_str()]


def _launcher_keys(name: str) -> set[str]:
    return set(_compose([f"hydra/launcher={name}"]).hydra.launcher)


def _pinned_launcher_keys(experiment: str = SWEEP) -> set[str]:
    node = OmegaConf.select(OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml"), "hydra.launcher")
    return set(node) if node is not None else set()


def _assert_experiment_fits_launcher(launcher: str) -> None:
    """The experiment must not set launcher fields that `launcher` lacks (a joblib-only `n_jobs` in
    the experiment broke SLURM composition and Ray launching); per-launcher settings live in
    conf/hydra/launcher/*.yaml."""
    foreign = _pinned_launcher_keys() - _launcher_keys(launcher)
    assert not foreign, (f"experiment/{SWEEP}.yaml sets hydra.launcher.{','.join(sorted(foreign))}, "
                         f"which launcher {launcher!r} does not define")


def _effective_n_jobs(n: int) -> int:     # joblib: -1 = all CPUs, -2 = all but one, ...
    return n if n > 0 else (os.cpu_count() or 1) + 1 + n


# ----------------------------------------------------------------------------- every option composes

def _check_shift(cfg, option):
    assert cfg.shift.name == option
    gen, prior = cfg.model.generator, cfg.model.prior
    assert gen == cfg.shift.generator and gen.endswith(f"{option}/generator.onnx"), gen
    assert prior.endswith(f"{option}/prior.onnx"), prior
    if SHIFT_MODELS.is_dir():
        assert (ROOT / gen).is_file() and (ROOT / prior).is_file(), option


def _check_classifier(cfg, option):
    assert cfg.classifier.name == option and cfg.model.classifier == cfg.classifier.path
    if SHIFT_MODELS.is_dir():
        assert (ROOT / cfg.model.classifier).is_file(), option


def _check_experiment(cfg, option):
    assert cfg.spec.delta == cfg.delta and cfg.verifier.method == cfg.method
    method, _ = options_from_cfg(cfg)                 # the verifier node maps onto Options
    assert method == cfg.method
    for f in ("generator", "prior", "classifier", "images"):
        assert cfg.model[f], f


def _check_launcher(cfg, option):
    launcher = cfg.hydra.launcher
    assert launcher._target_.startswith("hydra_plugins.")
    OmegaConf.to_container(launcher, resolve=True)    # e.g. ${hydra.sweep.dir} in submitit_folder
    # an experiment may change a launcher's values, never add fields the launcher lacks
    assert set(launcher) == _launcher_keys(option)


CHECKS = {"shift": _check_shift, "classifier": _check_classifier, "experiment": _check_experiment,
          "hydra/launcher": _check_launcher}


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g or 'primary'}/{o}" for g, o in OPTIONS])
def test_every_config_composes(request, group, option):
    config, overrides = overrides_for(group, option)
    if group == "hydra/launcher":
        _assert_experiment_fits_launcher(option)
    cfg = _compose(overrides, config)
    if group:
        assert cfg.hydra.runtime.choices[group] == option
    _resolved_app(cfg)                                  # every interpolation of the app config resolves
    CHECKS.get(group, lambda *_: None)(cfg, option)


# ----------------------------------------------------------------------------- the experiment

def test_sweep_grid_lists_every_method_and_existing_shifts():
    cfg = _compose([f"experiment={SWEEP}"])
    params = cfg.hydra.sweeper.params
    methods = _sweep_values("method", params.method)
    shifts = _sweep_values("shift", params.shift)
    deltas = [float(d) for d in _sweep_values("delta", params.delta)]
    assert sorted(methods) == sorted(METHODS)     # every method of the registry, once
    assert set(methods) <= {p.stem for p in (CONF_DIR / "verifier").glob("*.yaml")}
    assert len(set(shifts)) >= 5
    for s in shifts:
        assert (CONF_DIR / "shift" / f"{s}.yaml").is_file(), s
    assert deltas and all(d > 0 for d in deltas)
    # a cell writes into its own subdir: classifier/shift/delta/method (what `cegarnn report` reads)
    assert _resolved_app(cfg)["sweep"]["n_images"] >= 1
    assert _subdir(cfg) == "mlp/rotation/delta1.0/cegar"


def test_command_line_overrides_reach_every_node():
    cfg = _compose([f"experiment={SWEEP}", "shift=rotation", "delta=0.5", "method=lp"])
    app = _resolved_app(cfg)
    assert app["model"]["generator"].endswith("rotation/generator.onnx")
    assert app["delta"] == app["spec"]["delta"] == 0.5
    assert app["method"] == app["verifier"]["method"] == "lp"
    method, opts = options_from_cfg(cfg)
    assert method == "lp" and opts.time_limit == cfg.verifier.time_limit
    assert _subdir(cfg) == "mlp/rotation/delta0.5/lp"
    cfg = _compose([f"experiment={SWEEP}", "classifier=conv", "shift=shear", "delta=0.25", "method=bab-crown"])
    assert _subdir(cfg) == "conv/shear/delta0.25/bab-crown"
    assert cfg.model.classifier.endswith("classifier_conv.onnx")


# ----------------------------------------------------------------------------- launchers

def test_slurm_launcher_values():
    cfg = _compose(["hydra/launcher=slurm"])
    sl = cfg.hydra.launcher
    assert sl._target_ == SLURM
    cls = get_class(sl._target_)                      # the plugin is a project dependency
    assert issubclass(cls, Launcher)
    assert sl.partition is None and sl.nodes == 1 and sl.tasks_per_node == 1
    assert sl.cpus_per_task == 1 and sl.mem_gb == 4 and sl.array_parallelism >= 1
    assert sl.max_num_timeout == 0
    assert OmegaConf.to_container(sl)["submitit_folder"].startswith("${hydra.sweep.dir}/")
    # a cell (n_images x time_limit, sequential) fits the wall time with a wide margin
    exp = _compose([f"experiment={SWEEP}"])
    assert sl.timeout_min * 60 >= 3 * exp.sweep.n_images * exp.verifier.time_limit
    local = _compose(["hydra/launcher=slurm_local"]).hydra.launcher
    assert local._target_ == LOCAL and issubclass(get_class(local._target_), Launcher)


def test_ray_launcher_fields():
    ray = _compose(["hydra/launcher=ray"]).hydra.launcher
    assert ray._target_ == RAY
    # RayLauncherConf: {_target_, ray: {init: <ray.init kwargs>, remote: <ray.remote kwargs>}}
    assert set(ray) == {"_target_", "ray"} and set(ray.ray) == {"init", "remote"}
    assert ray.ray.init.address is None and ray.ray.remote.num_cpus == 1
    try:                                              # not a project dependency (it pins its own ray)
        cls = get_class(RAY)
    except ImportError:
        return
    assert set(inspect.signature(cls).parameters) == {"ray"}


def test_joblib_is_the_sweep_default():
    cfg = _compose([f"experiment={SWEEP}"])
    assert cfg.hydra.runtime.choices["hydra/launcher"] == "local"     # conf/hydra/launcher/local.yaml
    assert cfg.hydra.launcher._target_ == JOBLIB
    assert _effective_n_jobs(cfg.hydra.launcher.n_jobs) >= 1


# ----------------------------------------------------------------------------- multirun, nothing run

def _never(cfg):
    raise AssertionError("a job was run")


def _done():
    r = JobReturn()
    r.status, r._return_value = JobStatus.COMPLETED, None
    return r


def _multirun(overrides, tmp_path, monkeypatch, *, validate=True):
    """Hydra's own multirun (compose in MULTIRUN mode, sweeper expands the grid, validates every cell,
    instantiates the real launcher) with the launch step recorded instead of run. Returns (launcher, cells)."""
    from hydra.core.plugins import Plugins
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    seen = {}
    real = Plugins.instantiate_launcher

    def instantiate_launcher(self, **kw):
        launcher = real(self, **kw)
        seen["launcher"] = launcher

        def launch(job_overrides, initial_job_idx):
            seen.setdefault("cells", []).extend(list(o) for o in job_overrides)
            return [_done() for _ in job_overrides]
        monkeypatch.setattr(launcher, "launch", launch)
        return launcher

    monkeypatch.setattr(Plugins, "instantiate_launcher", instantiate_launcher)
    if not validate:
        monkeypatch.setattr(BasicSweeper, "validate_batch_is_legal", lambda self, batch: None)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        GlobalHydra.instance().hydra.multirun(
            config_name="config", task_function=_never, with_log_configuration=False,
            overrides=[*overrides, f"hydra.sweep.dir={tmp_path}"])
    return seen["launcher"], seen["cells"]


def _cells(cells):
    return {tuple(sorted(c)) for c in cells}


def test_default_grid_expands_to_the_full_product(tmp_path, monkeypatch):
    launcher, cells = _multirun([f"experiment={SWEEP}"], tmp_path, monkeypatch, validate=False)
    assert type(launcher).__module__ + "." + type(launcher).__name__ == JOBLIB
    params = _compose([f"experiment={SWEEP}"]).hydra.sweeper.params
    axes = [[f"{k}={v}" for v in _sweep_values(k, params[k])] for k in params]
    expected = {tuple(sorted([*combo, f"experiment={SWEEP}"])) for combo in itertools.product(*axes)}
    assert len(cells) == len(expected) >= 5 * 3 * 5 and _cells(cells) == expected


def test_command_line_grid_replaces_sweeper_params(tmp_path, monkeypatch):
    _, cells = _multirun([f"experiment={SWEEP}", "shift=rotation,shear", "delta=1.0", "method=cegar,lp"],
                         tmp_path, monkeypatch)            # every cell validated (composed) by Hydra
    assert _cells(cells) == {tuple(sorted([f"experiment={SWEEP}", f"shift={s}", "delta=1.0", f"method={m}"]))
                             for s in ("rotation", "shear") for m in ("cegar", "lp")}
    assert (tmp_path / "multirun.yaml").is_file() and not any(tmp_path.rglob("rows.csv"))


@pytest.mark.parametrize("experiment", [False, True], ids=["base-config", SWEEP])
def test_slurm_sweep_reaches_sbatch(request, experiment, tmp_path, monkeypatch):
    """The real SlurmLauncher.launch: submitit validates the parameters and writes the sbatch script;
    submission (map_array) is intercepted, so nothing reaches a scheduler."""
    import submitit

    if experiment:
        _assert_experiment_fits_launcher("slurm")
    seen = {}

    class _Job:
        def results(self):
            return [_done()]

    def map_array(self, fn, *args):
        seen["executor"], seen["n"] = self, len(args[0])
        return [_Job() for _ in args[0]]

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", map_array)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))   # "srun exists"
    grid = ([f"experiment={SWEEP}", "shift=rotation", "delta=0.5", "method=crown,lp"] if experiment
            else ["spec.image_index=0,1", "verifier=crown"])
    from hydra.core.plugins import Plugins
    real = Plugins.instantiate_launcher
    monkeypatch.setattr(Plugins, "instantiate_launcher",
                        lambda self, **kw: seen.setdefault("launcher", real(self, **kw)))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        GlobalHydra.instance().hydra.multirun(
            config_name="config", task_function=_never, with_log_configuration=False,
            overrides=[*grid, "hydra/launcher=slurm", "hydra.launcher.partition=cpu",
                       "hydra.launcher.account=proj", f"hydra.sweep.dir={tmp_path}"])
    assert type(seen["launcher"]).__name__ == "SlurmLauncher" and seen["n"] == 2
    script = seen["executor"]._executor._make_submission_file_text("true", "uid")   # submitit internals
    for line in ("--cpus-per-task=1", "--ntasks-per-node=1", "--mem=4GB", "--time=60", "--partition=cpu",
                 "--account=proj", f"--output={tmp_path}/.submitit/"):
        assert f"#SBATCH {line}" in script, line
    assert not any(tmp_path.rglob("*.pkl"))           # nothing was pickled for submission


@pytest.mark.parametrize("launcher, target", [("joblib", JOBLIB), ("slurm", SLURM)])
def test_cli_accepts_sweep_command_line_without_running(request, launcher, target, tmp_path):
    """`cegarnn-verify ... --cfg hydra` prints the config and exits. (Hydra 1.3 refuses `-m` together
    with `--cfg`, and `--cfg` composes in RUN mode, so the cell is given with single values.)"""
    _assert_experiment_fits_launcher(launcher)
    cmd = [sys.executable, "-c", "from cegarnn.cli.verify import verify_main; verify_main()",
           f"experiment={SWEEP}", "shift=rotation", "delta=0.5", "method=crown", f"hydra/launcher={launcher}",
           "--cfg", "hydra", "-p", "hydra.launcher"]
    if launcher == "slurm":
        cmd.insert(-4, "hydra.launcher.partition=cpu")
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, HYDRA_FULL_ERROR="0"))
    assert p.returncode == 0, p.stderr[-2000:]
    printed = OmegaConf.create(p.stdout)
    assert printed._target_ == target
    if launcher == "slurm":
        assert printed.partition == "cpu" and printed.cpus_per_task == 1
    assert list(tmp_path.iterdir()) == []             # no run dir, no multirun dir, nothing launched
