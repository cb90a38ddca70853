"""Solver-neutral (mixed-integer) linear program held as sparse arrays.

``Program`` is append-mostly: variables and rows are added in blocks, coefficients are stored as
COO triples, and the only in-place edits are column bounds, row bounds and the objective. Every
edit is also recorded in a change log so that an incremental backend (HiGHS) can bring a live
model up to date — add the new columns/rows, change the touched bounds — without rebuilding.

Semantics::

    minimise (or maximise)  c @ x + offset
    subject to              row_lo <= A @ x <= row_hi
                            col_lo <=   x   <= col_hi
                            x[j] integer where integrality[j]

Rules for coefficients (so that backends can sync incrementally): an entry may be added for a new
row (any column), or for a new column in an existing row (``add_entries`` right after creating the
column). Changing a coefficient of a row *and* column that both already existed when a backend last
synced is not supported; deactivate the row (``set_row_bounds(-inf, inf)``) and add a new one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

INF = np.inf


class ProgramError(ValueError):
    """Malformed program construction (bad indices, inverted bounds, NaN coefficients)."""


class _Grow:
    """A growable 1-D numpy array (amortised O(1) append)."""

    def __init__(self, dtype):
        self._a = np.empty(64, dtype=dtype)
        self.n = 0

    def extend(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=self._a.dtype).reshape(-1)
        need = self.n + values.shape[0]
        if need > self._a.shape[0]:
            new = np.empty(max(need, 2 * self._a.shape[0]), dtype=self._a.dtype)
            new[: self.n] = self._a[: self.n]
            self._a = new
        self._a[self.n:need] = values
        idx = np.arange(self.n, need)
        self.n = need
        return idx

    @property
    def view(self) -> np.ndarray:
        return self._a[: self.n]


def _broadcast(value, n, name) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    arr = arr.reshape(-1)
    if arr.shape[0] != n:
        raise ProgramError(f"{name}: expected {n} values, got {arr.shape[0]}")
    if np.any(np.isnan(arr)):
        raise ProgramError(f"{name}: NaN values")
    return arr


class Program:
    """A sparse (MI)LP; see the module docstring for semantics and incremental-edit rules."""

    def __init__(self, name: str = ""):
        self.name = name
        self._col_lo = _Grow(np.float64)
        self._col_hi = _Grow(np.float64)
        self._integ = _Grow(np.bool_)
        self._obj = _Grow(np.float64)
        self._row_lo = _Grow(np.float64)
        self._row_hi = _Grow(np.float64)
        self._er = _Grow(np.int64)
        self._ec = _Grow(np.int64)
        self._ev = _Grow(np.float64)
        self.col_names: list[tuple[int, str]] = []   # (first index, block name)
        self.row_names: list[tuple[int, str]] = []
        self.sense = "min"
        self.offset = 0.0
        # change log for incremental backends: ("col", idx) / ("row", idx) / ("obj", None)
        self.changes: list[tuple[str, np.ndarray | None]] = []

    # ------------------------------------------------------------------ sizes
    @property
    def n_vars(self) -> int:
        return self._col_lo.n

    @property
    def n_rows(self) -> int:
        return self._row_lo.n

    @property
    def n_entries(self) -> int:
        return self._er.n

    # ------------------------------------------------------------------ building
    def add_vars(self, n: int, lb=-INF, ub=INF, integer: bool = False, name: str = "x") -> np.ndarray:
        """Add ``n`` variables; returns their indices. Binary = ``integer=True, lb=0, ub=1``."""
        n = int(n)
        if n < 0:
            raise ProgramError("number of variables must be >= 0")
        lb = _broadcast(lb, n, "lb")
        ub = _broadcast(ub, n, "ub")
        if np.any(lb > ub):
            j = int(np.argmax(lb > ub))
            raise ProgramError(f"variable block '{name}': lower bound {lb[j]} > upper bound {ub[j]} at offset {j}")
        idx = self._col_lo.extend(lb)
        self._col_hi.extend(ub)
        self._integ.extend(np.full(n, bool(integer)))
        self._obj.extend(np.zeros(n))
        if n:
            self.col_names.append((int(idx[0]), name))
        return idx

    def add_binaries(self, n: int, name: str = "d") -> np.ndarray:
        return self.add_vars(n, 0.0, 1.0, integer=True, name=name)

    def add_rows(self, rows, cols, vals, lo, hi, name: str = "c") -> np.ndarray:
        """Add ``m = len(lo)`` rows ``lo <= sum_k vals[k] x[cols[k]] <= hi`` where ``rows`` are
        row numbers local to this block (0..m-1). Duplicated (row, col) pairs are summed."""
        lo = np.asarray(lo, dtype=np.float64).reshape(-1)
        m = lo.shape[0]
        hi = _broadcast(hi, m, "hi")
        lo = _broadcast(lo, m, "lo")
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        vals = np.asarray(vals, dtype=np.float64).reshape(-1)
        if not (rows.shape == cols.shape == vals.shape):
            raise ProgramError("rows, cols and vals must have the same length")
        if rows.size and (rows.min() < 0 or rows.max() >= m):
            raise ProgramError(f"row block '{name}': local row index out of range 0..{m - 1}")
        self._check_cols(cols)
        if not np.all(np.isfinite(vals)):
            raise ProgramError(f"row block '{name}': coefficients must be finite")
        if np.any(lo > hi):
            j = int(np.argmax(lo > hi))
            raise ProgramError(f"row block '{name}': lower bound {lo[j]} > upper bound {hi[j]} at row {j}")
        base = self.n_rows
        idx = self._row_lo.extend(lo)
        self._row_hi.extend(hi)
        keep = vals != 0.0
        self._er.extend(rows[keep] + base)
        self._ec.extend(cols[keep])
        self._ev.extend(vals[keep])
        if m:
            self.row_names.append((base, name))
        return idx

    def add_dense_rows(self, coeffs: np.ndarray, cols: Sequence[int], lo, hi, name: str = "c") -> np.ndarray:
        """Add rows ``lo <= coeffs @ x[cols] <= hi`` for a dense (m, len(cols)) coefficient block."""
        coeffs = np.atleast_2d(np.asarray(coeffs, dtype=np.float64))
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        if coeffs.shape[1] != cols.shape[0]:
            raise ProgramError(f"coefficient block has {coeffs.shape[1]} columns but {cols.shape[0]} variables given")
        m, k = coeffs.shape
        r = np.repeat(np.arange(m), k)
        c = np.tile(cols, m)
        return self.add_rows(r, c, coeffs.reshape(-1), lo, hi, name)

    def add_sparse_rows(self, A, cols: Sequence[int], lo, hi, name: str = "c") -> np.ndarray:
        """Add rows ``lo <= A @ x[cols] <= hi`` for a scipy-sparse or dense (m, len(cols)) block."""
        A = sp.coo_matrix(A)
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        if A.shape[1] != cols.shape[0]:
            raise ProgramError(f"matrix block has {A.shape[1]} columns but {cols.shape[0]} variables given")
        return self.add_rows(A.row, cols[A.col], A.data, lo, hi, name)

    def add_entries(self, rows, cols, vals) -> None:
        """Add coefficients of (new) columns into existing rows; see the module's rules."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        vals = np.asarray(vals, dtype=np.float64).reshape(-1)
        if not (rows.shape == cols.shape == vals.shape):
            raise ProgramError("rows, cols and vals must have the same length")
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_rows):
            raise ProgramError("add_entries: row index out of range")
        self._check_cols(cols)
        if not np.all(np.isfinite(vals)):
            raise ProgramError("add_entries: coefficients must be finite")
        self._er.extend(rows)
        self._ec.extend(cols)
        self._ev.extend(vals)

    def _check_cols(self, cols: np.ndarray) -> None:
        if cols.size and (cols.min() < 0 or cols.max() >= self.n_vars):
            raise ProgramError(f"variable index out of range 0..{self.n_vars - 1}")

    # ------------------------------------------------------------------ edits
    def set_col_bounds(self, idx, lb, ub) -> None:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        self._check_cols(idx)
        lb = _broadcast(lb, idx.shape[0], "lb")
        ub = _broadcast(ub, idx.shape[0], "ub")
        if np.any(lb > ub):
            raise ProgramError("set_col_bounds: lower bound > upper bound")
        self._col_lo.view[idx] = lb
        self._col_hi.view[idx] = ub
        self.changes.append(("col", idx.copy()))

    def set_row_bounds(self, idx, lo, hi) -> None:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_rows):
            raise ProgramError("set_row_bounds: row index out of range")
        lo = _broadcast(lo, idx.shape[0], "lo")
        hi = _broadcast(hi, idx.shape[0], "hi")
        if np.any(lo > hi):
            raise ProgramError("set_row_bounds: lower bound > upper bound")
        self._row_lo.view[idx] = lo
        self._row_hi.view[idx] = hi
        self.changes.append(("row", idx.copy()))

    def deactivate_rows(self, idx) -> None:
        """Make rows free (``-inf <= . <= inf``): the way to remove constraints incrementally."""
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        self.set_row_bounds(idx, -INF, INF)

    def set_objective(self, cols, coeffs, sense: str = "min", offset: float = 0.0) -> None:
        """Replace the objective by ``sum coeffs[k] x[cols[k]] + offset`` (others get 0)."""
        if sense not in ("min", "max"):
            raise ProgramError(f"objective sense must be 'min' or 'max', got {sense!r}")
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        coeffs = _broadcast(coeffs, cols.shape[0], "objective coefficients")
        self._check_cols(cols)
        obj = self._obj.view
        obj[:] = 0.0
        np.add.at(obj, cols, coeffs)
        self.sense = sense
        self.offset = float(offset)
        self.changes.append(("obj", None))

    # ------------------------------------------------------------------ views
    @property
    def col_lo(self) -> np.ndarray:
        return self._col_lo.view

    @property
    def col_hi(self) -> np.ndarray:
        return self._col_hi.view

    @property
    def integrality(self) -> np.ndarray:
        return self._integ.view

    @property
    def objective(self) -> np.ndarray:
        return self._obj.view

    @property
    def row_lo(self) -> np.ndarray:
        return self._row_lo.view

    @property
    def row_hi(self) -> np.ndarray:
        return self._row_hi.view

    def entries(self, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """COO triples (rows, cols, vals) from entry number ``start`` on."""
        return self._er.view[start:], self._ec.view[start:], self._ev.view[start:]

    def matrix(self) -> sp.csr_matrix:
        """The constraint matrix A (duplicates summed)."""
        r, c, v = self.entries()
        return sp.csr_matrix((v, (r, c)), shape=(self.n_rows, self.n_vars))

    @property
    def n_integer(self) -> int:
        return int(self.integrality.sum())

    def evaluate(self, x: np.ndarray) -> tuple[float, float]:
        """(objective value, max violation of rows/bounds/integrality) of a point ``x``."""
        x = np.asarray(x, dtype=np.float64)
        ax = self.matrix() @ x
        viol = max(0.0,
                   float(np.max(self.row_lo - ax, initial=0.0)),
                   float(np.max(ax - self.row_hi, initial=0.0)),
                   float(np.max(self.col_lo - x, initial=0.0)),
                   float(np.max(x - self.col_hi, initial=0.0)),
                   float(np.max(np.abs(x[self.integrality] - np.round(x[self.integrality])), initial=0.0)))
        return float(self.objective @ x + self.offset), viol

    def name_of_var(self, j: int) -> str:
        start, name = max((s for s in self.col_names if s[0] <= j), default=(0, "x"))
        return f"{name}[{j - start}]"

    def summary(self) -> str:
        return (f"Program {self.name!r}: {self.n_vars} vars ({self.n_integer} integer), "
                f"{self.n_rows} rows, {self.n_entries} nonzeros")
