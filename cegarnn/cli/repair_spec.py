"""``cegarnn repair CLASSIFIER --spec SPEC.npz --generator G.onnx``: repair a classifier until
generative specifications are verified (:func:`cegarnn.repair.repair_spec`; wiring only).

    cegarnn repair CLASSIFIER --spec SPEC.npz --generator G.onnx [--prior P.onnx --delta D]
                   [--keep K.npz] [--validation V.npz] [-o KEY=VALUE ...] [--out DIR] [--time-limit S]

``SPEC.npz`` holds the problems "``C(G([x, z]))`` keeps label ``y`` for every ``z`` in the latent
box": arrays ``x`` (N, ...) and ``y`` (N,), and the boxes ``latent_lower``/``latent_upper``
(N, k) — or, without them, ``--prior`` (``x -> (mu, log sigma^2)``) and ``--delta`` give
``mu ± delta·sigma``. Optional ``names`` (N,) label the problems in the outputs. ``V.npz`` (x, y):
clean data whose accuracy before/after goes into result.json; ``-o max_accuracy_drop=F`` stops
the repair before a change that would lower it by more than F (a fraction).

Writes ``DIR/result.json`` (per problem: the verifier's final verdict on the returned
classifier and its reason; the rounds), ``DIR/repaired.onnx`` (float32) when the classifier
changed, and ``DIR/before_after.png``. Exit codes: 0 every problem verified, 1 some left
falsified/unknown, 2 bad input (one ``error:`` line).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

from .exits import EXIT_ERROR, print_error
from .repair_files import _existing, _failed, _load_array, load_repair_data

RESULT_FILE, NETWORK_FILE, FIGURE_FILE = "result.json", "repaired.onnx", "before_after.png"


def load_spec_problems(spec, generator, prior=None, delta=None):
    """``(problems, names)`` from a SPEC.npz (see the module) for :func:`repair_spec`; raises
    :class:`~cegarnn.repair.RepairInputError` on a malformed file."""
    import numpy as np

    from ..repair import RepairInputError
    data = _load_array(spec, "spec")
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise RepairInputError(f"spec file {spec} must be an .npz archive with arrays x and y")
    with data:
        arr = {k: data[k] for k in data.files}
    for k in ("x", "y"):
        if k not in arr:
            raise RepairInputError(f"spec {spec} has no array {k!r}; it holds {', '.join(arr) or 'nothing'}")
    X = np.asarray(arr["x"], dtype=np.float64).reshape(len(arr["x"]), -1)
    y = np.asarray(arr["y"])
    if y.ndim != 1 or len(y) != len(X) or not np.issubdtype(y.dtype, np.integer):
        raise RepairInputError(f"spec {spec}: y must be {len(X)} integer labels, got {y.dtype} {y.shape}")
    if len(X) == 0:
        raise RepairInputError(f"spec {spec} holds no problems")
    k = generator.n_inputs - X.shape[1]
    if k <= 0:
        raise RepairInputError(f"generator takes {generator.n_inputs} inputs; images have {X.shape[1]} values: "
                               "no room for a latent code")
    if "latent_lower" in arr or "latent_upper" in arr:
        lo = np.asarray(arr.get("latent_lower"), dtype=np.float64)
        hi = np.asarray(arr.get("latent_upper"), dtype=np.float64)
        if lo.shape != (len(X), k) or hi.shape != (len(X), k):
            raise RepairInputError(f"spec {spec}: latent_lower and latent_upper must both be ({len(X)}, {k})")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo > hi):
            raise RepairInputError(f"spec {spec}: latent boxes must be finite with lower <= upper")
    else:
        if prior is None or delta is None:
            raise RepairInputError(f"spec {spec} has no latent_lower/latent_upper: give --prior and --delta")
        if not float(delta) >= 0:
            raise RepairInputError(f"delta must be >= 0, got {delta}")
        out = np.stack([prior.forward(x) for x in X])
        if out.shape[1] != 2 * k:
            raise RepairInputError(f"prior outputs {out.shape[1]} values; the generator's latent needs {2 * k}")
        mu, sigma = out[:, :k], np.exp(0.5 * out[:, k:])
        lo, hi = mu - float(delta) * sigma, mu + float(delta) * sigma
    names = [str(n) for n in arr["names"]] if "names" in arr else [str(i) for i in range(len(X))]
    return [(X[i], int(y[i]), lo[i], hi[i]) for i in range(len(X))], names


def run_spec_repair(model, spec, generator, prior=None, delta=None, keep=None, options: Optional[dict] = None,
                    out=".", time_limit: Optional[float] = None, echo: Callable[[str], None] = print,
                    validation=None):
    """Load, :func:`~cegarnn.repair.repair_spec`, write the outputs (see the module). Returns
    ``(exit code, SpecRepairResult or None)``."""
    from ..network import load_network
    from ..network.onnx_io import save_onnx
    from ..repair import RepairInputError, repair_spec
    from ..repair.spec_figure import spec_repair_figure

    opts = dict(options or {})
    try:
        if time_limit is not None:
            if not float(time_limit) > 0:
                raise RepairInputError(f"time limit must be > 0 seconds, got {time_limit!r}")
            opts["time_limit"] = float(time_limit)
        C = load_network(_existing(model, "model"))
        G = load_network(_existing(generator, "generator"))
        P = load_network(_existing(prior, "prior")) if prior is not None else None
        problems, names = load_spec_problems(spec, G, P, delta)
        keep_pair = None
        if keep is not None:
            kx, ky, _ = load_repair_data(keep)
            keep_pair = (kx, ky)
        if validation is not None:
            vx, vy, _ = load_repair_data(validation)
            opts["validation"] = (vx, vy)
        result = repair_spec(G, C, problems, keep=keep_pair, **opts)
    except (ValueError, OSError) as e:
        print_error(e)
        return EXIT_ERROR, None
    except TypeError as e:
        if "keyword argument" in str(e):
            print_error(f"repair_spec does not take this option: {e}")
            return EXIT_ERROR, None
        return _failed(e), None
    except Exception as e:  # noqa: BLE001 - a failure, not bad input
        return _failed(e), None

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    res_path, net_path, fig_path = out_dir / RESULT_FILE, out_dir / NETWORK_FILE, out_dir / FIGURE_FILE
    res_path.write_text(json.dumps(dict(result.to_dict(), problems=names), indent=1))
    echo(f"repair_spec: {result.summary()}; stopped: {result.stopped}")
    if result.accuracy is not None:
        echo(f"validation accuracy: {100 * result.accuracy[0]:.2f} % -> {100 * result.accuracy[1]:.2f} %")
    echo(f"result: {res_path}")
    if result.repairs:
        save_onnx(result.classifier, net_path)
        echo(f"repaired classifier: {net_path}")
    elif net_path.exists():
        net_path.unlink()
        echo(f"removed {net_path} of an earlier run")
    try:
        spec_repair_figure(G, C, result.classifier, problems, result, fig_path, images=names)
        echo(f"before/after counterexamples: {fig_path}")
    except ValueError:
        pass                                    # no counterexample to draw
    return (0 if result.all_verified else 1), result


__all__ = ["run_spec_repair", "load_spec_problems"]
