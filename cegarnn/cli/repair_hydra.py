"""``cegarnn-repair``: the Hydra entry point of repair (config: conf/repair.yaml).

Config → :func:`cegarnn.cli.repair.run_repair` (the same call as ``cegarnn repair``), nothing else::

    cegarnn-repair model=net.onnx inputs=fix.npz algorithm=finetune options.layer=-1
    cegarnn-repair -m model=net.onnx inputs=fix.npz options.norm=linf,l1      # one job per value

``result.json`` (and ``repaired.onnx`` when repaired) go to ``out``, by default Hydra's run dir
(in a sweep: each job's dir). Relative paths are relative to the directory the command starts in
(Hydra does not change into the run dir). Exit codes of a single run as ``cegarnn repair``: 0
repaired, 1 infeasible/unknown, 2 bad input; in a sweep a bad cell prints its error and the sweep
goes on.
"""
from __future__ import annotations

from pathlib import Path

from .verify import CONF_DIR

# the ConfigStore name of conf/repair.yaml; not "repair", which Hydra would match with the yaml as a schema
CONFIG_NAME = "cegarnn_repair"
CONFIG_FILE = CONF_DIR / "repair.yaml"
#: experiments stored beside it, each merged over conf/repair.yaml (``--config-name NAME``)
EXPERIMENTS = {"cegarnn_repair_shifts": CONF_DIR / "repair_shifts.yaml"}


def register_config() -> None:
    """Store conf/repair.yaml in Hydra's ConfigStore as the primary config ``cegarnn_repair``, with
    ``options`` an open dict, and each of :data:`EXPERIMENTS` merged over it under its name.

    Why not ``config_path=conf/``: conf/model/ is a config group there, so ``model=net.onnx``
    would be read as a group choice. Why open: Hydra closes every node, so ``options.KEY=VALUE``
    would need ``+`` for every key the yaml does not list, and the keys belong to the algorithm
    (any entry of REPAIRS)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf
    base = OmegaConf.load(CONFIG_FILE)
    for name, cfg in [(CONFIG_NAME, base)] + [(n, OmegaConf.merge(base, OmegaConf.load(f)))
                                              for n, f in EXPERIMENTS.items()]:
        if cfg.get("options") is None:
            cfg.options = {}
        OmegaConf.set_struct(cfg.options, False)
        ConfigStore.instance().store(name=name, node=cfg)


def repair_from_cfg(cfg, out_default, echo=print):
    """``(exit code, result or None)`` of the repair a composed conf/repair.yaml describes."""
    from omegaconf import OmegaConf

    from .exits import EXIT_ERROR, print_error
    from .repair import run_repair
    options = OmegaConf.to_container(cfg.options, resolve=True) if cfg.get("options") is not None else {}
    out = cfg.get("out")
    out = out if out is not None else out_default
    if cfg.get("spec") is not None:
        from .repair_spec import run_spec_repair
        if cfg.get("generator") is None:
            print_error("spec=... needs generator=... (conf/repair.yaml)")
            return EXIT_ERROR, None
        return run_spec_repair(cfg.model, cfg.spec, cfg.generator, cfg.get("prior"), cfg.get("delta"),
                               cfg.get("keep"), options, out, cfg.get("time_limit"), echo=echo,
                               validation=cfg.get("validation"))
    if cfg.get("inputs") is None:
        print_error("missing inputs=... or spec=... (conf/repair.yaml)")
        return EXIT_ERROR, None
    return run_repair(cfg.model, cfg.inputs, cfg.get("labels"), cfg.get("keep"), cfg.algorithm, options,
                      out, cfg.get("time_limit"), echo=echo)


def run_entry(config_name: str, from_cfg, conf_file: str) -> None:
    """The body of a Hydra entry point: ``from_cfg(cfg, output_dir, echo) -> (exit code, result)``
    per job; a missing mandatory value is a one-line error (exit 2); in a sweep a job returns its
    result's status instead of exiting, so one bad cell does not stop the others."""
    import sys

    import hydra
    from omegaconf import DictConfig

    from .exits import EXIT_ERROR, print_error

    @hydra.main(config_path=None, config_name=config_name, version_base="1.3")
    def _main(cfg: DictConfig):
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode
        from omegaconf.errors import MissingMandatoryValue

        hc = HydraConfig.get()
        try:
            code, result = from_cfg(cfg, Path(hc.runtime.output_dir), echo=lambda s: print(s, flush=True))
        except MissingMandatoryValue as e:
            print_error(f"missing {e.full_key}=... ({conf_file})")
            code, result = EXIT_ERROR, None
        if hc.mode == RunMode.MULTIRUN:
            return None if result is None else result.status
        sys.exit(code)

    _main()


def main() -> None:
    """``cegarnn-repair``: Hydra entry point (see conf/repair.yaml)."""
    register_config()
    run_entry(CONFIG_NAME, repair_from_cfg, "conf/repair.yaml")


if __name__ == "__main__":
    main()
