"""Decoding a solver's solution vector back into the values of an encoded network."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .network import NetworkEncoding


def decode(solution_x, encoding: NetworkEncoding) -> list:
    """Per-value arrays ``[v[0], v[1], ...]`` of an encoding from a solution vector."""
    x = np.asarray(solution_x, dtype=np.float64)
    return [x[vv] for vv in encoding.value_vars]



__all__ = ["decode"]
