"""Counterexample-guided repair of generative specifications: verify → repair → re-verify.

:func:`repair_spec` takes generative problems ("``C(G(x, z))`` keeps ``label`` for every ``z`` in
the latent box") as ``(x, label, latent_lower, latent_upper)`` with one generator and one
classifier. Each round verifies every open problem on the current classifier; the confirmed
counterexamples become images ``G(x, z)`` that the classifier must label correctly (with a
margin); :func:`~.finetune.finetune` changes one classifier layer so that every image collected
so far gets its label while the clean ``keep`` images keep theirs; then the problems are verified
again. It stops when every problem is verified, when a round finds no new counterexample (the
rest are ``unknown``: the same images would give the same change), after ``rounds`` rounds or
``time_limit``, or when a change would cost more clean accuracy than ``max_accuracy_drop`` allows
(measured on ``validation``; that change is not taken). Why it stopped: ``SpecRepairResult.stopped``.

Every round re-verifies every problem (the classifier changed); the generator's bounds are not
yet reused between rounds. What holds at the end: each problem's entry in ``SpecRepairResult.verdicts`` is the verifier's
answer **on the returned classifier** (``verified`` is a proof covering the float32 execution, as
everywhere in cegarnn); problems left ``falsified``/``unknown`` keep the verifier's reason.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

import numpy as np

from ..network.ir import Network
from .constraints import RepairInputError, ensure
from .finetune import finetune
from .inputs import affine_layer_index, as_network
from .result import RepairResult
from .area import margins
from .check import predictions
from .spec_area import AreaRows, area_candidate
from .spec_samples import low_margin_points


class Stop(str, Enum):
    """Why :func:`repair_spec` stopped."""

    ALL_VERIFIED = "every problem verified"
    ROUNDS = "round limit"
    TIME = "time limit"
    NOTHING_NEW = "no new counterexample or sample to learn from"
    NO_CHANGE = "no layer change meets every collected image and keep image"
    ACCURACY = "the next change would exceed max_accuracy_drop"

    def __str__(self) -> str:
        return self.value


@dataclass
class SpecRepairResult:
    """``classifier``: the final classifier (the original if no round changed it);
    ``verdicts``: the verifier's final verdict per problem; ``reasons``: its reason;
    ``rounds``: per round, the verdict counts, the counterexamples added and the repair's status;
    ``repairs``: the :class:`RepairResult` of every round that changed the classifier;
    ``first_counterexamples`` / ``last_counterexamples``: per problem, the latent point of the
    first / latest confirmed counterexample (None if the verifier never gave one), for reports;
    ``stopped``: why the loop ended (:class:`Stop`); ``accuracy``: clean accuracy on
    ``validation`` before and after (None without validation data)."""

    classifier: Network
    verdicts: list
    reasons: list
    rounds: list = field(default_factory=list)
    repairs: list = field(default_factory=list)
    time: float = 0.0
    first_counterexamples: list = field(default_factory=list)
    last_counterexamples: list = field(default_factory=list)
    stopped: Stop = Stop.ROUNDS
    accuracy: Optional[tuple] = None

    @property
    def all_verified(self) -> bool:
        return all(v == "verified" for v in self.verdicts)

    @property
    def status(self) -> str:
        """'verified' if every problem is, else e.g. '3/10 verified' (a sweep job's return value)."""
        return "verified" if self.all_verified else f"{self.verdicts.count('verified')}/{len(self.verdicts)} verified"

    def to_dict(self) -> dict:
        """JSON-friendly: verdicts, reasons, rounds, time and the counterexamples' latent points."""
        def z(v):
            return None if v is None else [float(t) for t in v]
        return {"all_verified": self.all_verified, "verified": self.verdicts.count("verified"),
                "problems": len(self.verdicts), "verdicts": list(self.verdicts), "reasons": list(self.reasons),
                "rounds": [dict(r) for r in self.rounds], "time": self.time, "stopped": self.stopped.name,
                "accuracy": None if self.accuracy is None else list(self.accuracy),
                "repairs": [r.status.value for r in self.repairs],
                "first_counterexamples": [z(v) for v in self.first_counterexamples],
                "last_counterexamples": [z(v) for v in self.last_counterexamples]}

    def summary(self) -> str:
        n = len(self.verdicts)
        return (f"{sum(v == 'verified' for v in self.verdicts)}/{n} verified after {len(self.rounds)} rounds "
                f"({self.time:.1f} s)")


def repair_spec(generator, classifier, problems, *, keep=None, layer: int = -1, margin: float = 0.05,
                rounds: int = 5, method: str = "cegar", verify_time: float = 10.0,
                time_limit: Optional[float] = None, area: bool = False, area_margin: float = 0.3,
                area_leaves: int = 256, area_bounds: str = "crown", samples: int = 8,
                validation=None, max_accuracy_drop: Optional[float] = None, verbose: bool = False,
                **finetune_options) -> SpecRepairResult:
    """Repair ``classifier`` until every problem ``(x, label, latent_lower, latent_upper)`` is
    verified for ``C(G([x, z]))`` (see the module). ``keep=(images, labels)``: clean images whose
    labels the repair must keep (hard rows, added lazily). ``area`` (last layer only): problems
    left ``unknown`` (no counterexample to learn from, no proof) whose area rows (:mod:`.spec_area`,
    margin ``area_margin`` on the IR, which must exceed the verifier's float32 padding) admit a
    change are repaired on their whole latent box; falsified ones by their counterexamples
    (``area='all'``: every open problem gets area rows). ``area=True`` means ``'unknown'``. ``samples``: per open problem and round, up to this many more latent
    points (:func:`~.spec_samples.low_margin_points`) join the counterexamples (0: only the
    verifier's): for a falsified problem those whose margin is below ``margin``; for one left
    ``unknown`` (no counterexample, no proof) its lowest-margin points, asked a margin that
    doubles each round it stays unknown, so the bounds get room to prove it. ``validation=(images,
    labels)``: clean data on which ``accuracy`` is measured (float32 export); with
    ``max_accuracy_drop`` (a fraction, 0.01 = one point) a change that would lower it by more is not
    taken and the loop stops (``Stop.ACCURACY``). Other keyword options go to :func:`finetune` (e.g. ``norm``)."""
    from ..specs.problem import generative_problem
    from ..verifier import verify

    t0 = time.perf_counter()
    G = as_network(generator)
    C = as_network(classifier)
    probs = list(problems)
    if not probs:
        raise RepairInputError("no problems to repair")
    for i, p in enumerate(probs):
        if len(p) != 4:
            raise RepairInputError(f"problem {i} must be (x, label, latent_lower, latent_upper)")
    li = affine_layer_index(C, layer)
    modes = {False: (), None: (), True: ("unknown",), "unknown": ("unknown",), "all": ("unknown", "falsified")}
    if not isinstance(area, (bool, str, type(None))) or area not in modes:
        raise RepairInputError(f"area must be False, True, 'unknown' or 'all', got {area!r}")
    area_for = modes[area] if li == len(C.layers) - 1 else ()
    area = bool(area_for)
    images, labels, needs = [], [], []      # collected images, their labels and margins
    push = [margin] * len(probs)            # doubles each round a problem stays unknown
    verdicts, reasons = ["unknown"] * len(probs), [""] * len(probs)
    out = SpecRepairResult(C, verdicts, reasons, first_counterexamples=[None] * len(probs),
                           last_counterexamples=[None] * len(probs))
    cands: dict = {}                # problem -> AreaCandidate (feature bounds reused every round)
    chosen: list = []               # candidates whose rows every later change keeps

    def left() -> Optional[float]:
        return None if time_limit is None else time_limit - (time.perf_counter() - t0)

    def log(msg):
        if verbose:
            print(f"[repair_spec {time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

    def fine(C, cand_list):
        centres = _centres(G, probs, cand_list)
        X = np.stack(images + [img for img, _ in centres]) if (images or cand_list) else None
        cons = ensure(labels + [lab for _, lab in centres], C.n_outputs, margin)
        cons.d[:len(needs)] = -np.asarray(needs)[:, None]        # each image's own margin
        W, b = C.layers[-1].dense_W(), C.layers[-1].b
        hook = AreaRows(cand_list, W, b, area_margin) if cand_list else None
        return finetune(C, X, cons, layer=layer, keep=keep, time_limit=left(), extra_rows=hook,
                        **finetune_options)

    if not (isinstance(samples, (int, np.integer)) and samples >= 0):
        raise RepairInputError(f"samples must be an integer >= 0, got {samples!r}")
    Xv, yv = _validation(validation, C.n_inputs, max_accuracy_drop)
    acc0 = None if Xv is None else float(np.mean(predictions(C, Xv) == yv))
    acc = acc0
    for rnd in range(rounds + 1):
        found = sampled = 0
        for i, (x, label, lo, hi) in enumerate(probs):
            budget = verify_time if left() is None else max(0.1, min(verify_time, left()))
            prob = generative_problem(G, C, x, int(label), latent_lower=lo, latent_upper=hi, name=f"p{i}")
            res = verify(prob, method=method, time_limit=budget)
            verdicts[i], reasons[i] = str(res.status), str(res.reason or "")
            out.last_counterexamples[i] = None
            if res.counterexample is not None:
                z = np.asarray(res.counterexample.free_input, dtype=np.float64)
                out.last_counterexamples[i] = z
                if out.first_counterexamples[i] is None:
                    out.first_counterexamples[i] = z
                images.append(G.forward(np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1), z])))
                labels.append(int(label))
                needs.append(margin)
                found += 1
            elif verdicts[i] == "unknown" and rnd > 0:
                push[i] *= 2.0              # no counterexample, no proof: ask more margin on its lowest points
            if verdicts[i] != "verified" and samples:
                xf = np.asarray(x, dtype=np.float64).reshape(-1)
                below = margin if verdicts[i] == "falsified" else np.inf
                for z in low_margin_points(prob, samples, below=below, seed=1000 * rnd + i):
                    images.append(G.forward(np.concatenate([xf, z])))
                    labels.append(int(label))
                    needs.append(push[i])
                    sampled += 1
        info = {"round": rnd, "verified": verdicts.count("verified"), "falsified": verdicts.count("falsified"),
                "unknown": verdicts.count("unknown"), "counterexamples_added": found, "samples_added": sampled}
        out.rounds.append(info)
        log(f"round {rnd}: {info}")
        if all(v == "verified" for v in verdicts):
            out.stopped = Stop.ALL_VERIFIED
            break
        if rnd == rounds or (left() is not None and left() <= 0):
            out.stopped = Stop.ROUNDS if rnd == rounds else Stop.TIME
            break
        new = []
        if area:
            for i, (x, label, lo, hi) in enumerate(probs):
                if verdicts[i] in area_for and i not in cands:
                    net_i = generative_problem(G, C, x, int(label), latent_lower=lo, latent_upper=hi).network
                    cands[i] = area_candidate(i, net_i, int(label), lo, hi, leaves=area_leaves,
                                              bounds=area_bounds)
            have = {c.index for c in chosen}
            # easiest first: the largest proven margin (over its leaves) under the current layer
            W, b = C.layers[-1].dense_W(), C.layers[-1].b
            new = sorted((c for i, c in cands.items() if i not in have and verdicts[i] in area_for),
                         key=lambda c: -float(margins(W, b, c.hl, c.hu, c.label).min()))
        if (not images and not chosen and not new) or (found + sampled == 0 and not new and out.repairs):
            out.stopped = Stop.NOTHING_NEW    # the same images and rows would give the same change
            break
        r: RepairResult = fine(C, chosen + new)
        if r.network is None and new:
            # the candidates' rows together (with the keep images) admit no change: the largest
            # prefix (smallest changes first) that does, by bisection on its length
            lo_n, hi_n, best = 0, len(new) - 1, None
            while lo_n <= hi_n and (left() is None or left() > 0):
                mid = (lo_n + hi_n) // 2
                rm = fine(C, chosen + new[:mid])
                if rm.network is not None:
                    best, lo_n = (rm, mid), mid + 1
                else:
                    hi_n = mid - 1
            if best is not None:
                r, new = best[0], new[:best[1]]
            log(f"area rows of {len(new)} new problems kept")
        info["repair"] = r.status.value
        info["area_problems"] = len(chosen) + (len(new) if r.network is not None else 0)
        if r.network is None:
            out.repairs.append(r)
            out.stopped = Stop.NO_CHANGE
            break
        if Xv is not None:
            acc_new = float(np.mean(predictions(r.network, Xv) == yv))
            info["accuracy"] = acc_new
            if max_accuracy_drop is not None and acc0 - acc_new > max_accuracy_drop:
                log(f"change not taken: accuracy {acc_new:.4f} (was {acc0:.4f})")
                out.stopped = Stop.ACCURACY
                break
            acc = acc_new
        out.repairs.append(r)
        chosen += new
        C = r.network
        out.classifier = C
    out.accuracy = None if acc0 is None else (acc0, acc)
    out.time = time.perf_counter() - t0
    return out


