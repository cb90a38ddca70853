"""VNN-COMP front end: VNN-LIB properties (``vnnlib``), result files and the benchmark runner
(``runner``), comparison with other tools' results (``compare``) and the ``cegarnn`` command (``cli``).
"""
from .vnnlib import VnnlibCase, VnnlibError, onnx_reference, parse_vnnlib, parse_vnnlib_text, vnnlib_problems

__all__ = ["VnnlibCase", "VnnlibError", "onnx_reference", "parse_vnnlib", "parse_vnnlib_text", "vnnlib_problems"]
