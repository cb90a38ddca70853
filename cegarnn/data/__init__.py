"""Data: the MNIST IDX loader and realistic image shifts (rotation, shear, brightness, contrast)."""
from cegarnn.data.mnist import IDXFormatError, default_mnist_dirs, find_mnist_dir, load_mnist, read_idx
from cegarnn.data.shifts import brightness, contrast, rotate, shear

__all__ = [
    "IDXFormatError",
    "default_mnist_dirs",
    "find_mnist_dir",
    "load_mnist",
    "read_idx",
    "rotate",
    "shear",
    "brightness",
    "contrast",
]
