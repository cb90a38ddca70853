"""Network matching: how far two networks can be told apart on a box.

* :func:`max_difference`: ``max ||f1(x) - f2(x)||`` over ``x`` in the box (a network against its
  pruned, quantised or repaired copy). One copy of each network sharing the input.
* :func:`matching`: ``max ||f2(x) - f2(y)||`` over ``x, y`` in the box with ``||f1(x) - f1(y)||∞
  <= tau`` (``tau = 0``: ``f1(x) = f1(y)``): inputs that ``f1`` cannot tell apart but ``f2`` can
  (excessive invariance of ``f1`` measured by ``f2``). Two copies of each network.

What a result says (see :mod:`.core`): ``bound`` is a proved upper bound on the maximum (MILP dual
bound, valid for the real networks, sigmoid/tanh over-approximated); ``value`` is the objective at
a witness recomputed in float64 on the IR — and, when the networks came from files or modules, on
the original models too, ``value`` then being the smaller of the two. A witness of
:func:`matching` also meets the constraint on the IR within ``tau + confirm_tol * scale`` (and
``reference_tol`` on the original ``f1``). With ``threshold``: ``proved`` means the maximum is at
most ``threshold``, ``refuted`` a witness above it. Without: ``proved`` means the maximum lies in
``[value, bound]`` with ``bound - value <= gap_tol * max(1, |value|)``.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np

from ..bounds import compute_bounds
from ..encoding import BigMError, Program
from .check import constraint_check, jacobian, project_pair, reference_outputs
from .core import Candidate, Clock, Search, close_outputs, encode_copy, run_search
from .coupling import add_twin_coupling
from .inputs import as_model, check_box, check_nonneg, check_norm, make_options, same_shapes
from .objective import norm_value, objective_pieces
from .result import UNKNOWN, InvarianceReason, InvarianceResult, Witness


def _threshold(threshold) -> Optional[float]:
    return None if threshold is None else check_nonneg(threshold, "threshold")


def _settings(opts, lo, hi, m1, m2, **kw) -> dict:
    return {"lower": lo, "upper": hi, "confirm_tol": opts.confirm_tol, "reference_tol": opts.reference_tol,
            "bounds": opts.bounds, "backend": opts.backend, "time_limit": opts.time_limit,
            "networks": [m1.name, m2.name], **kw}


def _value(ir: float, ref: Optional[float]) -> float:
    return ir if ref is None else min(ir, ref)


def max_difference(f1, f2, lower, upper, *, norm: str = "linf", threshold=None, **options) -> InvarianceResult:
    """``max_x ||f1(x) - f2(x)||`` over the box ``[lower, upper]`` (module docstring).

    ``f1``, ``f2``: Networks, ``nn.Module``s or model paths with the same inputs and outputs.
    ``norm``: 'linf' or 'l1'. ``threshold``: prove ``<= threshold`` or find a witness above it
    (None: enclose the maximum). Other keyword options: :class:`~.inputs.InvarianceOptions`."""
    opts = make_options(dict(options))
    m1, m2 = as_model(f1, "f1"), as_model(f2, "f2")
    same_shapes(m1, m2)
    lo, hi = check_box(lower, upper, m1.network.n_inputs)
    norm = check_norm(norm)
    th = _threshold(threshold)
    clock = Clock(opts)
    st = clock.stats
    settings = _settings(opts, lo, hi, m1, m2, norm=norm)
    t = time.perf_counter()
    b1 = compute_bounds(m1.network, lo, hi, opts.bounds)
    b2 = compute_bounds(m2.network, lo, hi, opts.bounds)
    st.time_bounds = time.perf_counter() - t
    t = time.perf_counter()
    program = Program("max-difference")
    try:
        e1 = encode_copy(program, m1.network, b1, "f1(x)")
        e2 = encode_copy(program, m2.network, b2, "f2(x)", input_vars=e1.input_vars)
        pieces = objective_pieces(program, e1.output_vars, e2.output_vars, 0.0, norm, opts.split is not False,
                                  signs=(1, -1), name="f1-f2")
    except BigMError as e:
        return InvarianceResult("max-difference", UNKNOWN, InvarianceReason.ENCODING, threshold=th,
                                settings=settings, stats=clock.finish(), message=str(e))
    st.time_encode = time.perf_counter() - t

    def at(x: np.ndarray, found_by: str = "solver") -> Candidate:
        x = np.clip(x, lo, hi)
        y1, y2 = m1.network.forward(x), m2.network.forward(x)
        ir = norm_value(y1 - y2, norm)
        ref = None
        if m1.reference is not None or m2.reference is not None:
            r1 = reference_outputs(m1.reference, x)
            r2 = reference_outputs(m2.reference, x)
            ref = norm_value((y1 if r1 is None else r1[0]) - (y2 if r2 is None else r2[0]), norm)
        w = Witness(x=x.tolist(), y=None, value_ir=ir, value_reference=ref,
                    outputs={"f1(x)": y1.tolist(), "f2(x)": y2.tolist()}, found_by=found_by)
        return Candidate(_value(ir, ref), True, w)

    t = time.perf_counter()
    initial = at(_best_sample(m1.network, m2.network, lo, hi, norm), "sampling")
    st.time_checks += time.perf_counter() - t
    search = Search("max-difference", program, [e1, e2], pieces, lambda sol_x: at(sol_x[e1.input_vars]), th, initial)
    return run_search(search, opts, clock, settings)


def _best_sample(n1, n2, lo, hi, norm: str, k: int = 256) -> np.ndarray:
    """A point of the box with a large ``||f1 - f2||`` on the IR: the best of the centre, ``k``
    random points and ``k`` random vertices (seeded), improved by signed-gradient ascent from the
    four best. A starting value only (pieces that cannot beat it stop early); no guarantee."""
    rng = np.random.default_rng(0)
    pts = np.concatenate([(lo + hi)[None] / 2, lo + (hi - lo) * rng.random((k, lo.size)),
                          np.where(rng.random((k, lo.size)) < 0.5, lo, hi)])
    d = np.abs(n1.forward(pts) - n2.forward(pts))
    v = d.max(axis=1) if norm == "linf" else d.sum(axis=1)
    best_x, best_v = pts[int(np.argmax(v))], float(np.max(v))
    for x in pts[np.argsort(-v)[:4]]:                  # signed-gradient ascent from the best samples
        step = (hi - lo) / 8
        for _ in range(30):
            e = n1.forward(x) - n2.forward(x)
            g = (jacobian(n1, x) - jacobian(n2, x)).T @ (np.sign(e) if norm == "l1" else
                                                        np.sign(e) * (np.abs(e) == np.abs(e).max()))
            x = np.clip(x + step * np.sign(g), lo, hi)
            val = norm_value(n1.forward(x) - n2.forward(x), norm)
            if val > best_v:
                best_x, best_v = x.copy(), val
            step = step * 0.85
    return best_x


def matching(f1, f2, lower, upper, *, tau: float = 0.0, norm: str = "linf", threshold=None,
             **options) -> InvarianceResult:
    """``max ||f2(x) - f2(y)||`` over ``x, y`` in the box with ``||f1(x) - f1(y)||∞ <= tau``
    (module docstring). ``f1``, ``f2``: same inputs (outputs may differ). Options as
    :func:`max_difference`."""
    opts = make_options(dict(options))
    m1, m2 = as_model(f1, "f1"), as_model(f2, "f2")
    same_shapes(m1, m2, outputs=False)
    n1, n2 = m1.network, m2.network
    lo, hi = check_box(lower, upper, n1.n_inputs)
    tau = check_nonneg(tau, "tau")
    norm = check_norm(norm)
    th = _threshold(threshold)
    clock = Clock(opts)
    st = clock.stats
    settings = _settings(opts, lo, hi, m1, m2, norm=norm, tau=tau)
    t = time.perf_counter()
    b1 = compute_bounds(n1, lo, hi, opts.bounds)
    b2 = compute_bounds(n2, lo, hi, opts.bounds)
    st.time_bounds = time.perf_counter() - t
    t = time.perf_counter()
    program = Program("matching")
    try:
        a1 = encode_copy(program, n1, b1, "f1(x)")
        c1 = encode_copy(program, n1, b1, "f1(y)")
        a2 = encode_copy(program, n2, b2, "f2(x)", input_vars=a1.input_vars)
        c2 = encode_copy(program, n2, b2, "f2(y)", input_vars=c1.input_vars)
        close_outputs(program, a1, c1, tau, "close")
        if opts.coupling != "none":
            for net, b, ex, ey, nm in ((n1, b1, a1, c1, "twin1"), (n2, b2, a2, c2, "twin2")):
                add_twin_coupling(program, net, b, ex, ey, lo - hi, hi - lo, nm, signs=opts.coupling == "signs")
        pieces = objective_pieces(program, a2.output_vars, c2.output_vars, 0.0, norm, opts.split is not False,
                                  signs=(1,), name="f2(x)-f2(y)")
    except BigMError as e:
        return InvarianceResult("matching", UNKNOWN, InvarianceReason.ENCODING, threshold=th, settings=settings,
                                stats=clock.finish(), message=str(e))
    st.time_encode = time.perf_counter() - t

    def check(sol_x: np.ndarray) -> Candidate:
        x, y = sol_x[a1.input_vars], sol_x[c1.input_vars]
        x, y, steps = project_pair(n1, x, y, lo, hi, tau, opts.confirm_tol, opts.newton_steps)
        chk = constraint_check(n1, m1.reference, x, y, tau, opts.confirm_tol, opts.reference_tol)
        gx, gy = n2.forward(x), n2.forward(y)
        ir = norm_value(gx - gy, norm)
        r = reference_outputs(m2.reference, np.stack([x, y]))
        ref = None if r is None else norm_value(r[0] - r[1], norm)
        w = Witness(x=x.tolist(), y=y.tolist(), value_ir=ir, value_reference=ref, constraint_ir=chk["gap_ir"],
                    constraint_reference=chk["gap_ref"], constraint_limit=chk["limit_ir"],
                    reference_limit=chk["limit_ref"],
                    outputs={"f1(x)": chk["fx"].tolist(), "f1(y)": chk["fy"].tolist(), "f2(x)": gx.tolist(),
                             "f2(y)": gy.tolist()}, newton_steps=steps)
        return Candidate(_value(ir, ref), bool(chk["ok"]), w, chk["why"])

    return run_search(Search("matching", program, [a1, c1, a2, c2], pieces, check, th), opts, clock, settings)


__all__ = ["matching", "max_difference"]
