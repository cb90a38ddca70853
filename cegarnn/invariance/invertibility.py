"""Certified invertibility and pseudo-invertibility of a network on an L∞ ball.

**Invertibility** (two copies of ``f``): over ``x, y`` in ``B = B∞(c, r)`` (∩ an optional domain
box) with ``||f(x) - f(y)||∞ <= tau`` (``tau = 0``: ``f(x) = f(y)``), maximise ``||x - y||``.
``linf``: by default one MILP per coordinate ``k`` maximising ``x_k - y_k`` (the sign is fixed by
the ``x <-> y`` symmetry), ``split=False`` one MILP with a binary per coordinate; ``l1``: a binary
per coordinate whose sign is open. **Pseudo-invertibility**: the same with ``y = c`` fixed (one
copy; ``linf`` by default one MILP with a binary per coordinate and sign, ``split=True`` one MILP
per coordinate and sign — measured faster that way round, docs/INVARIANCE.md).

* ``proved`` (certified on the ball): the solver's proved upper bound on the maximum is ``<= tol``:
  no two inputs of the ball farther apart than ``tol`` have outputs within ``tau``.
* ``refuted``: two inputs farther apart than ``tol`` whose outputs are within ``tau + confirm_tol *
  scale`` recomputed in float64 on the IR (``scale = max(1, largest |output|)``) and, when the
  network came from a file or a module, within ``tau + reference_tol * scale`` on the original
  model (onnxruntime in float32 / torch). For ``tau = 0`` this is the confirmation tolerance of
  an exact collision; the solver's point is first projected onto the constraint
  (:func:`~.check.project_pair`), so on the IR an exact collision is typically met to ~1e-12.
* ``unknown``: anything else (reason and the best bound/value found are reported).

The proof is about the float64 network in real arithmetic (a float32 model maps many nearby
inputs to the same output by rounding alone); it rests on a MILP dual bound (see :mod:`.core`).
"""
from __future__ import annotations

import time

import numpy as np

from ..bounds import compute_bounds
from ..encoding import BigMError, Program, add_output_constraints
from .check import constraint_check, project_pair
from .coupling import add_twin_coupling
from .core import Candidate, Clock, Search, close_outputs, encode_copy, run_search
from .inputs import (InvarianceInputError, as_model, ball_box, check_nonneg, check_norm, make_options)
from .objective import norm_value, objective_pieces
from .result import UNKNOWN, InvarianceReason, InvarianceResult, Witness

#: default input-distance tolerance, times max(1, radius)
DEFAULT_TOL = 1e-4


def default_tol(radius: float) -> float:
    """The default ``tol``: ``1e-4 * max(1, radius)`` (well above a MILP's ~1e-6 margin)."""
    return DEFAULT_TOL * max(1.0, float(radius))


def invertibility(network, center, radius, *, tau: float = 0.0, tol=None, norm: str = "linf",
                  domain=None, **options) -> InvarianceResult:
    """Is ``f`` invertible on ``B∞(center, radius)`` (∩ ``domain``)? See the module docstring.

    ``network``: a Network, an ``nn.Module`` or an ``.onnx``/``.pt`` path (the original model is
    then used for confirmation). ``tau``: output tolerance (0: exact collisions). ``tol``: input-
    distance tolerance of the certificate (default :func:`default_tol`). ``norm``: 'linf' or 'l1'
    on ``x - y``. ``domain``: ``(lower, upper)`` intersected with the ball (e.g. pixels in [0, 1]).
    Other keyword options: the fields of :class:`~.inputs.InvarianceOptions`."""
    return ball_question("invertibility", network, center, radius, tau, tol, norm, domain, False, options)


def pseudo_invertibility(network, center, radius, *, tau: float = 0.0, tol=None, norm: str = "linf",
                         domain=None, **options) -> InvarianceResult:
    """Does any ``x`` of the ball other than the centre (farther than ``tol``) give ``f(x)`` within
    ``tau`` of ``f(center)``? Arguments as :func:`invertibility`; ``y`` is fixed at the centre."""
    return ball_question("pseudo-invertibility", network, center, radius, tau, tol, norm, domain, True, options)


