"""Solver-neutral programs and the network encoder."""
from .program import INF, Program, ProgramError
from .builder import (EncodingError, NetworkEncoding, WeightEncoding, add_linear_objective,
                      add_output_constraints, decode, encode_network, encode_weight_layer)

__all__ = ["INF", "Program", "ProgramError", "EncodingError", "NetworkEncoding", "WeightEncoding",
           "add_linear_objective", "add_output_constraints", "decode", "encode_network",
           "encode_weight_layer"]
