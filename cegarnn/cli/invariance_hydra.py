"""``cegarnn-invariance``: the Hydra entry point of the invariance questions (config:
conf/invariance.yaml).

Config → :func:`cegarnn.cli.invariance.run_invariance` (the same call as ``cegarnn invariance``),
nothing else::

    cegarnn-invariance problem=invertibility model=net.onnx center=[0.1,0.2] radius=0.05
    cegarnn-invariance -m problem=invertibility model=net.onnx center=c.npy radius=0.01,0.05   # a sweep

``result.json`` goes to ``out``, by default Hydra's run dir (in a sweep: each job's dir). Exit
codes of a single run as ``cegarnn invariance``: 0 proved/refuted, 1 unknown, 2 bad input; in a
sweep a bad cell prints its error and the sweep goes on.
"""
from __future__ import annotations

from pathlib import Path

from .verify import CONF_DIR

# the ConfigStore name of conf/invariance.yaml (not "invariance": Hydra would use the yaml as a schema)
CONFIG_NAME = "cegarnn_invariance"
CONFIG_FILE = CONF_DIR / "invariance.yaml"


def register_config() -> None:
    """Store conf/invariance.yaml as the primary config ``cegarnn_invariance`` with ``options``
    open (as ``cegarnn-repair`` does, see :func:`cegarnn.cli.repair_hydra.register_config`)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf
    cfg = OmegaConf.load(CONFIG_FILE)
    if cfg.get("options") is None:
        cfg.options = {}
    OmegaConf.set_struct(cfg.options, False)
    ConfigStore.instance().store(name=CONFIG_NAME, node=cfg)


def invariance_from_cfg(cfg, out_default, echo=print):
    """``(exit code, result or None)`` of the question a composed conf/invariance.yaml describes."""
    from omegaconf import OmegaConf

    from .invariance import run_invariance
    options = OmegaConf.to_container(cfg.options, resolve=True) if cfg.get("options") is not None else {}
    models = [cfg.model] + ([cfg.model2] if cfg.get("model2") is not None else [])
    center = cfg.center
    if not isinstance(center, str):       # Hydra reads `center=0.1,0.2` as a list
        center = ",".join(str(v) for v in center) if OmegaConf.is_list(center) or isinstance(center, list) else str(center)
    domain = cfg.get("domain")
    if domain is not None and not isinstance(domain, str):
        domain = ",".join(str(v) for v in domain)
    out = cfg.get("out")
    return run_invariance(str(cfg.problem), models, center, cfg.radius, cfg.get("index"), domain, options,
                          out if out is not None else out_default, cfg.get("time_limit"), echo=echo)


def main() -> None:
    """``cegarnn-invariance``: Hydra entry point (see conf/invariance.yaml)."""
    from .repair_hydra import run_entry
    register_config()
    run_entry(CONFIG_NAME, invariance_from_cfg, "conf/invariance.yaml")


if __name__ == "__main__":
    main()
