"""Realistic image shifts for the generative specifications.

All functions take one image (H, W) or a batch (N, H, W) with values in [0, 1] and return
float32 arrays of the same shape, clipped to [0, 1]. The geometric shifts use bilinear
interpolation (``scipy.ndimage.affine_transform``, order 1) about the image centre
((H-1)/2, (W-1)/2) with zero (black) fill outside the image.

Parameters may be a scalar (same shift for every image) or an array of length N (one per image).

Conventions (image coordinates: row down, column right):

- ``rotate(images, degrees)``: positive angles rotate counter-clockwise as displayed, so
  ``rotate(x, 90)`` equals ``np.rot90(x)`` on square images.
- ``shear(images, s)``: horizontal shear; the pixel at row offset ``dr`` from the centre moves
  by ``s * dr`` columns (positive ``s`` leans the top to the left and the bottom to the right).
- ``scale(images, f)``: zoom by factor ``f`` about the centre (``f > 1`` enlarges the digit).

``SHIFTS`` maps each shift's name to ``(function, (low, high))``: the transformation and the range
of its nuisance parameter used to train the generative models (``experiments/train_shift_models.py``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["rotate", "shear", "scale", "brightness", "contrast", "affine", "SHIFTS", "apply_shift"]


def _as_batch(images):
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 2:
        return x[None], True
    if x.ndim == 3:
        return x, False
    raise ValueError(f"images must have shape (H, W) or (N, H, W), got {x.shape}")


def _per_image(param, n: int, name: str) -> np.ndarray:
    p = np.asarray(param, dtype=np.float64)
    if p.ndim == 0:
        return np.full(n, float(p))
    p = p.reshape(-1)
    if p.shape[0] != n:
        raise ValueError(f"{name}: expected a scalar or {n} values, got {p.shape[0]}")
    return p


def affine(images, matrices) -> np.ndarray:
    """Apply per-image 2x2 maps about the image centre.

    ``matrices`` has shape (2, 2) or (N, 2, 2) and maps OUTPUT (row, col) offsets from the
    centre to INPUT offsets (the inverse of the geometric motion), as in scipy.ndimage.
    """
    x, single = _as_batch(images)
    n, h, w = x.shape
    m = np.asarray(matrices, dtype=np.float64)
    if m.shape == (2, 2):
        m = np.broadcast_to(m, (n, 2, 2))
    if m.shape != (n, 2, 2):
        raise ValueError(f"matrices must have shape (2, 2) or ({n}, 2, 2), got {m.shape}")
    c = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    out = np.empty_like(x)
    for i in range(n):
        if np.array_equal(m[i], np.eye(2)):
            out[i] = x[i]
            continue
        offset = c - m[i] @ c  # input = M (out - c) + c
        out[i] = ndimage.affine_transform(
            x[i], m[i], offset=offset, order=1, mode="constant", cval=0.0, prefilter=False
        )
    np.clip(out, 0.0, 1.0, out=out)
    return out[0] if single else out


def rotate(images, degrees) -> np.ndarray:
    """Rotate counter-clockwise by ``degrees`` (scalar or one per image) about the centre."""
    x, single = _as_batch(images)
    t = np.deg2rad(_per_image(degrees, x.shape[0], "degrees"))
    cos, sin = np.cos(t), np.sin(t)
    # exact values at multiples of 90 degrees (so rotate(x, 90) is an exact permutation)
    cos = np.where(np.abs(cos) < 1e-12, 0.0, cos)
    sin = np.where(np.abs(sin) < 1e-12, 0.0, sin)
    m = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)
    out = affine(x, m)
    return out[0] if single else out


def shear(images, s) -> np.ndarray:
    """Horizontal shear by factor ``s`` (scalar or one per image) about the centre."""
    x, single = _as_batch(images)
    s = _per_image(s, x.shape[0], "s")
    one, zero = np.ones_like(s), np.zeros_like(s)
    m = np.stack([np.stack([one, zero], -1), np.stack([-s, one], -1)], -2)
    out = affine(x, m)
    return out[0] if single else out


def brightness(images, b) -> np.ndarray:
    """Add ``b`` (scalar or one per image) to every pixel, clipped to [0, 1]."""
    x, single = _as_batch(images)
    b = _per_image(b, x.shape[0], "b").astype(np.float32)
    out = np.clip(x + b[:, None, None], 0.0, 1.0).astype(np.float32)
    return out[0] if single else out


def contrast(images, c) -> np.ndarray:
    """Scale the deviation from mid-grey 0.5 by ``c`` (scalar or one per image), clipped to [0, 1]."""
    x, single = _as_batch(images)
    c = _per_image(c, x.shape[0], "c").astype(np.float32)
    out = np.clip((x - 0.5) * c[:, None, None] + 0.5, 0.0, 1.0).astype(np.float32)
    return out[0] if single else out


def scale(images, f) -> np.ndarray:
    """Zoom by factor ``f`` (scalar or one per image, > 0) about the centre; ``f > 1`` enlarges."""
    x, single = _as_batch(images)
    f = _per_image(f, x.shape[0], "f")
    if not np.all(f > 0):
        raise ValueError(f"scale factors must be > 0, got min {f.min()}")
    inv, zero = 1.0 / f, np.zeros_like(f)
    m = np.stack([np.stack([inv, zero], -1), np.stack([zero, inv], -1)], -2)
    out = affine(x, m)
    return out[0] if single else out


SHIFTS = {
    "rotation": (rotate, (-30.0, 30.0)),      # degrees
    "shear": (shear, (-0.4, 0.4)),            # horizontal shear factor
    "scaling": (scale, (0.75, 1.25)),         # zoom factor
    "brightness": (brightness, (-0.4, 0.4)),  # added to every pixel
    "contrast": (contrast, (0.4, 1.6)),       # factor on the deviation from 0.5
}


def apply_shift(name: str, images, theta) -> np.ndarray:
    """``SHIFTS[name]`` applied with parameter ``theta`` (scalar or one per image)."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; known: {', '.join(SHIFTS)}")
    return SHIFTS[name][0](images, theta)
