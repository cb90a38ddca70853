"""Data: the MNIST IDX loader and realistic image shifts (rotation, shear, scaling, brightness, contrast)."""
from cegarnn.data.mnist import IDXFormatError, default_mnist_dirs, find_mnist_dir, load_mnist, read_idx
from cegarnn.data.shifts import SHIFTS, apply_shift, brightness, contrast, rotate, scale, shear

__all__ = [
    "IDXFormatError",
    "default_mnist_dirs",
    "find_mnist_dir",
    "load_mnist",
    "read_idx",
    "rotate",
    "shear",
    "scale",
    "SHIFTS",
    "apply_shift",
    "brightness",
    "contrast",
]
