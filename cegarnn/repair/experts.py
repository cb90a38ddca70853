"""Experts of :func:`~cegarnn.repair.nnrepair.nnrepair` and how they are combined at inference.

:func:`nnrepair` makes one *expert* per class ``c``: a copy of the network with a few weights of
one layer changed so that failing inputs of class ``c`` get label ``c`` while every *passing*
input keeps its label (both checked on the expert's float32 ONNX export). At inference the
original network ``N`` and the experts ``E_c`` (only those with a network, i.e. ``repaired``)
give logits; a *strategy* turns them into one label. Definitions (``p_e = softmax(E_e(x))``,
``a_e = argmax E_e(x)``, first index on ties everywhere, as numpy and torch do):

* ``naive``: expert ``c`` *claims* ``x`` when ``a_c = c`` and ``argmax N(x) != c`` (it moves the
  input to its own class); the expert of all classes (key -1, ``per_class=False``) claims ``x``
  when ``a_{-1} != argmax N(x)``. If exactly one expert claims ``x``, it decides; otherwise (none,
  or several disagreeing specialists) the original network decides.
* ``average``: argmax of the mean of the experts' softmax.
* ``confidence``: the expert with the highest max-softmax decides (the first in class order on
  ties). Max-softmax is compared through ``r_e = log sum_{j != a_e} exp(y_j - y_{a_e})``
  (``max softmax = 1 / (1 + exp(r_e))``; smaller ``r`` = more confident), which does not saturate
  in float32 the way ``max softmax`` does near 1.
* ``votes``: the label most experts predict (their argmax); a tie for the most votes is decided
  by the original network's label.

What each strategy guarantees (``kept`` and ``fixed`` mean: on the float32 export of the expert,
as :func:`nnrepair` checks and reports them; the combination is computed from float32 logits):

* A *passing* input ``x`` with label ``y`` (``N`` classifies it ``y``; checked) that every
  combined expert keeps (its float32 output ``y`` strictly largest; reported in ``passing_kept``;
  an expert that loses one is not ``repaired`` and not combined) is classified ``y`` by **every**
  strategy: all experts' argmax is ``y``, so nobody claims it (naive: expert ``y`` predicts ``y``
  but so does ``N``); each ``p_e`` has ``y`` strictly largest, so their mean has too; the most
  confident expert says ``y``; the vote is unanimous. (In floating point the softmax and the mean
  round, about 1e-7 relative: only logit gaps of that size could tie.)
* A *failing* input ``x`` (``N`` misclassifies it) fixed by expert ``c`` is classified ``c``:
  under ``naive`` iff no other expert claims it; under ``confidence`` iff ``E_c`` is the most
  confident expert on it (the first on ties); under ``average``/``votes`` iff ``c`` wins the
  mean/the vote. None of these is guaranteed: the other experts were not asked anything about the
  inputs of class ``c``, and on the backdoor benchmark they are often more confident in their own
  class or in the backdoor's target. With ``per_class=False`` (one expert for all classes) every
  strategy returns that expert's label, so every input it fixes is classified correctly.
* Nothing is guaranteed for any other input (unseen data, the clean or triggered test set): the
  benchmark (``experiments/bench_nnrepair.py``) measures it.

:meth:`ExpertsResult.combined_module` is one ``torch.nn.Module`` computing a strategy (its output
are *scores* whose argmax is the combined label: the mean softmax, the chosen network's softmax,
or vote fractions plus 1 for the original's label on a tie); :meth:`ExpertsResult.save_onnx`
exports it with ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``). The module
runs the experts in torch float32, the numpy combination uses the ONNX exports' float32 logits:
they agree except where two scores tie up to rounding (seen on the benchmark: ``average`` on up
to 1 % of triggered images, where saturated softmaxes make the mean a vote count with exact ties).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..network.ir import Network
from .constraints import RepairInputError
from .result import RepairReason, RepairResult, RepairStatus, _jsonable

STRATEGIES = ("naive", "average", "confidence", "votes")
DEFAULT_STRATEGY = "confidence"
ALL_CLASSES = -1          # key of the single expert of per_class=False


def check_strategy(strategy) -> str:
    if strategy not in STRATEGIES:
        raise RepairInputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    return strategy


# --------------------------------------------------------------------------- numpy combination
def softmax(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float64)
    e = np.exp(Y - Y.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def unconfidence(Y: np.ndarray) -> np.ndarray:
    """``r = log sum_{j != argmax} exp(y_j - y_max)`` per row of the last axis (see the module)."""
    Y = np.asarray(Y, dtype=np.float64)
    a = Y.argmax(-1)
    top = np.take_along_axis(Y, a[..., None], -1)
    rest = np.where(np.arange(Y.shape[-1]) == a[..., None], -np.inf, Y)
    second = rest.max(-1, keepdims=True)
    return (second - top)[..., 0] + np.log(np.exp(rest - second).sum(-1))


def combine(original_logits, expert_logits: dict, strategy: str = DEFAULT_STRATEGY):
    """``(labels (N,), scores (N, K))`` of a strategy from the original network's logits (N, K) and
    each expert's (``{class: (N, K)}``; -1 for the expert of all classes). No experts: the
    original network's softmax."""
    check_strategy(strategy)
    Yo = np.asarray(original_logits, dtype=np.float64)
    keys = sorted(expert_logits)
    N, K = Yo.shape
    if not keys:
        s = softmax(Yo)
        return s.argmax(1), s
    Y = np.stack([np.asarray(expert_logits[c], dtype=np.float64) for c in keys], 1)    # (N, E, K)
    rows = np.arange(N)
    if strategy == "average":
        scores = softmax(Y).mean(1)
    elif strategy == "confidence":
        pick = unconfidence(Y).argmin(1)
        scores = softmax(Y[rows, pick])
    elif strategy == "votes":
        counts = np.zeros((N, K))
        np.add.at(counts, (np.repeat(rows, len(keys)), Y.argmax(-1).reshape(-1)), 1.0)
        tie = (counts == counts.max(1, keepdims=True)).sum(1) > 1
        scores = counts / len(keys) + tie[:, None] * np.eye(K)[Yo.argmax(1)]
    else:  # naive
        claims = _claims(Y.argmax(-1), Yo.argmax(1), np.asarray(keys))
        one = claims.sum(1) == 1
        pick = claims.argmax(1)
        scores = np.where(one[:, None], softmax(Y[rows, pick]), softmax(Yo))
    return scores.argmax(1), scores


