"""Errors of the encoder, and the big-M limit that turns a meaningless ReLU encoding into one."""
from __future__ import annotations

import numpy as np


class EncodingError(ValueError):
    """The network, bounds or options cannot be encoded (batched or non-finite bounds, sizes)."""


#: Largest ``|bound|`` of an unstable ReLU's pre-activation that the exact (big-M) encoding uses
#: as a coefficient. HiGHS treats ``|v| >= 1e20`` as infinite (option ``infinite_bound``) and
#: rejects matrix entries above ``1e15`` (``large_matrix_value``), but a big-M row is meaningless
#: long before: with HiGHS' primal feasibility tolerance 1e-7 and integrality tolerance 1e-6, a
#: constant ``M = 1e9`` lets an "inactive" neuron reach ``1e3`` and spans 9+ orders of magnitude in
#: one row (HiGHS' scaling cannot repair that). Beyond this limit :class:`BigMError` is raised.
MAX_BIG_M = 1e9


class BigMError(EncodingError):
    """An unstable ReLU's pre-activation bound is infinite or beyond the big-M limit
    (:data:`MAX_BIG_M`): encoding it would crash the solver or let it solve a numerically
    meaningless model. Attributes: ``layer`` (index in ``network.layers`` of the ReLU), ``neuron``,
    ``side`` ('lower' or 'upper'), ``value`` (the bound), ``limit``. A verifier should answer
    ``unknown`` with this message (tighter bounds, e.g. CROWN or a smaller box, may help)."""

    def __init__(self, layer: int, neuron: int, side: str, value: float, limit: float, name: str = ""):
        self.layer, self.neuron, self.side = int(layer), int(neuron), side
        self.value, self.limit = float(value), float(limit)
        what = "is infinite" if not np.isfinite(value) else f"exceeds the big-M limit {limit:g}"
        where = f"{name}: " if name else ""
        super().__init__(f"{where}ReLU layer {self.layer}, neuron {self.neuron}: pre-activation {side} bound "
                         f"{self.value!r} {what}; a big-M encoding would be numerically meaningless "
                         "(tighten the bounds, e.g. CROWN bounds or a smaller input box)")

    def __reduce__(self):
        return (type(self), (self.layer, self.neuron, self.side, self.value, self.limit))


def check_big_m(l: np.ndarray, u: np.ndarray, idx: np.ndarray, layer: int, limit: float, name: str) -> None:
    """Raise :class:`BigMError` for the first neuron of ``idx`` whose bound is infinite or
    (``limit`` finite) larger in magnitude than ``limit``."""
    for side, v in (("lower", l), ("upper", u)):
        bad = ~np.isfinite(v[idx]) | (np.abs(v[idx]) > limit)
        if np.any(bad):
            k = int(np.argmax(bad))
            raise BigMError(layer, int(idx[k]), side, float(v[idx[k]]), limit, name)



__all__ = ["EncodingError", "BigMError", "MAX_BIG_M", "check_big_m"]