def ball_question(kind: str, network, center, radius, tau, tol, norm, domain, pseudo: bool,
                  options: dict) -> InvarianceResult:
    """Build and solve (pseudo-)invertibility on one ball; see the module docstring."""
    opts = make_options(dict(options))
    model = as_model(network)
    net = model.network
    c, lo, hi = ball_box(center, radius, net.n_inputs, domain)
    tau = check_nonneg(tau, "tau")
    norm = check_norm(norm)
    tol = default_tol(radius) if tol is None else check_nonneg(tol, "tol")
    if tol <= 0:
        raise InvarianceInputError("tol must be > 0")
    clock = Clock(opts)
    st = clock.stats
    settings = {"tau": tau, "tol": tol, "norm": norm, "radius": float(radius), "center": c, "lower": lo,
                "upper": hi, "confirm_tol": opts.confirm_tol,
                "reference_tol": opts.reference_tol if model.reference is not None else None,
                "bounds": opts.bounds, "backend": opts.backend, "time_limit": opts.time_limit,
                "network": model.name}
    t = time.perf_counter()
    bounds = compute_bounds(net, lo, hi, opts.bounds)
    st.time_bounds = time.perf_counter() - t
    t = time.perf_counter()
    program = Program(kind)
    try:
        ex = encode_copy(program, net, bounds, "f(x)")
        if pseudo:
            fc = net.forward(c)
            pad = 1e-12 * np.maximum(1.0, np.abs(fc))          # f(c) rounded: widen (a relaxation)
            add_output_constraints(program, ex, np.eye(net.n_outputs), fc - tau - pad, fc + tau + pad,
                                   name="close")
            pieces = objective_pieces(program, ex.input_vars, None, -c, norm, bool(opts.split), signs=(1, -1), name="x-c")
            encodings = [ex]
        else:
            ey = encode_copy(program, net, bounds, "f(y)")
            close_outputs(program, ex, ey, tau, "close")
            if opts.coupling != "none":
                add_twin_coupling(program, net, bounds, ex, ey, lo - hi, hi - lo, signs=opts.coupling == "signs")
            pieces = objective_pieces(program, ex.input_vars, ey.input_vars, 0.0, norm, opts.split is not False, signs=(1,),
                                      name="x-y")
            encodings = [ex, ey]
    except BigMError as e:
        return InvarianceResult(kind, UNKNOWN, InvarianceReason.ENCODING, threshold=tol, settings=settings,
                                stats=clock.finish(), message=str(e))
    st.time_encode = time.perf_counter() - t

    def check(sol_x: np.ndarray) -> Candidate:
        x = sol_x[ex.input_vars]
        y = c.copy() if pseudo else sol_x[ey.input_vars]
        x, y, steps = project_pair(net, x, y, lo, hi, tau, opts.confirm_tol, opts.newton_steps, move_y=not pseudo)
        chk = constraint_check(net, model.reference, x, y, tau, opts.confirm_tol, opts.reference_tol)
        value = norm_value(x - y, norm)
        w = Witness(x=x.tolist(), y=y.tolist(), value_ir=value, constraint_ir=chk["gap_ir"],
                    constraint_reference=chk["gap_ref"], constraint_limit=chk["limit_ir"],
                    reference_limit=chk["limit_ref"], outputs={"f(x)": chk["fx"].tolist(), "f(y)": chk["fy"].tolist()},
                    newton_steps=steps)
        return Candidate(value, bool(chk["ok"]), w, chk["why"])

    return run_search(Search(kind, program, encodings, pieces, check, tol), opts, clock, settings)


__all__ = ["DEFAULT_TOL", "ball_question", "default_tol", "invertibility", "pseudo_invertibility"]
