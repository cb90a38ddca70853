"""Counterexample-guided repair of generative specifications: verify → repair → re-verify.

:func:`repair_spec` takes generative problems ("``C(G(x, z))`` keeps ``label`` for every ``z`` in
the latent box") as ``(x, label, latent_lower, latent_upper)`` with one generator and one
classifier. Each round verifies every open problem on the current classifier; the confirmed
counterexamples become images ``G(x, z)`` that the classifier must label correctly (with a
margin); :func:`~.finetune.finetune` changes one classifier layer so that every image collected
so far gets its label while the clean ``keep`` images keep theirs; then the problems are verified
again. It stops when every problem is verified, when a round finds no new counterexample (the
rest are ``unknown``: the same images would give the same change), or after ``rounds`` rounds or
``time_limit``.

Every round re-verifies every problem (the classifier changed); the generator's bounds are not
yet reused between rounds. What holds at the end: each problem's entry in ``SpecRepairResult.verdicts`` is the verifier's
answer **on the returned classifier** (``verified`` is a proof covering the float32 execution, as
everywhere in cegarnn); problems left ``falsified``/``unknown`` keep the verifier's reason.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..network.ir import Network
from .constraints import RepairInputError, ensure
from .finetune import finetune
from .inputs import as_network
from .result import RepairResult


@dataclass
class SpecRepairResult:
    """``classifier``: the final classifier (the original if no round changed it);
    ``verdicts``: the verifier's final verdict per problem; ``reasons``: its reason;
    ``rounds``: per round, the verdict counts, the counterexamples added and the repair's status;
    ``repairs``: the :class:`RepairResult` of every round that changed the classifier."""

    classifier: Network
    verdicts: list
    reasons: list
    rounds: list = field(default_factory=list)
    repairs: list = field(default_factory=list)
    time: float = 0.0

    @property
    def all_verified(self) -> bool:
        return all(v == "verified" for v in self.verdicts)

    def summary(self) -> str:
        n = len(self.verdicts)
        return (f"{sum(v == 'verified' for v in self.verdicts)}/{n} verified after {len(self.rounds)} rounds "
                f"({self.time:.1f} s)")


def repair_spec(generator, classifier, problems, *, keep=None, layer: int = -1, margin: float = 0.05,
                rounds: int = 5, method: str = "cegar", verify_time: float = 10.0,
                time_limit: Optional[float] = None, **finetune_options) -> SpecRepairResult:
    """Repair ``classifier`` until every problem ``(x, label, latent_lower, latent_upper)`` is
    verified for ``C(G([x, z]))`` (see the module). ``keep=(images, labels)``: clean images whose
    labels the repair must keep (hard rows, added lazily). Other keyword options go to
    :func:`finetune` (e.g. ``norm``, ``relu``)."""
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
    images, labels = [], []
    verdicts, reasons = ["unknown"] * len(probs), [""] * len(probs)
    out = SpecRepairResult(C, verdicts, reasons)

    def left() -> Optional[float]:
        return None if time_limit is None else time_limit - (time.perf_counter() - t0)

    for rnd in range(rounds + 1):
        found = 0
        for i, (x, label, lo, hi) in enumerate(probs):
            budget = verify_time if left() is None else max(0.1, min(verify_time, left()))
            prob = generative_problem(G, C, x, int(label), latent_lower=lo, latent_upper=hi, name=f"p{i}")
            res = verify(prob, method=method, time_limit=budget)
            verdicts[i], reasons[i] = str(res.status), str(res.reason or "")
            if res.counterexample is not None:
                z = np.asarray(res.counterexample.free_input, dtype=np.float64)
                images.append(G.forward(np.concatenate([np.asarray(x, dtype=np.float64).reshape(-1), z])))
                labels.append(int(label))
                found += 1
        info = {"round": rnd, "verified": verdicts.count("verified"), "falsified": verdicts.count("falsified"),
                "unknown": verdicts.count("unknown"), "counterexamples_added": found}
        out.rounds.append(info)
        if all(v == "verified" for v in verdicts) or rnd == rounds or not images or \
                (left() is not None and left() <= 0):
            break
        if found == 0 and out.repairs:
            break           # nothing new to learn: the same images would give the same change
        r: RepairResult = finetune(C, np.stack(images), ensure(labels, C.n_outputs, margin), layer=layer,
                                   keep=keep, time_limit=left(), **finetune_options)
        info["repair"] = r.status.value
        out.repairs.append(r)
        if r.network is None:
            break
        C = r.network
        out.classifier = C
    out.time = time.perf_counter() - t0
    return out


__all__ = ["repair_spec", "SpecRepairResult"]
