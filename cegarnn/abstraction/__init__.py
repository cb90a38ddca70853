"""Piecewise-linear abstractions of activations (sigmoid/tanh envelopes and breakpoints)."""
from .sigmoid import (EPS, SIGMOID, TANH, AbstractionError, Envelope, SegmentedNeuron, SShape,
                      abstract_range, envelope, get_activation, uniform_breakpoints)

__all__ = ["EPS", "SIGMOID", "TANH", "AbstractionError", "Envelope", "SegmentedNeuron", "SShape",
           "abstract_range", "envelope", "get_activation", "uniform_breakpoints"]
