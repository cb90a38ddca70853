"""``cegarnn-verify``: the Hydra entry point (see conf/config.yaml).

Configs → plain arguments → library calls: one verification (``verifier.cegar.run``) or, with
``experiment=...`` (a config with a ``sweep`` node), one cell of the distribution-shift sweep
(``shift.sweep.run_cell``). Exit codes: ``cli.exits``.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from .exits import EXIT_ERROR, exit_code, print_error

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"          # Hydra's config dir, found from the package (works from any cwd)


def _abs(path: str | None, base: Path) -> str | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_absolute():
        cand = base / p
        p = cand if cand.exists() else REPO_ROOT / p
    if not p.exists():
        raise FileNotFoundError(f"file not found: {path} (looked in {base} and {REPO_ROOT})")
    return str(p)


def build_problem(cfg, base: Path):
    """The Problem described by a composed config (``cfg.model``, ``cfg.spec``)."""
    import numpy as np

    from ..network import load_network
    from ..specs.problem import classification_problem, generative_problem, model_reference

    spec = cfg.spec
    images = np.load(_abs(cfg.model.images, base))
    xs, ys = images["images"], images["labels"]
    k = int(spec.image_index)
    if not 0 <= k < len(xs):
        raise ValueError(f"spec.image_index={k} out of range: the image file holds {len(xs)} images")
    x, y = xs[k].reshape(-1), int(ys[k])
    name = f"image{k}"
    if spec.kind == "generative":
        lat_lo = None if spec.get("latent_lower") is None else list(spec.latent_lower)
        lat_hi = None if spec.get("latent_upper") is None else list(spec.latent_upper)
        prior = None if lat_lo is not None else _abs(cfg.model.prior, base)
        return generative_problem(_abs(cfg.model.generator, base), _abs(cfg.model.classifier, base), x, y,
                                  latent_lower=lat_lo, latent_upper=lat_hi, prior=prior,
                                  delta=float(spec.delta) if prior else None,
                                  name=f"{name}-delta{spec.delta}")
    if spec.kind == "classification":
        path = _abs(cfg.model.classifier, base)
        return classification_problem(load_network(path), x, y, float(spec.eps),
                                      reference=model_reference(path), name=f"{name}-eps{spec.eps}")
    raise ValueError(f"unknown spec.kind {spec.kind!r} (generative | classification)")


def options_from_cfg(cfg):
    """``(method, Options)`` from the ``verifier``, ``bounds`` and ``solver`` nodes."""
    from ..verifier.options import Options
    v = dict(cfg.verifier)
    method = v.pop("method")
    v["bounds"] = cfg.bounds.method
    v["backend"] = cfg.solver.backend
    return method, Options.from_mapping(v)     # OptionError (a ValueError and a TypeError) naming an unknown option


def _sweep_cell(cfg, base: Path, multirun: bool):
    """One cell of an experiment sweep (conf/experiment/): many images, rows.csv in the job dir."""
    from collections import Counter

    from ..shift.sweep import run_cell
    from ..verifier.result import Verdict
    try:
        method, opts = options_from_cfg(cfg)
        rows = run_cell(shift=str(cfg.shift.name), classifier_name=str(cfg.classifier.name),
                        generator=_abs(cfg.model.generator, base), classifier=_abs(cfg.model.classifier, base),
                        prior=_abs(cfg.model.prior, base), images=_abs(cfg.model.images, base),
                        delta=float(cfg.spec.delta), method=method, options=opts,
                        n_images=int(cfg.sweep.n_images), first_image=int(cfg.sweep.first_image),
                        out_dir=".", resume=bool(cfg.sweep.get("resume", False)),
                        progress=lambda s: print(s, flush=True))
    except (ValueError, FileNotFoundError, TypeError) as e:
        print_error(e)
        if multirun:
            return None
        sys.exit(EXIT_ERROR)
    counts = dict(Counter(str(r["status"]) for r in rows))
    print(f"cell done: {counts}; rows in {Path('rows.csv').resolve()}")
    if multirun:
        return counts
    sys.exit(exit_code(all(r["status"] in (Verdict.VERIFIED, Verdict.FALSIFIED) for r in rows)))


def verify_main() -> None:
    """``cegarnn-verify``: Hydra entry point (see conf/config.yaml)."""
    import hydra
    from omegaconf import DictConfig

    start_dir = Path.cwd()

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _main(cfg: DictConfig) -> None:
        logging.basicConfig(level=getattr(logging, str(cfg.log_level).upper(), logging.INFO),
                            format="%(levelname)s %(name)s: %(message)s")
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from ..verifier.cegar import run
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN
        if cfg.get("sweep") is not None:
            return _sweep_cell(cfg, start_dir, multirun)
        try:
            problem = build_problem(cfg, start_dir)
            method, opts = options_from_cfg(cfg)
            result = run(problem, method, opts)
        except (ValueError, FileNotFoundError, TypeError) as e:
            print_error(e)
            if multirun:           # one bad cell must not stop a sweep
                return None
            sys.exit(EXIT_ERROR)
        print(result.summary())
        out = Path(cfg.output)
        out.write_text(json.dumps(result.to_dict(), indent=1))
        print(f"result written to {out.resolve()}")
        if multirun:
            return result.status
        sys.exit(exit_code(result.decided))

    _main()
