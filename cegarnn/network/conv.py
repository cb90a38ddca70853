"""Convolutions lowered to sparse matrices (shared by the ONNX and the torch converters)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .ir import NetworkError


def conv2d_matrix(weight, in_shape, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
                  groups: int = 1):
    """Lower a 2-D convolution (zero padding, no bias) to a sparse matrix.

    ``weight``: (C_out, C_in/groups, kH, kW); ``in_shape``: (C_in, H, W);
    ``padding``: (top, left, bottom, right). Returns ``(M, out_shape)`` with ``M`` a CSR matrix of
    shape (C_out*OH*OW, C_in*H*W) such that ``M @ x.ravel() == conv(x).ravel()`` (CHW order).
    """
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        raise NetworkError(f"convolution weight must be 4-D, got shape {weight.shape}")
    c_out, cin_g, kh_n, kw_n = weight.shape
    if len(in_shape) != 3:
        raise NetworkError(f"convolution input must be (C, H, W), got shape {tuple(in_shape)}")
    c_in, h, w = (int(s) for s in in_shape)
    sh, sw = (int(s) for s in stride)
    dh, dw = (int(s) for s in dilation)
    pt, pl, pb, pr = (int(s) for s in padding)
    groups = int(groups)
    if groups < 1 or c_out % groups or cin_g * groups != c_in:
        raise NetworkError(f"convolution with weight {weight.shape} and groups={groups} does not fit "
                           f"an input with {c_in} channels")
    if min(sh, sw, dh, dw) < 1 or min(pt, pl, pb, pr) < 0:
        raise NetworkError("convolution strides/dilations must be >= 1 and paddings >= 0")
    oh_n = (h + pt + pb - dh * (kh_n - 1) - 1) // sh + 1
    ow_n = (w + pl + pr - dw * (kw_n - 1) - 1) // sw + 1
    if oh_n <= 0 or ow_n <= 0:
        raise NetworkError(f"convolution kernel {weight.shape[2:]} is larger than the padded input {(h, w)}")
    cout_g = c_out // groups
    co = np.arange(c_out).reshape(-1, 1, 1, 1)
    ci = (co // cout_g) * cin_g + np.arange(cin_g).reshape(1, 1, 1, -1)      # (C_out,1,1,Cin_g)
    oh = np.arange(oh_n).reshape(1, -1, 1, 1)
    ow = np.arange(ow_n).reshape(1, 1, -1, 1)
    full = (c_out, oh_n, ow_n, cin_g)
    row_ids = np.broadcast_to((co * oh_n + oh) * ow_n + ow, full)
    rows, cols, vals = [], [], []
    for kh in range(kh_n):
        ih = oh * sh - pt + kh * dh
        for kw in range(kw_n):
            iw = ow * sw - pl + kw * dw
            val = np.broadcast_to(weight[:, :, kh, kw].reshape(c_out, 1, 1, cin_g), full)
            keep = np.broadcast_to((ih >= 0) & (ih < h) & (iw >= 0) & (iw < w), full) & (val != 0)
            col = np.broadcast_to((ci * h + ih) * w + iw, full)
            rows.append(row_ids[keep])
            cols.append(col[keep])
            vals.append(val[keep])
    m = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(c_out * oh_n * ow_n, c_in * h * w))
    return m, (c_out, oh_n, ow_n)


def same_padding(size: int, kernel: int, stride: int, dilation: int, upper: bool = True) -> tuple[int, int]:
    """(begin, end) padding so that the output has ``ceil(size / stride)`` entries."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    small = total // 2
    return (small, total - small) if upper else (total - small, small)


__all__ = ["conv2d_matrix", "same_padding"]
