"""REASSURE-style local patch repair of ReLU classifiers (see docs/REPAIR_PATCH.md).

Each input ``x`` lies in a linear region (its activation pattern, :mod:`.regions`), on which the
network is affine. The region gets a patch ``p_r(x) = P_r x + q_r`` added to the logits, the
smallest one (an LP, :mod:`.patch_lp`) under which every input of the region gets its label by
``margin`` (plus a float32 slack) on its whole *region box* ``B(x, r) ∩ domain`` inside the
region. A gate built from ReLUs (:mod:`.patch_net`) makes the patch act exactly on the region
and nowhere its violation sum ``V_r`` reaches ``1 / gamma_r``. The result is one plain
``Affine``/``ReLU`` network, checked on its float32 ONNX export, and each region box is then
proved by cegarnn's verifier on that export re-loaded from the file (:mod:`.patch_proof`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from .check import check_constraints, predictions
from .constraints import RepairInputError, ensure
from .inputs import as_inputs, as_network
from .patch_lp import domain_size, solve_patch
from .patch_net import PatchTerm, patched_network
from .patch_proof import prove_boxes
from .regions import box_slack, output_range_gap, region_maps, region_radius, relu_layers
from .result import REPAIRED, UNKNOWN, RepairReason, RepairResult, StageInfo

PATCH_KINDS = ("auto", "constant", "affine")
#: the gate's bound is this many times the patch's largest value on the domain (headroom for float32)
GATE_HEADROOM = 2.0
#: the gate's dead band is this many times the rigorous float32 error bound (plus CROWN's widening)
#: of each pre-activation in the widened network (see :func:`_dead_band`)
TAU_FACTOR = 2.0


@dataclass
class PatchRegion:
    """One linear region holding repair inputs.

    ``inputs``: their indices; ``signs``: the activation pattern (+1/-1 per hidden neuron);
    ``kind``: 'constant', 'affine', or 'none' (its inputs already meet their rows on their boxes:
    no patch); ``P``/``q``: the patch; ``size``: its L∞ size (on the region for a constant patch,
    an upper bound from the domain box for an affine one); ``bound``: the gate's ``K_r >= max |p_r|``
    over the domain; ``gamma``: the gate's slope (>= the asked gamma, raised so that no other
    input's box meets this region's neighbourhood); ``proofs``: one :class:`~.patch_proof.Proof`
    per input.
    """

    index: int
    inputs: list
    signs: np.ndarray
    kind: str = "none"
    P: Optional[np.ndarray] = None
    q: Optional[np.ndarray] = None
    size: float = 0.0
    bound: float = 0.0
    gamma: float = 0.0
    lp_time: float = 0.0
    proofs: list = field(default_factory=list)

    @property
    def proved(self) -> bool:
        """The verifier said 'verified' for the box of every input of the region."""
        return bool(self.proofs) and all(p.proved for p in self.proofs)

    def to_dict(self) -> dict:
        return {"index": self.index, "inputs": list(map(int, self.inputs)), "kind": self.kind,
                "q": None if self.q is None else self.q.tolist(), "linear_part": self.P is not None,
                "size": self.size, "bound": self.bound, "gamma": self.gamma, "lp_time": self.lp_time,
                "proved": self.proved, "proofs": [vars(p) for p in self.proofs]}


@dataclass
class PatchResult(RepairResult):
    """A :class:`RepairResult` with the patched ``regions`` and ``proof_time`` (seconds spent in
    the verifier, not part of ``time``)."""

    regions: list = field(default_factory=list)
    proof_time: float = 0.0
    tau: Optional[np.ndarray] = None

    @property
    def n_proved(self) -> int:
        return sum(r.proved for r in self.regions)

    @property
    def patched(self) -> list:
        """The regions that got a patch (``kind != 'none'``), in the order of the network's terms."""
        return [r for r in self.regions if r.kind != "none"]

    def violations(self, inputs) -> np.ndarray:
        """(N, R) the gate's ``V_r(x) = sum_j relu(-s_j z_j(x) - tau_j)`` of every patched region
        (float64, on the original network). Where ``V_r >= 1 / gamma_r`` for every r, the repaired
        network's output is exactly the original's; where ``V_r = 0``, it is ``f + p_r``."""
        from ..network.ir import ReLU
        net = self.original.simplified()
        vals = net.forward_all(as_inputs(net, inputs))
        idx = net.activation_indices(ReLU)
        Z = np.concatenate([vals[i] for i in idx], axis=1) if idx else np.zeros((vals[0].shape[0], 0))
        tau = 0.0 if self.tau is None else self.tau
        V = [np.maximum(-r.signs * Z - tau, 0.0).sum(axis=1) for r in self.patched]
        return np.stack(V, axis=1) if V else np.zeros((Z.shape[0], 0))

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(regions=[r.to_dict() for r in self.regions], proof_time=self.proof_time,
                 regions_proved=self.n_proved)
        return d

    def summary(self) -> str:
        s = super().summary()
        if any(r.proofs for r in self.regions):
            s += f"; {self.n_proved}/{len(self.regions)} regions proved ({self.proof_time:.2f} s)"
        return s


