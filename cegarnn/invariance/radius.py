"""Certified radius: the largest L∞ ball around a centre on which (pseudo-)invertibility certifies.

Both questions are monotone in the radius for a fixed absolute ``tol``: a certificate on
``B(c, r)`` holds on every smaller ball (its pairs are pairs of the larger ball), and a witness in
``B(c, r)`` lies in every larger ball. So every query gives either a proved lower end, a refuted
upper end, or nothing (unknown), and the search is:

1. grow ``r`` geometrically (``r0, r0·growth, ...`` up to ``r_max``) while certified; if ``r0``
   itself is not certified, shrink it by ``growth`` (at most ``shrink`` times) until certified;
2. bisect (geometric mean) between the largest certified radius and the smallest radius not
   certified, ``bisections`` times or until their ratio is below ``1 + rel_gap``.

The result (:class:`~.result.RadiusResult`) reports the largest proved radius, the smallest
refuted radius with its confirmed witness, and the radii that stayed unknown; every query with its
answer and time is in ``steps``.
"""
from __future__ import annotations

import time
from typing import Optional

from .inputs import InvarianceInputError, as_model, check_nonneg
from .invertibility import default_tol, invertibility, pseudo_invertibility
from .result import PROVED, REFUTED, UNKNOWN, RadiusResult, RadiusStep

KINDS = {"invertibility": invertibility, "pseudo-invertibility": pseudo_invertibility}


def certified_radius(network, center, *, kind: str = "invertibility", r_max: float = 1.0, r0: Optional[float] = None,
                     growth: float = 2.0, shrink: int = 8, bisections: int = 6, rel_gap: float = 0.01,
                     tau: float = 0.0, tol=None, norm: str = "linf", domain=None, time_limit: float = 120.0,
                     query_time_limit: Optional[float] = None, **options) -> RadiusResult:
    """The certified radius of ``kind`` ('invertibility' or 'pseudo-invertibility') around
    ``center`` (module docstring). ``tol``: the absolute input-distance tolerance of every query
    (default ``default_tol(r_max)``, the same for all radii so that the answers are monotone).
    ``time_limit``: seconds for the whole search; ``query_time_limit``: per query (default a
    quarter of ``time_limit``). Other keyword options go to every query
    (:class:`~.inputs.InvarianceOptions`)."""
    if kind not in KINDS:
        raise InvarianceInputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    r_max = check_nonneg(r_max, "r_max")
    if r_max <= 0:
        raise InvarianceInputError("r_max must be > 0")
    r0 = r_max / 64.0 if r0 is None else check_nonneg(r0, "r0")
    if not 0 < r0 <= r_max:
        raise InvarianceInputError(f"r0 must be in (0, r_max], got {r0}")
    if not growth > 1:
        raise InvarianceInputError(f"growth must be > 1, got {growth}")
    time_limit = check_nonneg(time_limit, "time_limit")
    tol = default_tol(r_max) if tol is None else check_nonneg(tol, "tol")
    q_limit = time_limit / 4.0 if query_time_limit is None else check_nonneg(query_time_limit, "query_time_limit")
    if "time_limit" in options:
        raise InvarianceInputError("give the search's time_limit and query_time_limit, not an option time_limit")
    model = as_model(network)
    fn = KINDS[kind]
    t0 = time.perf_counter()
    out = RadiusResult(kind, UNKNOWN, 0.0, None,
                       settings={"tau": tau, "tol": tol, "norm": norm, "r0": r0, "r_max": r_max, "growth": growth,
                                 "time_limit": time_limit, "query_time_limit": q_limit, **options})

    def left() -> float:
        return time_limit - (time.perf_counter() - t0)

    def ask(r: float):
        limit = min(q_limit, left())
        if limit <= 0.05:
            return None
        res = fn(model, center, r, tau=tau, tol=tol, norm=norm, domain=domain, time_limit=limit, **options)
        out.steps.append(RadiusStep(r, res.status, res.reason, res.bound, res.value, res.stats.wall_time))
        if res.status == PROVED:
            out.proved_radius = max(out.proved_radius, r)
        elif res.status == REFUTED:
            if out.refuted_radius is None or r < out.refuted_radius:
                out.refuted_radius, out.witness = r, res.witness
        else:
            out.unknown_radii.append(r)
        return res.status

    r = r0
    status = ask(r)
    while status == PROVED and r < r_max:                       # 1. grow while certified
        r = min(r * growth, r_max)
        status = ask(r)
    k = 0
    while out.proved_radius == 0 and status is not None and k < shrink:   # ... or shrink until certified
        r, k = r / growth, k + 1
        status = ask(r)
    lo = out.proved_radius
    hi = min([s.radius for s in out.steps if s.status != PROVED and s.radius > lo], default=None)
    for _ in range(bisections):                                  # 2. bisect
        if lo <= 0 or hi is None or hi / lo < 1 + rel_gap:
            break
        mid = (lo * hi) ** 0.5
        status = ask(mid)
        if status is None:
            break
        if status == PROVED:
            lo = mid
        else:
            hi = mid
    if out.proved_radius > 0:
        out.status = PROVED
    elif out.refuted_radius is not None:
        out.status = REFUTED
    out.wall_time = time.perf_counter() - t0
    return out


__all__ = ["KINDS", "certified_radius"]
