"""Decoding solutions back to per-value arrays (the implementation lives in :mod:`.builder`)."""
from .builder import decode

__all__ = ["decode"]
