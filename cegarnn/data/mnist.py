"""Read MNIST from standard IDX files (gzipped or plain).

Where the files are looked for, in order:

1. the ``root`` argument, if given (only there);
2. the directory in the ``CEGARNN_DATA`` environment variable (either the MNIST folder itself
   or a folder holding ``mnist/``);
3. ``shared/data/mnist`` next to any ancestor of this package (the project layout puts MNIST
   in ``../shared/data/mnist`` relative to the repository root).

A missing folder raises :class:`FileNotFoundError` naming every place tried; a corrupt file
raises :class:`IDXFormatError` (a ``ValueError``) naming the file and the problem.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["IDXFormatError", "read_idx", "load_mnist", "find_mnist_dir", "default_mnist_dirs"]

ENV_VAR = "CEGARNN_DATA"

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


class IDXFormatError(ValueError):
    """An IDX file is malformed (bad magic number, truncated data, unexpected shape)."""


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":  # gzip magic, whatever the file is called
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise IDXFormatError(f"{path}: cannot decompress ({e})") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or gzipped) and return its array with the native dtype."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXFormatError(f"{path}: file too short for an IDX header ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        raise IDXFormatError(
            f"{path}: bad IDX magic number {data[:4].hex()} (the first two bytes must be zero)"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise IDXFormatError(f"{path}: unknown IDX data type code 0x{code:02x}")
    if ndim == 0:
        raise IDXFormatError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXFormatError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        raise IDXFormatError(
            f"{path}: IDX header declares shape {shape} ({expected} bytes of data) "
            f"but the file holds {actual} bytes"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def default_mnist_dirs() -> list[Path]:
    """Candidate MNIST folders when no root is given, in search order."""
    dirs: list[Path] = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs += [Path(env), Path(env) / "mnist"]
    here = Path(__file__).resolve().parent
    for anc in [here, *here.parents]:
        dirs.append(anc / "shared" / "data" / "mnist")
    return dirs


def _candidate_files(directory: Path, split: str, kind: str) -> list[Path]:
    prefix = _SPLIT_PREFIX[split]
    ndim = 3 if kind == "images" else 1
    names = [f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte"]
    return [directory / (n + ext) for n in names for ext in (".gz", "")]


def _find_file(directory: Path, split: str, kind: str) -> Path | None:
    for p in _candidate_files(directory, split, kind):
        if p.is_file():
            return p
    return None


def find_mnist_dir(split: str = "train", root: str | os.PathLike | None = None) -> Path:
    """The first folder that holds both IDX files of ``split``; FileNotFoundError otherwise."""
    _check_split(split)
    dirs = [Path(root)] if root is not None else default_mnist_dirs()
    for d in dirs:
        if _find_file(d, split, "images") and _find_file(d, split, "labels"):
            return d
    prefix = _SPLIT_PREFIX[split]
    tried = "\n  ".join(str(d) for d in dirs)
    raise FileNotFoundError(
        f"MNIST '{split}' IDX files ({prefix}-images-idx3-ubyte[.gz], "
        f"{prefix}-labels-idx1-ubyte[.gz]) not found. Places tried:\n  {tried}\n"
        f"Pass root=..., or set {ENV_VAR} to the folder holding them."
    )


def _check_split(split: str) -> None:
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def load_mnist(split: str = "train", root: str | os.PathLike | None = None):
    """Load an MNIST split.

    Returns ``(images, labels)``: images float32 in [0, 1] of shape (N, 28, 28) and labels int64
    of shape (N,).
    """
    d = find_mnist_dir(split, root)
    img_path = _find_file(d, split, "images")
    lab_path = _find_file(d, split, "labels")
    images = read_idx(img_path)
    labels = read_idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IDXFormatError(
            f"{img_path}: expected a 3-d uint8 image array, got shape {images.shape} {images.dtype}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IDXFormatError(
            f"{lab_path}: expected a 1-d uint8 label array, got shape {labels.shape} {labels.dtype}"
        )
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{img_path} holds {len(images)} images but {lab_path} holds {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise IDXFormatError(f"{lab_path}: label {int(labels.max())} out of range 0..9")
    return images.astype(np.float32) / np.float32(255.0), labels.astype(np.int64)
