"""The state of one run: problem, options, clock, statistics, and the spec network with what a
proof on it needs (bounds on the margins, and the padding that carries a proof on the float64 IR
over to the model as executed)."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..bounds import compute_bounds
from ..bounds.box import LayerBounds
from ..bounds.rounding import output_padding
from ..network.ir import Affine, Network, Sigmoid, Tanh
from ..specs.problem import Problem
from ..specs.rotation import rotation_rank
from .options import Options
from .result import Counterexample, Result, Stats, Verdict


log = logging.getLogger("cegarnn.verifier")

#: what ``bounds='auto'`` adds on the segments policy's root box when our CROWN does not prove it
#: (measured in experiments/results/issue15/bench_bounds.root.md; docs/BOUNDS.md)
AUTO_SEGMENTS_ALPHA = "alpha-crown"


class TimeLimit(Exception):
    """The run's time limit is reached (ends the run as ``unknown``, ``Reason.TIME_LIMIT``)."""


@dataclass
class RunContext:
    problem: Problem
    opts: Options
    method: str                      # the registered name, written into the Result
    start: float                     # time.perf_counter() when the run started
    stats: Stats
    spec_net: Network                # network with the unsafe rows appended: outputs C_all y - d_all
    C: np.ndarray                    # stacked unsafe rows
    d: np.ndarray                    # their right-hand sides
    groups: list                     # row indices of each disjunct
    sig_layers: list                 # indices of sigmoid/tanh layers
    exec_net: Network                # problem.network with layers aligned to spec_net's (for the padding)
    policy: str = "input"            # resolved refinement policy: 'input', 'segments', 'neuron' or 'rotated'
    bounders: dict = field(default_factory=dict, repr=False)   # our BatchBounders of spec_net, by method

    @classmethod
    def create(cls, problem: Problem, method: str, opts: Options) -> "RunContext":
        start = time.perf_counter()
        C, d, groups = problem.unsafe.stacked
        spec_net = problem.network.with_output_layer(C, -d)
        policy = opts.policy if opts.policy != "auto" else auto_policy(problem, opts)
        # the network the executed model runs: a rotated problem's bounds describe a rotated copy
        exec_net = (problem.network if problem.rotation is None else problem.rotation.network).simplified()
        if len(exec_net.layers) != len(spec_net.layers) - (0 if isinstance(exec_net.layers[-1], Affine) else 1):
            raise AssertionError("spec network layers do not align with the problem network's")
        return cls(problem, opts, method, start, Stats(), spec_net, C, d, groups,
                   spec_net.activation_indices((Sigmoid, Tanh)), exec_net, policy)

    # ----------------------------------------------------------------- clock and bookkeeping
    @property
    def deadline(self) -> float:
        return self.start + self.opts.time_limit

    def remaining(self) -> float:
        return self.opts.time_limit - (time.perf_counter() - self.start)

    def check_time(self):
        if self.remaining() <= 0:
            raise TimeLimit()

    @contextmanager
    def timed(self, what: str):
        """Add the time spent in the block to ``stats.time_<what>`` ('attack', 'bounds', 'encode',
        'solver', 'checks')."""
        name = "time_" + what
        if not hasattr(self.stats, name):
            raise ValueError(f"Stats has no field {name}")
        t = time.perf_counter()
        try:
            yield
        finally:
            setattr(self.stats, name, getattr(self.stats, name) + time.perf_counter() - t)

    def result(self, status: Verdict, reason: str = "", cex: Optional[Counterexample] = None) -> Result:
        self.stats.wall_time = time.perf_counter() - self.start
        return Result(status, reason, self.method, cex, self.stats, self.problem.name)

    # ----------------------------------------------------------------- bounds and what a proof needs
    def bounds(self, lo: np.ndarray, hi: np.ndarray, method: Optional[str] = None) -> LayerBounds:
        method = self.resolve_bounds(method or self.opts.bounds)
        t = time.perf_counter()
        with self.timed("bounds"):
            b = self._bounds_of(lo, hi, method)
        if method == "ir-crown" and self.policy != "input" and self.opts.bounds == "auto" \
                and not np.all(self.proved(b)):
            # many free inputs (policy not 'input'): boxes get the optimised slopes where CROWN does
            # not prove them — the segments policy's root box, every batch of bab-crown
            with self.timed("bounds"):
                b = _intersect(b, self._bounds_of(lo, hi, AUTO_SEGMENTS_ALPHA))
        if not self.stats.boxes_bounded:        # start-up measurements (experiments/bench_startup.py)
            log.debug("first bound (%s) of %s took %.6f s", method, self.problem.name, time.perf_counter() - t)
        self.stats.boxes_bounded += lo.shape[0] if lo.ndim == 2 else 1
        return b

    def resolve_bounds(self, method: str) -> str:
        """The provider behind ``method``: ``'auto'`` is our numpy CROWN (``'ir-crown'``, no torch
        import; where the policy is not 'input' followed by :data:`AUTO_SEGMENTS_ALPHA` where it does
        not prove the box); any other name (``'crown'``/``'alpha-crown'``: auto_LiRPA) is kept."""
        return "ir-crown" if method == "auto" else method

    def _bounds_of(self, lo, hi, method: str) -> LayerBounds:
        if method == "ir-crown":
            return self.bounder(method).bounds(lo, hi)[0]
        if method == "ir-alpha-crown":
            eye = np.eye(self.spec_net.n_outputs)
            try:
                b, st = self.bounder(method).bounds(lo, hi, objective=eye, alpha=True)
            except (RuntimeError, ValueError, IndexError, KeyError) as exc:    # costs tightness only
                log.warning("our alpha-CROWN failed (%r); using CROWN", exc)
                return self.bounder("ir-crown").bounds(lo, hi)[0]
            obj = st.objective_lower if b.lower[-1].ndim == 2 else st.objective_lower[0]
            return LayerBounds(b.lower[:-1] + [np.maximum(b.lower[-1], obj)], list(b.upper), b.method)
        return compute_bounds(self.spec_net, lo, hi, method=method)

    def bounder(self, method: str):
        """Our :class:`~cegarnn.bounds.crown.BatchBounder` of ``spec_net`` for an ``IR_METHODS`` name
        (built once per run: weights and caches are reused across calls)."""
        if method not in self.bounders:
            from ..bounds.crown import BatchBounder
            if method == "ir-alpha-crown":
                self.bounders[method] = BatchBounder(self.spec_net, backend="torch", intermediate="unstable")
            else:
                self.bounders[method] = BatchBounder(self.spec_net, backend="numpy")
        return self.bounders[method]

    def padding(self, bounds: LayerBounds) -> np.ndarray:
        """Per stacked unsafe row (and per box of a batch): how far ``C_i y`` of the model as executed
        (float32 unless the problem says otherwise) can be from the float64 IR's on the box; a proof
        needs every row's lower bound above it (plus ``tol``). See :func:`output_padding`.
        Zero when the problem's proofs cover only the float64 IR (``precision=None``)."""
        rot = self.problem.rotation
        if self.problem.precision is None and rot is None:
            return np.zeros(bounds.lower[-1].shape)
        lower, upper, first_error = bounds.lower, bounds.upper, None
        if rot is not None:     # the original network over the original box, plus the rotation's error
            zlo, zhi = rot.original_box(lower[0], upper[0])
            lower, upper, first_error = [zlo, *lower[1:]], [zhi, *upper[1:]], rot.first_error
        with self.timed("bounds"):
            return output_padding(self.exec_net, self.C, lower, upper, self.problem.precision or "float64",
                                  first_error)

    def disjunct_lower(self, bounds: LayerBounds) -> np.ndarray:
        """Lower bounds on each disjunct's margin, minus the execution padding where it matters
        (computed only for boxes whose unpadded bounds would exclude every disjunct): (B, n_disj)."""
        row_lower = bounds.lower[-1]
        single = row_lower.ndim == 1
        rl = row_lower[None] if single else row_lower
        lb = self.problem.unsafe.disjunct_lower_bounds(rl)
        close = np.all(lb > self.opts.tol, axis=-1)
        if np.any(close):
            idx = np.flatnonzero(close)
            sub = LayerBounds([np.atleast_2d(v)[idx] for v in bounds.lower],
                              [np.atleast_2d(v)[idx] for v in bounds.upper], bounds.method)
            lb[idx] = self.problem.unsafe.disjunct_lower_bounds(rl[idx] - self.padding(sub))
        return lb[0] if single else lb

    def proved(self, bounds: LayerBounds) -> np.ndarray:
        """True (per box) where the bounds exclude every disjunct by more than ``tol`` plus the padding."""
        return np.all(self.disjunct_lower(bounds) > self.opts.tol, axis=-1)

    def open_disjuncts(self, bounds: LayerBounds, pad: Optional[np.ndarray] = None) -> list[int]:
        """Disjuncts not yet excluded by the bounds (padded by ``pad``, default :meth:`padding`),
        most promising (lowest bound) first."""
        pad = self.padding(bounds) if pad is None else pad
        lb = self.problem.unsafe.disjunct_lower_bounds(bounds.lower[-1] - pad)
        return [int(j) for j in np.argsort(lb, kind="stable") if lb[j] <= self.opts.tol]


def auto_policy(problem: Problem, opts: Options) -> str:
    """``policy='auto'``: ``input`` up to ``max_split_dims`` free inputs; above, ``rotated`` where the
    first layer sees the box through at most ``max_split_dims`` directions
    (:func:`~cegarnn.specs.rotation.rotation_rank`), else ``neuron``."""
    if problem.n_free <= opts.max_split_dims:
        return "input"
    if problem.rotation is None:
        rank = rotation_rank(problem)
        if rank is not None and rank <= opts.max_split_dims:
            return "rotated"
    return "neuron"


def _intersect(a: LayerBounds, b: LayerBounds) -> LayerBounds:
    """Both sound: their intersection, value by value (named after the second)."""
    return LayerBounds([np.maximum(x, y) for x, y in zip(a.lower, b.lower)],
                       [np.minimum(x, y) for x, y in zip(a.upper, b.upper)], b.method)
