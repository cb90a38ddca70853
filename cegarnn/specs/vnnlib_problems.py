"""Problems from a VNN-LIB property and an ONNX network: one per input box of the property."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..network.reference import onnx_reference
from .vnnlib import VnnlibError, parse_vnnlib, vnnlib_sizes

__all__ = ["vnnlib_problems"]


def vnnlib_problems(onnx_path, vnnlib_path, *, fold_fixed: bool = True, reference: bool = True,
                    network=None) -> list:
    """One :class:`~cegarnn.specs.problem.Problem` per input box of the property.

    Inputs pinned by the property (``lower == upper``) are folded into the first layer with
    :meth:`Network.fix_inputs` (when ``fold_fixed`` and at least one input stays free); then the
    problem's inputs are the free ones only and ``problem.full_input`` maps them back.
    ``reference`` (default on) attaches onnxruntime as the original model, evaluated on the full
    input, so every counterexample is confirmed on it. Errors: :class:`VnnlibError` (property,
    size mismatches) and :class:`~cegarnn.network.NetworkError` (model).
    """
    from ..network import Network, NetworkError, load_onnx     # looked up at call time (tests patch load_onnx)
    from .problem import Problem

    onnx_path, vnnlib_path = Path(onnx_path), Path(vnnlib_path)
    parts = None
    if network is None:
        network, parts = load_onnx(onnx_path, return_input_parts=True)
    cases = parse_vnnlib(vnnlib_path)
    if not cases:
        return []
    nx, ny = vnnlib_sizes(cases)
    if nx != network.n_inputs:
        raise VnnlibError(f"{vnnlib_path.name} declares {nx} inputs (X_0..X_{nx - 1}) but network "
                          f"{onnx_path.name} has {network.n_inputs} inputs")
    if ny != network.n_outputs:
        raise VnnlibError(f"{vnnlib_path.name} declares {ny} outputs (Y_0..Y_{ny - 1}) but network "
                          f"{onnx_path.name} has {network.n_outputs} outputs")
    ref_full = onnx_reference(onnx_path, parts) if reference else None
    stem = onnx_path.name
    for suf in (".gz", ".onnx"):
        stem = stem[:-len(suf)] if stem.endswith(suf) else stem
    pstem = vnnlib_path.name
    for suf in (".gz", ".vnnlib"):
        pstem = pstem[:-len(suf)] if pstem.endswith(suf) else pstem

    problems = []
    for k, case in enumerate(cases):
        lo, hi, unsafe = case
        s_lo, s_hi = case.strict_lower, case.strict_upper
        name = f"{stem}/{pstem}" + (f"#{k}" if len(cases) > 1 else "")
        meta = {"network": str(onnx_path), "property": str(vnnlib_path), "case": k, "n_cases": len(cases)}
        fixed = lo == hi
        n_fixed = int(fixed.sum())
        net: Network = network
        full_input = None
        if fold_fixed and 0 < n_fixed < nx:
            try:
                net = network.fix_inputs(fixed, lo[fixed])
            except NetworkError:
                net = network           # e.g. first layer not affine: keep the zero-width box
            else:
                full_input = _embedder(fixed, lo)
                lo, hi = lo[~fixed], hi[~fixed]
                s_lo, s_hi = s_lo[~fixed], s_hi[~fixed]
                meta["fixed_inputs"] = n_fixed
        ref = None
        if ref_full is not None:
            ref = ref_full if full_input is None else _composed(ref_full, full_input)
        problems.append(Problem(net, lo, hi, unsafe, reference=ref, full_input=full_input, name=name, meta=meta,
                                strict_lower=s_lo if s_lo.any() else None,
                                strict_upper=s_hi if s_hi.any() else None))
    return problems


def _embedder(fixed: np.ndarray, values: np.ndarray):
    fixed = fixed.copy()
    base = np.where(fixed, values, 0.0)
    free_idx = np.flatnonzero(~fixed)

    def full_input(z):
        z2 = np.asarray(z, dtype=np.float64).reshape(-1, free_idx.shape[0])
        out = np.repeat(base[None, :], z2.shape[0], axis=0)
        out[:, free_idx] = z2
        return out
    return full_input


def _composed(ref, full_input):
    def run(z):
        return ref(full_input(z))
    return run
