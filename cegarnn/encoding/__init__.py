"""Solver-neutral programs and the network encoder."""
from .program import INF, Program, ProgramError
from .builder import (MAX_BIG_M, BigMError, EncodingError, NetworkEncoding, WeightEncoding,
                      add_linear_objective, add_output_constraints, decode, encode_network,
                      encode_weight_layer)

__all__ = ["INF", "MAX_BIG_M", "Program", "ProgramError", "BigMError", "EncodingError", "NetworkEncoding",
           "WeightEncoding",
           "add_linear_objective", "add_output_constraints", "decode", "encode_network",
           "encode_weight_layer"]