def _claims(preds, orig, keys):
    """(N, E) bool: expert e claims input n (see ``naive`` in the module docstring)."""
    own = (preds == keys[None, :]) & (orig[:, None] != keys[None, :])
    anyc = (keys[None, :] == ALL_CLASSES) & (preds != orig[:, None])
    return own | anyc


# --------------------------------------------------------------------------- torch combination
def _torch_module(original, experts: list, keys: list, strategy: str):
    import torch
    from torch import nn

    class CombinedExperts(nn.Module):
        """The original network and the experts combined by one strategy (see
        :mod:`cegarnn.repair.experts`); returns (B, K) scores whose argmax is the label."""

        def __init__(self):
            super().__init__()
            self.original = original
            self.experts = nn.ModuleList(experts)
            self.strategy = strategy
            self.register_buffer("keys", torch.tensor(keys, dtype=torch.int64))

        def forward(self, x):
            yo = self.original(x)
            K = yo.shape[-1]
            if len(self.experts) == 0:
                return torch.softmax(yo, -1)
            Y = torch.stack([e(x) for e in self.experts], 1)                   # (B, E, K)
            classes = torch.arange(K, device=yo.device)
            if self.strategy == "average":
                return torch.softmax(Y, -1).mean(1)
            if self.strategy == "votes":
                counts = (Y.argmax(-1).unsqueeze(-1) == classes).to(yo.dtype).sum(1)        # (B, K)
                top = counts.max(-1, keepdim=True).values
                tie = ((counts == top).to(yo.dtype).sum(-1, keepdim=True) > 1.5).to(yo.dtype)
                orig = (yo.argmax(-1, keepdim=True) == classes).to(yo.dtype)
                return counts / float(len(self.experts)) + tie * orig
            if self.strategy == "confidence":
                two = torch.topk(Y, 2, dim=-1).values                                        # (B, E, 2)
                first = (Y.argmax(-1, keepdim=True) == classes)
                rest = torch.where(first, torch.full_like(Y, float("-inf")), Y)
                r = (two[..., 1] - two[..., 0]) + torch.log(torch.exp(rest - two[..., 1:2]).sum(-1))
                pick = r.argmin(1)
                chosen = torch.gather(Y, 1, pick.view(-1, 1, 1).expand(-1, 1, K)).squeeze(1)
                return torch.softmax(chosen, -1)
            # naive
            preds = Y.argmax(-1)                                                              # (B, E)
            orig = yo.argmax(-1, keepdim=True)
            own = (preds == self.keys) & (orig != self.keys)
            anyc = (self.keys == ALL_CLASSES) & (preds != orig)
            claims = (own | anyc).to(yo.dtype)
            one = (claims.sum(1, keepdim=True) == 1.0)
            pick = claims.argmax(1)
            chosen = torch.gather(Y, 1, pick.view(-1, 1, 1).expand(-1, 1, K)).squeeze(1)
            return torch.where(one, torch.softmax(chosen, -1), torch.softmax(yo, -1))

    return CombinedExperts().eval()


