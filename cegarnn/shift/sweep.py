"""One cell of a distribution-shift sweep: one (shift, classifier, delta, method) over many images.

``run_cell`` loads the models once, verifies ``C(G(x, z))`` keeps the label of each test image
``x`` for every ``z`` in the prior box ``mu ± delta·sigma``, and appends one row per image to
``rows.csv`` as soon as that image is done (an interrupted cell keeps its finished rows; with
``resume=True`` a rerun skips them). Falsified images also go to ``counterexamples.npz`` (the
image, ``G(x, z)``, ``z``, and ``z`` in units of sigma). ``cegarnn.shift.report`` turns the rows of
a whole sweep into tables and plots. The Hydra job (``cegarnn-verify -m experiment=shift_sweep``)
only maps its config onto this function.
"""
from __future__ import annotations

import csv
import logging
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..verifier.methods import check_method
from ..verifier.result import Verdict
from .rows import COLUMNS, ERROR, fmt_value   # the rows.csv schema

log = logging.getLogger(__name__)


def _read_done(path: Path) -> set:
    if not path.is_file():
        return set()
    with path.open(newline="") as f:
        return {int(r["image"]) for r in csv.DictReader(f)}


def run_cell(*, shift: str, classifier_name: str, generator, classifier, prior, images, delta: float,
             method: str, options, n_images: int, first_image: int = 0, out_dir=".", resume: bool = False,
             progress: Optional[Callable[[str], None]] = None) -> list[dict]:
    """Verify images ``first_image .. first_image + n_images - 1`` of the ``images`` npz file.

    ``generator`` / ``classifier`` / ``prior``: ONNX paths (or anything ``load_network`` takes).
    ``options``: ``cegarnn.verifier.options.Options`` (its ``time_limit`` bounds each image).
    Returns the rows written (the ``COLUMNS`` of ``rows.csv``). A failure on one image becomes a
    row with status ``error`` and the exception in ``reason``; the other images still run.
    """
    from ..network import load_network
    from ..specs.problem import generative_problem, model_reference
    from ..verifier.cegar import run

    missing = check_method(method).missing()        # ValueError listing the methods if there is none
    if missing is not None:
        raise ValueError(missing)       # e.g. marabou's install hint: the grid runs it only where installed
    if delta < 0:
        raise ValueError(f"delta must be >= 0, got {delta}")
    if n_images < 1 or first_image < 0:
        raise ValueError(f"need n_images >= 1 and first_image >= 0, got {n_images}, {first_image}")
    with np.load(images) as z:
        xs, ys = z["images"], z["labels"]
        mnist = z["indices"] if "indices" in z else np.arange(len(xs))
    last = first_image + n_images
    if last > len(xs):
        raise ValueError(f"{images} holds {len(xs)} images; asked for images {first_image}..{last - 1}")
    gnet, cnet, pnet = load_network(generator), load_network(classifier), load_network(prior)
    gref, cref = model_reference(generator), model_reference(classifier)
    _warm_up()

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows_path, cex_path = out / "rows.csv", out / "counterexamples.npz"
    done = _read_done(rows_path) if resume else set()
    if not resume or not rows_path.is_file():
        with rows_path.open("w", newline="") as f:
            csv.writer(f).writerow(COLUMNS)
    cex = {k: [] for k in ("image", "label", "pred", "margin", "x", "shifted", "z", "z_units")}
    if resume and cex_path.is_file():
        with np.load(cex_path) as old:
            for k in cex:
                cex[k] = list(old[k])
    rows = []
    for i in range(first_image, last):
        if i in done:
            continue
        x, y = xs[i].reshape(-1).astype(np.float64), int(ys[i])
        row = dict(shift=shift, classifier=classifier_name, delta=float(delta), method=method, image=i,
                   mnist_index=int(mnist[i]), label=y, time_limit=float(options.time_limit))
        t0 = time.perf_counter()
        try:
            problem = generative_problem(gnet, cnet, x, y, prior=pnet, delta=delta,
                                         name=f"{shift}-image{i}-delta{delta:g}",
                                         generator_reference=gref, classifier_reference=cref)
            result = run(problem, method, options)
        except Exception as e:  # noqa: BLE001 - one bad instance must not end the cell
            log.error("image %d failed: %s", i, traceback.format_exc())
            row.update(status=ERROR, reason=f"{type(e).__name__}: {e}", time=time.perf_counter() - t0)
        else:
            s = result.stats
            row.update(status=result.status, reason=result.reason, time=time.perf_counter() - t0,
                       iterations=s.iterations, breakpoints=s.breakpoints_added, binaries=s.max_binaries,
                       boxes=s.boxes_bounded, solver_calls=s.solver_calls, time_attack=s.time_attack,
                       time_bounds=s.time_bounds, time_encode=s.time_encode, time_solver=s.time_solver)
            c = result.counterexample
            if result.status == Verdict.FALSIFIED and c is not None:
                z = np.asarray(c.free_input, dtype=np.float64)
                shifted = gnet.forward(np.concatenate([x, z]))
                pred = int(np.argmax(np.asarray(cref(shifted[None])).reshape(-1)))
                mu_lv = pnet.forward(x)
                k = mu_lv.shape[0] // 2
                sigma = np.exp(0.5 * mu_lv[k:])
                row.update(found_by=c.found_by, cex_margin=float(c.margin_ir), cex_pred=pred)
                for key, val in (("image", i), ("label", y), ("pred", pred), ("margin", float(c.margin_ir)),
                                 ("x", x.astype(np.float32)), ("shifted", shifted.astype(np.float32)),
                                 ("z", z), ("z_units", (z - mu_lv[:k]) / np.where(sigma > 0, sigma, 1.0))):
                    cex[key].append(val)
                np.savez_compressed(cex_path, shift=np.array(shift), classifier=np.array(classifier_name),
                                    method=np.array(method), delta=np.array(float(delta)),
                                    **{k2: np.asarray(v) for k2, v in cex.items()})
        with rows_path.open("a", newline="") as f:
            csv.writer(f).writerow([fmt_value(row.get(c, "")) for c in COLUMNS])
        rows.append(row)
        if progress is not None:
            progress(f"[{i - first_image + 1}/{n_images}] {shift} {classifier_name} delta={delta:g} {method} "
                     f"image {i}: {row['status']} in {row['time']:.2f}s")
    return rows


def _warm_up() -> None:
    """Import the bounding library before the first timed image (else image 0 pays ~1 s of imports)."""
    try:
        import auto_LiRPA  # noqa: F401
    except ImportError:     # compute_bounds falls back to interval bounds with a warning
        pass
