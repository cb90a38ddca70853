"""Reading user files that may be gzipped, with errors that say what is wrong."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path


def read_maybe_gzip(path, what: str, error=ValueError) -> bytes:
    """Bytes of ``path``, gunzipped when it starts with the gzip magic number.

    Raises ``error`` naming the file for: a missing file, a directory, a truncated or corrupt
    gzip stream, and a ``.gz`` name on a file that is not gzipped. ``what`` names the expected
    kind of file in messages (e.g. 'ONNX file').
    """
    p = Path(path)
    if not p.exists():
        raise error(f"{what} not found: {p}")
    if p.is_dir():
        raise error(f"expected a {what}, got a directory: {p}")
    data = p.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as e:
            raise error(f"{p}: truncated or corrupt gzip file ({e})") from None
    elif p.suffix == ".gz":
        raise error(f"{p}: named .gz but it is not a gzip file")
    return data