# --------------------------------------------------------------------------- the result
@dataclass
class ExpertsResult:
    """The outcome of :func:`~cegarnn.repair.nnrepair.nnrepair`.

    ``experts``: one :class:`RepairResult` per class that had failing inputs (key -1: the single
    expert of ``per_class=False``); each has ``extra['fixed']`` (indices into the failing set fixed
    on its float32 export), ``extra['not_fixed']``, ``extra['weights']`` (the localised
    ``[row, col]`` weights), ``extra['passing_kept']``. ``status``: ``repaired`` when at least
    one expert is (reason ``checked`` if every failing input is fixed by its expert, ``partial``
    otherwise); ``infeasible`` when no expert fixes anything and each MILP proved it (reason
    ``none_fixed``); else ``unknown``. ``combined``: per strategy, how many failing inputs get their
    label and how many passing inputs keep theirs under the combination (float32 logits).
    """

    status: RepairStatus
    reason: RepairReason
    original: Network
    experts: dict = field(default_factory=dict)
    strategy: str = DEFAULT_STRATEGY
    layer: Optional[int] = None
    n_failing: int = 0
    n_passing: int = 0
    combined: dict = field(default_factory=dict)
    time: float = 0.0
    message: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def repaired(self) -> bool:
        return self.status is RepairStatus.REPAIRED

    @property
    def networks(self) -> dict:
        """``{class: Network}`` of the experts that are combined (those with a network)."""
        return {c: r.network for c, r in sorted(self.experts.items()) if r.network is not None}

    @property
    def fixed(self) -> list:
        """Indices into the failing set fixed by their expert (float32 export)."""
        return sorted(int(i) for r in self.experts.values() for i in r.extra.get("fixed", []))

    # ------------------------------------------------------------------ inference
    def expert_logits(self, inputs, session_cache: Optional[dict] = None) -> tuple:
        """``(original logits, {class: logits})`` of the float32 ONNX exports on ``inputs``."""
        from .check import float32_outputs, onnx_session
        cache = {} if session_cache is None else session_cache
        nets = {"orig": self.original, **self.networks}
        out = {}
        for key, net in nets.items():
            if key not in cache:
                cache[key] = onnx_session(net)
            out[key] = float32_outputs(net, inputs, session=cache[key])
        yo = out.pop("orig")
        return yo, out

    def predict(self, inputs, strategy: Optional[str] = None, session_cache: Optional[dict] = None):
        """Combined labels (N,) on ``inputs`` (numpy combination of the float32 exports' logits)."""
        yo, ye = self.expert_logits(inputs, session_cache)
        return combine(yo, ye, strategy or self.strategy)[0]

    def combined_module(self, strategy: Optional[str] = None, dtype=None):
        """One ``torch.nn.Module`` (float32 by default) computing ``strategy`` (default: this
        result's). Its output: (B, K) scores, argmax = the combined label."""
        import torch

        from ..network.torch_io import to_torch
        strategy = check_strategy(strategy or self.strategy)
        dt = torch.float32 if dtype is None else dtype
        nets = self.networks
        return _torch_module(to_torch(self.original, dt), [to_torch(n, dt) for n in nets.values()],
                             list(nets), strategy)

    def save_onnx(self, path, strategy: Optional[str] = None, opset: int = 17):
        """Write the combined model of ``strategy`` (default: this result's) as float32 ONNX with a
        dynamic batch (input ``input`` in the network's input shape, output ``output``: the
        scores). Uses ``torch.onnx.export(..., dynamo=False)``; an exporter failure raises
        ``RuntimeError`` naming it (``combined_module`` still runs in torch)."""
        import torch

        module = self.combined_module(strategy)
        dummy = torch.zeros((2,) + tuple(self.original.input_shape), dtype=torch.float32)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, (dummy,), str(path), dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=["output"],
                                  dynamic_axes={"input": {0: "N"}, "output": {0: "N"}})
        except Exception as exc:        # noqa: BLE001 - re-raised with what failed
            raise RuntimeError(f"the combined model ({strategy or self.strategy}) could not be exported to ONNX "
                               f"by torch.onnx.export (TorchScript exporter, opset {opset}): "
                               f"{type(exc).__name__}: {exc}") from exc
        return path

    # ------------------------------------------------------------------ reports
    def to_dict(self) -> dict:
        return {"status": self.status.value, "reason": self.reason.value, "message": self.message,
                "strategy": self.strategy, "layer": self.layer, "n_failing": self.n_failing,
                "n_passing": self.n_passing, "fixed": self.fixed, "time": self.time,
                "combined": _jsonable(self.combined),
                "experts": {str(c): r.to_dict() for c, r in sorted(self.experts.items())},
                "extra": _jsonable(self.extra)}

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), **kw)

    def summary(self) -> str:
        lines = [f"nnrepair: {self.status.value} ({self.reason.value}); {len(self.fixed)}/{self.n_failing} "
                 f"failing inputs fixed by their expert; {len(self.networks)}/{len(self.experts)} experts "
                 f"combined; {self.time:.2f} s" + (f"; {self.message}" if self.message else "")]
        for c, r in sorted(self.experts.items()):
            e = r.extra
            lines.append(f"  expert {'all' if c == ALL_CLASSES else c}: {r.status.value} ({r.reason.value}); "
                         f"fixed {len(e.get('fixed', []))}/{e.get('n_failing', 0)}, passing kept "
                         f"{e.get('passing_kept', 0)}/{e.get('passing_total', 0)}, {r.time:.2f} s")
        for s, v in self.combined.items():
            lines.append(f"  {s}: failing correct {v['failing_correct']}/{self.n_failing}, "
                         f"passing kept {v['passing_kept']}/{self.n_passing}")
        return "\n".join(lines)


__all__ = ["ExpertsResult", "STRATEGIES", "DEFAULT_STRATEGY", "ALL_CLASSES", "combine", "softmax",
           "unconfidence", "check_strategy"]
