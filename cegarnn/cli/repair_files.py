"""The files of ``cegarnn repair`` (with or without ``--spec``) and ``cegarnn-repair``: npz/npy
arrays → checked arrays, ``KEY=VALUE`` options, and the one way a failed algorithm is reported.
Every error about a file is a :class:`~cegarnn.repair.RepairInputError` naming it."""
from __future__ import annotations

import json
import traceback
from pathlib import Path

from .exits import EXIT_ERROR, one_line, print_error

INPUT_KEYS, LABEL_KEYS = ("x", "inputs"), ("y", "labels")


def _existing(path, what: str) -> Path:
    from ..repair import RepairInputError
    p = Path(path)
    if not p.is_file():
        raise RepairInputError(f"{what} file not found: {path}")
    return p


def _load_array(path, what: str):
    import numpy as np

    from ..repair import RepairInputError
    p = _existing(path, what)
    try:
        return np.load(p, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise RepairInputError(f"{what} file {path} cannot be read by numpy: {one_line(e)}") from None


def _pick(npz, keys, path, what: str, required: bool = True):
    from ..repair import RepairInputError
    for k in keys:
        if k in npz.files:
            return npz[k]
    if required:
        raise RepairInputError(f"{path} has no array {' or '.join(map(repr, keys))} ({what}); "
                               f"it holds {', '.join(npz.files) or 'nothing'}")
    return None


def _load_npz_pair(path, what: str, labels_required: bool = True):
    """``(x, y)`` from an npz file: arrays ``x`` (or ``inputs``) and ``y`` (or ``labels``)."""
    import numpy as np

    from ..repair import RepairInputError
    data = _load_array(path, what)
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise RepairInputError(f"{what} file {path} must be an .npz archive with arrays x and y")
    with data:
        return (_pick(data, INPUT_KEYS, path, "the inputs"),
                _pick(data, LABEL_KEYS, path, "the labels", required=labels_required))


def load_repair_data(inputs, labels=None, keep=None):
    """``(X, y, keep)`` from the files of ``cegarnn repair``.

    ``inputs``: ``.npz`` with ``x`` (or ``inputs``) and ``y`` (or ``labels``), or ``.npy`` (then
    ``labels`` is needed); ``labels``: ``.npy`` of one integer label per input (overrides the
    npz's); ``keep``: ``.npz`` with ``x`` and ``y`` — inputs whose labels must be kept, passed to
    the algorithm as ``(x, y)``. Raises :class:`~cegarnn.repair.RepairInputError`."""
    import numpy as np

    from ..repair import RepairInputError
    if str(inputs).endswith(".npz"):
        X, y = _load_npz_pair(inputs, "inputs", labels_required=labels is None)
    else:
        X = _load_array(inputs, "inputs")
        if not isinstance(X, np.ndarray):
            raise RepairInputError(f"inputs file {inputs} must be a single .npy array or an .npz with x and y")
        if labels is None:
            raise RepairInputError(f"inputs {inputs} is a .npy array: give the labels with --labels Y.npy "
                                   "(or put x and y into one .npz)")
        y = None
    if labels is not None:
        y = _load_array(labels, "labels")
        if not isinstance(y, np.ndarray):
            raise RepairInputError(f"labels file {labels} must be a single .npy array")
    X, y = _check_pair(X, y, "inputs", "labels")
    keep_pair = None
    if keep is not None:
        keep_pair = _check_pair(*_load_npz_pair(keep, "keep"), "keep inputs", "keep labels")
    return X, y, keep_pair


def _check_pair(X, y, xs: str, ys: str):
    import numpy as np

    from ..repair import RepairInputError
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 0 or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise RepairInputError(f"{xs} must be a numeric array (N, ...), got dtype {X.dtype} shape {X.shape}")
    if y.ndim != 1:
        raise RepairInputError(f"{ys} must be one label per input (a 1-D array), got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise RepairInputError(f"{X.shape[0]} {xs} but {y.shape[0]} {ys}")
    return X, y


def parse_options(items) -> dict:
    """``KEY=VALUE`` strings → dict; values are JSON (``-1``, ``0.5``, ``"l1"``, ``true``, ``null``),
    anything else a plain string (``norm=l1``)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"option {item!r} must be KEY=VALUE")
        k, v = (s.strip() for s in item.split("=", 1))
        if not k:
            raise ValueError(f"option {item!r} has no key")
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = {"True": True, "False": False, "None": None}.get(v, v)
    return out



def _failed(e: BaseException) -> int:
    traceback.print_exc()
    print_error(f"repair failed: {type(e).__name__}: {one_line(e)}")
    return EXIT_ERROR


__all__ = ["load_repair_data", "parse_options"]
