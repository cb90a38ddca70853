"""Our own batched CROWN / alpha-CROWN on the IR (issue 15): subproblems with their own input
boxes and neuron splits. See :class:`BatchBounder` and docs/BOUNDS.md.

Importing this package (and plain CROWN with the numpy backend) never imports torch.
"""
from .bounder import BatchBounder, BoundState, take_alphas
from .splits import SplitError, Splits

__all__ = ["BatchBounder", "BoundState", "SplitError", "Splits", "take_alphas"]