def _validation(validation, n_inputs: int, max_drop):
    """``(images (N, n_inputs), labels (N,))`` or (None, None); checks ``max_accuracy_drop`` needs it."""
    if max_drop is not None and not (isinstance(max_drop, (int, float)) and 0 <= max_drop < 1):
        raise RepairInputError(f"max_accuracy_drop must be a fraction in [0, 1), got {max_drop!r}")
    if validation is None:
        if max_drop is not None:
            raise RepairInputError("max_accuracy_drop needs validation=(images, labels)")
        return None, None
    try:
        X, y = validation
    except (TypeError, ValueError):
        raise RepairInputError("validation must be a pair (images, labels)") from None
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1)
    y = np.asarray(y).reshape(-1)
    if X.shape[1] != n_inputs or len(X) != len(y) or not len(y):
        raise RepairInputError(f"validation images must be N x {n_inputs} with N labels (N > 0), "
                               f"got {X.shape} and {y.shape}")
    return X, y.astype(np.int64)


def _centres(G, probs, cands):
    """(image, label) at the centre of each candidate's latent box: a point its rows also cover."""
    out = []
    for c in cands:
        x, label, lo, hi = probs[c.index]
        z = 0.5 * (np.asarray(lo, dtype=np.float64) + np.asarray(hi, dtype=np.float64))
        out.append((G.forward(np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1), z])), int(label)))
    return out


__all__ = ["repair_spec", "SpecRepairResult", "Stop"]
