"""Solver-neutral programs and the network encoder.

* :mod:`.program` — :class:`Program`, the append-mostly sparse (MI)LP with a change log;
* :mod:`.network` — :func:`encode_network` (networks, several copies per program, ReLU and
  sigmoid/tanh encodings, incremental refinement), :func:`add_linear_objective`,
  :func:`add_output_constraints`; the rows of each layer kind are built in :mod:`.layer_rows`;
* :mod:`.weights` — :func:`encode_weight_layer`, one layer's weights as variables (repair);
* :mod:`.decode` — :func:`decode`, solution vectors back to per-value arrays;
* :mod:`.errors` — :class:`EncodingError`, :class:`BigMError`, :data:`MAX_BIG_M`.
"""
from .decode import decode
from .errors import MAX_BIG_M, BigMError, EncodingError
from .network import NetworkEncoding, add_linear_objective, add_output_constraints, encode_network
from .program import INF, Program, ProgramError
from .weights import WeightEncoding, encode_weight_layer

__all__ = ["INF", "MAX_BIG_M", "Program", "ProgramError", "BigMError", "EncodingError", "NetworkEncoding",
           "WeightEncoding",
           "add_linear_objective", "add_output_constraints", "decode", "encode_network",
           "encode_weight_layer"]
