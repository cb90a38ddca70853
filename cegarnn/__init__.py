"""cegarnn: verify and repair neural networks, above all under generative (distribution-shift) specs."""
__version__ = "0.1.0"

from .verifier import verify  # noqa: E402,F401