def _domain(domain, n: int, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        lo, hi = (np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for v in domain)
    except (TypeError, ValueError):
        raise RepairInputError(f"domain must be a pair (lower, upper) of numbers or arrays of {n} values, "
                               f"got {domain!r}") from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(lo > hi):
        raise RepairInputError("the domain must be finite with lower <= upper")
    out = np.any((X < lo) | (X > hi), axis=1)
    if np.any(out):
        raise RepairInputError(f"input {int(np.flatnonzero(out)[0])} lies outside the domain "
                               f"[{lo.min():g}, {hi.max():g}]; pass domain=(lower, upper)")
    return lo, hi


def _check_options(margin, gamma, patch, radius, slack_factor):
    if patch not in PATCH_KINDS:
        raise RepairInputError(f"patch must be one of {', '.join(PATCH_KINDS)}, got {patch!r}")
    if not (np.isfinite(gamma) and gamma > 0):
        raise RepairInputError(f"gamma must be finite and > 0, got {gamma!r}")
    if radius is not None and not (np.isfinite(radius) and radius >= 0):
        raise RepairInputError(f"radius must be None or a finite number >= 0, got {radius!r}")
    if not (np.isfinite(slack_factor) and slack_factor >= 0):
        raise RepairInputError(f"slack_factor must be finite and >= 0, got {slack_factor!r}")


def _dead_band(layers, input_shape, boxes, n_regions: int, carry: bool) -> np.ndarray:
    """The gate's dead band per hidden neuron (H,), large enough that a gate unit of a face a box
    touches stays stable for the verifier: ``TAU_FACTOR`` times the rigorous float32 error bound of
    the pre-activation in the widened network (:mod:`cegarnn.bounds.rounding`, on interval bounds of
    a network of the final shape: ``n_regions`` gates, ``x`` carried if ``carry``) plus twice CROWN's
    widening of a bound (``RTOL (|z| + scale) + ATOL``)."""
    from ..bounds import compute_bounds
    from ..bounds.lirpa import ATOL, RTOL
    from ..bounds.rounding import execution_error
    K, n = layers[-1][0].shape[0], layers[0][0].shape[1]
    dummy = [PatchTerm(np.ones(sum(W.shape[0] for W, _ in layers[:-1])), np.zeros((K, n)) if carry else None,
                       np.zeros(K), 0.0)] * n_regions
    shape = patched_network(layers, input_shape, dummy)
    lo, hi = np.stack([b[0] for b in boxes]), np.stack([b[1] for b in boxes])
    lb = compute_bounds(shape, lo, hi, method="interval")
    errors = execution_error(shape, lb.lower, lb.upper)
    taus = []
    for h, (W, _) in enumerate(layers[:-1]):
        i, m = 2 * h + 1, W.shape[0]                 # value index of the widened pre-activation
        layer = shape.layers[i - 1]
        mag = np.maximum(np.abs(lb.lower[i - 1]), np.abs(lb.upper[i - 1]))
        scale = (np.atleast_2d(mag) @ np.abs(layer.dense_W()).T + np.abs(layer.b))[:, :3 * m]
        size = np.maximum(np.abs(lb.lower[i]), np.abs(lb.upper[i]))[..., :3 * m]
        e = TAU_FACTOR * (np.atleast_2d(errors[i])[:, :3 * m] + RTOL * (np.atleast_2d(size) + scale) + ATOL)
        taus.append(e.reshape(-1, 3, m).max(axis=(0, 1)))
    return np.concatenate(taus) if taus else np.zeros(0)


def _output_padding(net, boxes) -> np.ndarray:
    """(N, K) a rigorous bound on the float32 error of every output of ``net`` over each box."""
    from ..bounds import compute_bounds
    from ..bounds.rounding import output_padding
    lo, hi = np.stack([b[0] for b in boxes]), np.stack([b[1] for b in boxes])
    lb = compute_bounds(net, lo, hi, method="interval")
    return np.atleast_2d(output_padding(net, np.eye(net.n_outputs), lb.lower, lb.upper))


def _separate(signs, slack0, slack_at, radii, group_of, n_groups, gamma, tau):
    """Shrink boxes and raise gammas so that no input's box meets another region's neighbourhood.

    On input i's box, ``V_g >= sum of (box_slack_i - tau)^+ over the neurons where region g's signs
    differ`` (each such neuron contributes ``relu(s_i z - tau)``). A box where that bound is 0 is halved
    (at most 40 times; ``slack_at(i, r)`` gives the box slack at radius r, ``slack0`` at ``radii``);
    then ``gamma_g = max(gamma, 1 / min_i bound)`` puts the neighbourhood ``V_g < 1/(2 gamma_g)`` off
    every other box. Returns the radii and the gammas."""
    radii = list(radii)
    gs = signs[[group_of.index(g) for g in range(n_groups)]]          # (G, H)
    gam = np.full(n_groups, float(gamma))
    lbs = np.full((len(radii), n_groups), np.inf)
    for i in range(len(radii)):
        diff = (gs != signs[i]).astype(np.float64)
        s = slack0[i]
        for step in range(41):
            lb = diff @ np.maximum(s - tau, 0.0)
            lb[group_of[i]] = np.inf
            if np.all(lb > 0) or radii[i] == 0.0:
                break
            radii[i] = 0.5 * radii[i] if step < 39 else 0.0
            s = slack_at(i, radii[i])
        lbs[i] = lb
    low = lbs.min(axis=0)
    ok = np.isfinite(low) & (low > 0)
    gam[ok] = np.maximum(gam[ok], 1.0 / low[ok])
    return radii, gam


def patch_repair(network, inputs, labels, *, margin: float = 1e-3, gamma: float = 1e3, domain=(0.0, 1.0),
                 radius: Optional[float] = None, patch: str = "auto", prove: bool = True,
                 proof_method: str = "crown", proof_time_limit: float = 60.0, proof_options: Optional[dict] = None,
                 onnx_path=None, time_limit: Optional[float] = None, backend: str = "highs",
                 slack_factor: float = 4.0, max_float32_retries: int = 3, keep=None) -> PatchResult:
    """Patch ``network`` (``Affine (ReLU Affine)*``: IR, torch module or ONNX/torch file) so that
    every input gets its label by ``margin`` on the float32 export, changing it only near the
    linear regions of the inputs.

    Guarantees of a ``repaired`` result: (1) every row met on the float32 ONNX export (``check``);
    (2) on each region ``r`` the output is exactly ``f + p_r`` (exact arithmetic); (3) it is exactly
    ``f`` wherever every region's violation sum ``V_r >= 1 / gamma_r`` (``gamma_r >= gamma``) — in
    particular on inputs of the domain outside all the neighbourhoods; (4) with ``prove``, each
    region's proofs are the verifier's answers for the input's box (radius ``radius``, or the
    largest one inside the region by default) on the exported ONNX, never inferred.
    ``patch``: 'constant' (``P = 0``), 'affine', or 'auto' (constant, affine where no constant
    patch exists). ``keep=(X, y)`` only reports how many of those predictions changed.
    """
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t0 + float(time_limit)
    net = as_network(network)
    layers = relu_layers(net)
    X = as_inputs(net, inputs)
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != X.shape[0]:
        raise RepairInputError(f"{X.shape[0]} inputs but labels of shape {lab.shape}: give one label per input")
    cons = ensure(lab, net.n_outputs, margin)
    lab = cons.labels
    lo, hi = _domain(domain, net.n_inputs, X)
    _check_options(margin, gamma, patch, radius, slack_factor)
    K = net.n_outputs

    maps, region_r, lp_r, slack0 = [], [], [], []
    for x in X:                 # the (H, n) pre-activation maps are dropped after use: 3 MB an input on MNIST
        m = region_maps(layers, x)
        region_r.append(region_radius(m, x, lo, hi))
        lp_r.append(region_r[-1] if radius is None else min(float(radius), region_r[-1]))
        slack0.append(box_slack(m, x, lo, hi, lp_r[-1]))
        maps.append(replace(m, A=None, c=None))
    slack0 = np.stack(slack0)
    keys: dict = {}
    group_of = [keys.setdefault(m.key, len(keys)) for m in maps]
    box_of = (lambda radii: [(np.maximum(x - r, lo), np.minimum(x + r, hi)) for x, r in zip(X, radii)])
    # a dead band only where a box comes that close to a face (boxes only shrink below): elsewhere the
    # gate units are stable without it, and the patched set stays the region itself
    taus = {carry: _dead_band(layers, net.input_shape, box_of(lp_r), len(keys), carry)
            for carry in ((False, True) if patch == "auto" else (patch == "affine",))}
    taus = {c: np.where(np.any(slack0 < t, axis=0), t, 0.0) for c, t in taus.items()}
    lp_r, gammas = _separate(np.stack([m.signs for m in maps]), slack0,
                             lambda i, r: box_slack(region_maps(layers, X[i]), X[i], lo, hi, r), lp_r, group_of,
                             len(keys), gamma, np.maximum.reduce(list(taus.values())))
    proof_r = lp_r if radius is None else [float(radius)] * len(X)
    boxes = box_of(lp_r)
    pad = _output_padding(net.simplified(), boxes)
    slack = slack_factor * (pad + pad[np.arange(len(X)), lab][:, None])       # (N, K): row c vs the label
    regions = [PatchRegion(g, [i for i in range(len(X)) if group_of[i] == g], maps[group_of.index(g)].signs)
               for g in range(len(keys))]
    grow = np.ones(len(regions))
    stages, todo = [], list(range(len(regions)))
    for attempt in range(max_float32_retries + 1):
        for g in todo:
            failure = _solve_region(regions[g], maps, lab, boxes, slack * grow[g], margin, K, lo, hi, patch,
                                    backend, deadline, stages)
            if failure is not None:
                return _result(UNKNOWN, RepairReason.PATCH_NOT_FOUND if failure != "time" else RepairReason.TIME_LIMIT,
                               net, regions, stages, t0, message=f"region {g} (inputs {regions[g].inputs}): {failure}")
            regions[g].gamma = float(gammas[g])
        terms = [PatchTerm(r.signs, r.P, r.q, r.gamma * r.bound) for r in regions if r.kind != "none"]
        tau = taus[any(t.P is not None for t in terms)] if len(taus) > 1 else next(iter(taus.values()))
        patched = (patched_network(layers, net.input_shape, terms, tau, name=f"{net.name}+patch") if terms
                   else net)
        check = check_constraints(patched, X, cons)
        if check.all_met:
            break
        todo = sorted({group_of[i] for i in np.flatnonzero(~check.met)})
        grow[todo] *= 4.0
    extra = {"regions": len(regions), "patched_regions": len(terms), "gamma": float(gamma),
             "tau_max": float(tau.max(initial=0.0)), "float32_rounds": attempt + 1, "region_radius": region_r,
             "box_radius": lp_r}
    if keep is not None:
        Xk = as_inputs(net, keep[0], "keep inputs")
        extra["keep_changed"] = int(np.sum(predictions(net, Xk) != predictions(patched, Xk)))
    if not check.all_met:
        return _result(UNKNOWN, RepairReason.FLOAT32_CHECK_FAILED, net, regions, stages, t0, check=check, extra=extra,
                       message=f"{int(np.sum(~check.met))} inputs miss their rows on the float32 export after "
                               f"{max_float32_retries} retries")
    res = _result(REPAIRED, RepairReason.CHECKED if terms else RepairReason.ALREADY_MET, net, regions, stages, t0,
                  network=patched, check=check, extra=extra)
    res.tau = tau
    if prove:
        t1 = time.perf_counter()
        proofs = prove_boxes(patched, X, lab, proof_r, lo, hi, method=proof_method, time_limit=proof_time_limit,
                             deadline=deadline, onnx_path=onnx_path, options=proof_options)
        for r in regions:
            r.proofs = [proofs[i] for i in r.inputs]
        res.proof_time = time.perf_counter() - t1
        if all(r.proved for r in regions):
            res.reason = RepairReason.PATCH_PROVED
    return res


def _solve_region(region: PatchRegion, maps, lab, boxes, slack, margin, K, lo, hi, patch, backend, deadline,
                  stages) -> Optional[str]:
    """Fill ``region``'s patch (or 'none' when its inputs already meet their rows on their boxes);
    None on success, else why not ('time' for the time limit)."""
    m = maps[region.inputs[0]]
    needs = []
    for i in region.inputs:
        need = margin + slack[i]
        need[lab[i]] = 0.0
        needs.append(need)
    met = all(np.all((output_range_gap(m, *boxes[i], lab[i]) + need)[np.arange(K) != lab[i]] <= 0)
              for i, need in zip(region.inputs, needs))
    region.kind, region.P, region.q, region.size, region.bound = "none", None, None, 0.0, 0.0
    if met:
        return None
    why = "no patch"
    for kind in (("constant", "affine") if patch == "auto" else (patch,)):
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            return "time"
        sol = solve_patch(m, [boxes[i] for i in region.inputs], lab[region.inputs], needs, lo, hi, kind,
                          backend=backend, time_limit=left)
        stages.append(StageInfo(f"region {region.index} {kind}", sol.status.value, sol.size, None, sol.time, 1))
        region.lp_time += sol.time
        if sol.solved:
            region.kind, region.P, region.q, region.size = kind, sol.P, sol.q, sol.size
            region.bound = GATE_HEADROOM * domain_size(sol.P, sol.q, lo, hi)
            return None
        why = f"the {kind} patch LP ended {sol.status.value} {sol.message}".strip()
    return why


def _result(status, reason, net, regions, stages, t0, network=None, check=None, extra=None, message=""):
    sizes = [r.size for r in regions]
    return PatchResult(status, reason, net, network=network, norms={"linf": float(max(sizes, default=0.0))},
                       check=check, stages=stages, time=time.perf_counter() - t0, message=message,
                       extra=extra or {}, regions=regions)


__all__ = ["patch_repair", "PatchResult", "PatchRegion", "PATCH_KINDS"]
