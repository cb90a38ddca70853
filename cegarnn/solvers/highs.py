"""HiGHS backend (default) through ``highspy``: incremental, warm re-solves, early stopping.

Requires: ``highspy`` (HiGHS >= 1.7). Sound and complete for (MI)LPs within HiGHS' tolerances:
``OPTIMAL``/``INFEASIBLE``/``UNBOUNDED`` are only reported when HiGHS proved them; an optimal MILP
is optimal within ``mip_gap``.

``Solution.bound`` (what proofs rest on, never ``objective``):

* pure LP solved to optimality: the Neumaier–Shcherbina safe bound computed from HiGHS' row duals
  and the program's own data (:func:`~cegarnn.solvers.base.safe_lp_bound`). It is a valid bound
  whatever the duals are (tolerances, wrong signs, an early stop only weaken it), with the float64
  rounding of its own evaluation covered; on well-scaled LPs it equals the optimum to ~1e-9.
* MILP: HiGHS' dual bound relaxed by ``tol * max(1, |bound|, objective scale)``
  (:func:`~cegarnn.solvers.base.scaled_margin`, ``tol`` the largest of HiGHS' primal, dual and MIP
  feasibility tolerances). This is NOT rigorous: the dual bound rests on node LPs solved within
  those tolerances, and HiGHS gives no certificate for the tree; the margin covers the typical
  error, not the worst case. (Integrality tolerance is on the safe side: it enlarges the feasible
  set, which can only lower a minimum.)

Incremental use: the backend remembers how many columns, rows, coefficient entries and change-log
items of the :class:`~cegarnn.encoding.program.Program` it has synced. ``solve()`` adds only the
new columns (with their entries in already-synced rows, ``addCols``), the new rows (``addRows``),
applies the logged bound and objective changes, and re-solves warm (LPs keep their basis).
A new entry whose row *and* column were both already synced raises :class:`SolverError`.

Early stopping (MILPs): ``target``/``cutoff`` are checked in a HiGHS MIP-interrupt callback, which
HiGHS calls many times per second during the search with its current primal bound (incumbent) and
dual bound, both in the program's own sense and including the offset. ``target``: interrupt as
soon as the incumbent is strictly better than ``target``. ``cutoff``: interrupt as soon as the dual
bound, relaxed by the scaled margin as ``Solution.bound`` is, shows that nothing strictly better
than ``cutoff`` exists (min: bound >= cutoff, max: bound <= cutoff). The run then ends with
``kInterrupt`` and is reported as ``INTERRUPTED`` with the incumbent and the bound. We do not use HiGHS' ``objective_bound``/``objective_target`` options:
for a MILP they prune the search so that "nothing better than the bound" is reported as
*infeasible*, which would blur the status. For a pure LP both arguments are ignored (an LP is
solved to optimality, which is at least as informative).

Silence: HiGHS prints nothing unless ``solve(verbose=True)``. Its banner ("Running HiGHS ...
Copyright ...") is written to the C-level stdout by the constructor of the first ``Highs`` of the
process, before any option can be set, so every ``Highs`` is made by
:func:`~cegarnn.solvers.silence.new_highs`, which builds that first instance with file descriptor 1
pointed at ``/dev/null``.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
import scipy.sparse as sp

from .base import (LPView, farkas_certified, Solution, SolverError, Status, _margin, objective_scale, relax_bound,
                   safe_lp_bound)
from .silence import new_highs

try:  # pragma: no cover - exercised through available()
    import highspy
except ImportError:  # pragma: no cover
    highspy = None


def _model_status_map() -> dict:
    """HiGHS model status -> our Status, built by name so older/newer highspy versions work."""
    if highspy is None:  # pragma: no cover
        return {}
    names = {
        "kOptimal": Status.OPTIMAL,
        "kInfeasible": Status.INFEASIBLE,
        "kUnbounded": Status.UNBOUNDED,
        "kUnboundedOrInfeasible": Status.UNBOUNDED,
        "kTimeLimit": Status.TIME_LIMIT,
        "kIterationLimit": Status.ITERATION_LIMIT,
        "kInterrupt": Status.INTERRUPTED,
        "kHighsInterrupt": Status.INTERRUPTED,
        "kObjectiveBound": Status.INTERRUPTED,
        "kObjectiveTarget": Status.INTERRUPTED,
        "kSolveError": Status.NUMERICAL_ERROR,
        "kPresolveError": Status.NUMERICAL_ERROR,
        "kPostsolveError": Status.NUMERICAL_ERROR,
    }
    out = {}
    for name, status in names.items():
        member = getattr(highspy.HighsModelStatus, name, None)
        if member is not None:
            out[member] = status
    return out


_STATUS = _model_status_map()


def map_model_status(model_status, run_status=None) -> Status:
    """Exact mapping of a ``HighsModelStatus`` (plus the ``HighsStatus`` returned by ``run``).

    Anything not listed in the module table (kNotset, kLoadError, kModelError, kModelEmpty,
    kUnknown, kSolutionLimit, kMemoryLimit, ...) is ``UNKNOWN``, except that a run that returned
    ``kError`` without a definite model status is a solve error (``NUMERICAL_ERROR``)."""
    status = _STATUS.get(model_status, Status.UNKNOWN)
    if status is Status.UNKNOWN and run_status is not None and highspy is not None \
            and run_status == highspy.HighsStatus.kError:
        return Status.NUMERICAL_ERROR
    return status


def _i32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


class HighsBackend:
    """Incremental HiGHS backend for a :class:`~cegarnn.encoding.program.Program`.

    ``threads``: HiGHS threads (1 keeps parallel experiment runs independent);
    ``presolve``: True ("choose"), False ("off") or a HiGHS presolve string;
    ``options``: further HiGHS options by name (e.g. ``random_seed=1``); an unknown name raises
    :class:`SolverError`.
    """

    name = "highs"
    sub_option = None       # 'highs:...' takes no sub-solver (the part after ':' is ignored)

    def __init__(self, program, threads: int = 1, presolve=True, **options):
        if highspy is None:
            raise SolverError("highspy is not installed: pip install highspy")
        self.program = program
        self._threads = int(threads)
        if presolve is True:
            self._presolve = "choose"
        elif presolve is False:
            self._presolve = "off"
        else:
            self._presolve = str(presolve)
        self._extra = dict(options)
        self._h = None
        self._reset_model()

    # ------------------------------------------------------------------ setup
    @staticmethod
    def available() -> bool:
        return highspy is not None

    @staticmethod
    def unavailable_reason(sub: str = "") -> Optional[str]:
        return None if highspy is not None else "highspy is not installed"

    def _set(self, name, value) -> None:
        st = self._h.setOptionValue(name, value)
        if st == highspy.HighsStatus.kError:
            raise SolverError(f"HiGHS rejected option {name}={value!r}")

    def _reset_model(self) -> None:
        """(Re)create an empty HiGHS model; the next solve syncs the whole program."""
        self._h = new_highs()           # output off from the start (no banner, no log)
        self._set("threads", self._threads)
        self._set("presolve", self._presolve)
        for k, v in self._extra.items():
            self._set(k, v)
        self._ncols = 0
        self._nrows = 0
        self._nent = 0
        self._nchg = 0
        self._has_int = False
        self._sense = "min"
        self._offset = 0.0
        self._view = None
        self._mtol = 0.0
        self._oscale = 0.0

    def reset(self) -> None:
        """Forget the live model; the next ``solve()`` rebuilds it from the program."""
        self._reset_model()

    @property
    def highs(self):
        """The live ``highspy.Highs`` object (for inspection; do not modify the model)."""
        return self._h

    # ------------------------------------------------------------------ sync
    def sync(self) -> None:
        """Bring the HiGHS model up to date with the program (only what changed).

        Raises :class:`SolverError` (leaving the live model untouched) for an edit of a
        coefficient whose row and column were both synced; if HiGHS rejects a change half-way,
        the live model is dropped so that the next solve rebuilds it from the program."""
        try:
            self._sync()
        except SolverError as exc:
            if not getattr(exc, "_model_untouched", False):
                self._reset_model()
            raise
        except Exception:
            self._reset_model()
            raise

    def _sync(self) -> None:
        p = self.program
        if (p.n_vars < self._ncols or p.n_rows < self._nrows or p.n_entries < self._nent
                or len(p.changes) < self._nchg):
            self._reset_model()       # the program was replaced/shrunk: start over
        h = self._h
        n0, m0, e0 = self._ncols, self._nrows, self._nent
        n1, m1, e1 = p.n_vars, p.n_rows, p.n_entries
        r, c, v = p.entries(e0)
        old_row = r < m0
        bad = old_row & (c < n0)
        if np.any(bad):
            k = int(np.argmax(bad))
            exc = SolverError(
                f"coefficient ({int(r[k])}, {int(c[k])}) changes a row and column that were both "
                "already synced; deactivate the row and add a new one instead")
            exc._model_untouched = True
            raise exc

        # new columns, with their entries in already-synced rows
        if n1 > n0:
            nn = n1 - n0
            if np.any(old_row):
                B = sp.csc_matrix((v[old_row], (r[old_row], c[old_row] - n0)), shape=(m0, nn))
                B.sum_duplicates()
                starts, index, value = B.indptr[:-1], B.indices, B.data
            else:
                starts, index, value = np.zeros(nn), np.zeros(0), np.zeros(0)
            st = h.addCols(nn, _f64(p.objective[n0:n1]), _f64(p.col_lo[n0:n1]), _f64(p.col_hi[n0:n1]),
                           int(len(index)), _i32(starts), _i32(index), _f64(value))
            self._check(st, "addCols")
            integ = np.flatnonzero(p.integrality[n0:n1])
            if integ.size:
                st = h.changeColsIntegrality(int(integ.size), _i32(integ + n0),
                                             np.ones(integ.size, dtype=np.uint8))
                self._check(st, "changeColsIntegrality")
                self._has_int = True
        # new rows (entries in any column)
        if m1 > m0:
            new_row = ~old_row
            A = sp.csr_matrix((v[new_row], (r[new_row] - m0, c[new_row])), shape=(m1 - m0, n1))
            A.sum_duplicates()
            st = h.addRows(m1 - m0, _f64(p.row_lo[m0:m1]), _f64(p.row_hi[m0:m1]), int(A.nnz),
                           _i32(A.indptr[:-1]), _i32(A.indices), _f64(A.data))
            self._check(st, "addRows")
        self._ncols, self._nrows, self._nent = n1, m1, e1

        # logged edits of already-synced columns/rows (new ones were added with current values)
        cols, rows, obj = [], [], False
        for kind, idx in p.changes[self._nchg:]:
            if kind == "col":
                cols.append(idx)
            elif kind == "row":
                rows.append(idx)
            elif kind == "obj":
                obj = True
        self._nchg = len(p.changes)
        if cols:
            j = np.unique(np.concatenate(cols))
            j = j[j < n0]
            if j.size:
                self._check(h.changeColsBounds(int(j.size), _i32(j), _f64(p.col_lo[j]), _f64(p.col_hi[j])),
                            "changeColsBounds")
        if rows:
            i = np.unique(np.concatenate(rows))
            i = i[i < m0]
            if i.size:
                self._check(h.changeRowsBounds(int(i.size), _i32(i), _f64(p.row_lo[i]), _f64(p.row_hi[i])),
                            "changeRowsBounds")
        if obj and n0:
            self._check(h.changeColsCost(n0, _i32(np.arange(n0)), _f64(p.objective[:n0])), "changeColsCost")
        if p.sense != self._sense:
            sense = highspy.ObjSense.kMaximize if p.sense == "max" else highspy.ObjSense.kMinimize
            self._check(h.changeObjectiveSense(sense), "changeObjectiveSense")
            self._sense = p.sense
        if p.offset != self._offset:
            self._check(h.changeObjectiveOffset(float(p.offset)), "changeObjectiveOffset")
            self._offset = p.offset

    @staticmethod
    def _check(status, what: str) -> None:
        if status == highspy.HighsStatus.kError:
            raise SolverError(f"HiGHS {what} failed")

    # ------------------------------------------------------------------ solve
    def solve(self, time_limit: Optional[float] = None, *, target: Optional[float] = None,
              cutoff: Optional[float] = None, mip_gap: float = 1e-6,
              verbose: bool = False) -> Solution:
        t0 = time.perf_counter()
        p = self.program
        self.sync()
        if p.n_vars == 0:
            return self._empty(t0)
        h = self._h
        self._set("time_limit", float("inf") if time_limit is None else max(0.0, float(time_limit)))
        self._set("mip_rel_gap", float(mip_gap))
        self._set("output_flag", bool(verbose))

        maximise = p.sense == "max"
        reason = {}
        # a MILP's proved bound is HiGHS' dual bound relaxed by the scaled margin (see _result);
        # the cutoff test uses the same relaxed bound, so an early stop is a usable proof
        self._mtol = self._mip_tol() if self._has_int else 0.0
        self._oscale = objective_scale(p) if self._has_int else 0.0
        # HiGHS checks its own time limit too rarely in places (seen: 9 s of root cut separation
        # past a 10 s limit), so the callbacks also stop the run at the deadline.
        deadline = None if time_limit is None else t0 + max(0.0, float(time_limit))

        def past_deadline() -> bool:
            if deadline is not None and time.perf_counter() > deadline:
                reason.setdefault("why", "time limit (deadline callback)")
                return True
            return False

        def mip_callback(event):
            out = event.data_out
            stop = past_deadline()
            if target is not None:
                pb = out.mip_primal_bound
                if np.isfinite(pb) and (pb > target if maximise else pb < target):
                    stop = True
                    reason.setdefault("why", f"incumbent {pb:.10g} better than target {target:.10g}")
            if cutoff is not None:
                db = out.mip_dual_bound
                if np.isfinite(db):
                    db = relax_bound(p, db, _margin(db, self._mtol, self._oscale))
                if np.isfinite(db) and (db <= cutoff if maximise else db >= cutoff):
                    stop = True
                    reason.setdefault("why", f"bound {db:.10g} shows nothing better than cutoff {cutoff:.10g}")
            # always write the flag: HiGHS keeps it between runs
            event.data_in.user_interrupt = stop

        def lp_callback(event):
            event.data_in.user_interrupt = past_deadline()

        subscribed = []
        if self._has_int and (target is not None or cutoff is not None or deadline is not None):
            subscribed.append((h.cbMipInterrupt, mip_callback))
        if deadline is not None:
            subscribed += [(h.cbSimplexInterrupt, lp_callback), (h.cbIpmInterrupt, lp_callback)]
        for cb, fn in subscribed:
            cb.subscribe(fn)
        try:
            run_status = h.run()
        finally:
            for cb, fn in subscribed:
                cb.unsubscribe(fn)
            if verbose:
                self._set("output_flag", False)
        if h.getModelStatus() == highspy.HighsModelStatus.kUnboundedOrInfeasible:
            return self._disambiguate(run_status, t0, time_limit)
        return self._result(run_status, t0, reason.get("why", ""))

    def _disambiguate(self, run_status, t0: float, time_limit: Optional[float]) -> Solution:
        """HiGHS proved "infeasible or unbounded": decide feasibility with a zero objective.
        Feasible -> UNBOUNDED (for rational data a feasible MILP with an unbounded relaxation is
        unbounded); infeasible -> INFEASIBLE; undecided -> UNBOUNDED as HiGHS said, with a note."""
        h, p = self._h, self.program
        n = self._ncols
        if time_limit is not None:
            self._set("time_limit", max(0.0, float(time_limit) - (time.perf_counter() - t0)))
        idx = _i32(np.arange(n))
        self._check(h.changeColsCost(n, idx, np.zeros(n)), "changeColsCost")
        try:
            h.run()
            feas = h.getModelStatus()
        finally:
            self._check(h.changeColsCost(n, idx, _f64(p.objective[:n])), "changeColsCost")
        M = highspy.HighsModelStatus
        if feas == M.kInfeasible:
            return Solution(Status.INFEASIBLE, time=time.perf_counter() - t0,
                            message="Infeasible (HiGHS said infeasible-or-unbounded; a feasibility solve proved infeasible)")
        if feas == M.kOptimal:
            return Solution(Status.UNBOUNDED, time=time.perf_counter() - t0,
                            message="Unbounded (HiGHS said infeasible-or-unbounded; the program is feasible)")
        return Solution(Status.UNBOUNDED, time=time.perf_counter() - t0,
                        message="Primal infeasible or unbounded (HiGHS could not tell; feasibility check: "
                                f"{h.modelStatusToString(feas)})")

    def _result(self, run_status, t0: float, why: str) -> Solution:
        h = self._h
        model_status = h.getModelStatus()
        status = map_model_status(model_status, run_status)
        info = h.getInfo()
        x = objective = bound = None
        if int(info.primal_solution_status) == int(highspy.kSolutionStatusFeasible):
            x = np.array(h.getSolution().col_value, dtype=np.float64)
            objective = float(info.objective_function_value)
        if self._has_int:
            db = float(info.mip_dual_bound)
            if np.isfinite(db) and status not in (Status.INFEASIBLE, Status.UNBOUNDED):
                bound = relax_bound(self.program, db, _margin(db, self._mtol, self._oscale))
        elif status is Status.OPTIMAL:
            bound = self.safe_bound(objective)
        elif status is Status.INFEASIBLE and not self.infeasibility_certified():
            # seen: HiGHS said infeasible for an LP abstraction that a true point satisfies (every
            # row within 1e-9) — a proof must not rest on that
            status = Status.NUMERICAL_ERROR
            why = "HiGHS said infeasible, but its dual ray does not certify it"
        message = h.modelStatusToString(model_status)
        if status is Status.INTERRUPTED and why.startswith("time limit"):
            status = Status.TIME_LIMIT
        if status in (Status.INTERRUPTED, Status.TIME_LIMIT, Status.NUMERICAL_ERROR) and why:
            message += f": {why}"
        return Solution(status=status, x=x, objective=objective, bound=bound,
                        time=time.perf_counter() - t0, message=message,
                        node_count=max(0, int(info.mip_node_count)) if self._has_int else 0)

    def _option(self, name: str) -> float:
        st, value = self._h.getOptionValue(name)
        return float(value)

    def _mip_tol(self) -> float:
        """The tolerance a MILP dual bound is relaxed by (times the problem's scale, see
        :func:`~cegarnn.solvers.base.scaled_margin`): the largest of HiGHS' primal, dual and MIP
        feasibility tolerances (1e-6 by default), so that loosening them loosens the proof."""
        return max(self._option("mip_feasibility_tolerance"), self._option("primal_feasibility_tolerance"),
                   self._option("dual_feasibility_tolerance"))

    def safe_bound(self, objective: Optional[float] = None) -> float:
        """Rigorous bound on the LP optimum from HiGHS' current row duals
        (:func:`~cegarnn.solvers.base.safe_lp_bound`); ``-inf`` (min) / ``+inf`` (max) when HiGHS
        has no dual values. HiGHS' ``row_dual`` satisfies ``c - A^T y = col_dual`` in the
        model's own sense (checked in tests/test_solvers.py on an LP with known duals)."""
        sol = self._h.getSolution()
        if not sol.dual_valid:
            return -np.inf if self.program.sense == "min" else np.inf
        if self._view is None or not self._view.matches(self.program):
            self._view = LPView(self.program)
        return safe_lp_bound(self.program, np.asarray(sol.row_dual, dtype=np.float64), objective, self._view)

    def infeasibility_certified(self) -> bool:
        """True iff the program is a MILP (no certificate exists; HiGHS' answer stands, documented
        as not rigorous) or HiGHS' dual ray is a Farkas certificate of the LP's infeasibility:
        the Neumaier–Shcherbina bound of ``min 0`` under the ray's multipliers is > 0
        (:func:`~cegarnn.solvers.base.farkas_certified`), evaluated with rigorous rounding."""
        if self._has_int:
            return True
        try:
            status, has_ray, ray = self._h.getDualRay()
        except Exception:  # noqa: BLE001 - an old highspy without the call: no certificate
            return False
        if not has_ray:
            return False
        if self._view is None or not self._view.matches(self.program):
            self._view = LPView(self.program)
        return farkas_certified(self.program, np.asarray(ray, dtype=np.float64), self._view)

    def _empty(self, t0: float) -> Solution:
        """A program without variables: feasible iff every (empty) row admits 0."""
        p = self.program
        ok = bool(np.all(p.row_lo <= 0.0) and np.all(p.row_hi >= 0.0))
        if not ok:
            return Solution(Status.INFEASIBLE, time=time.perf_counter() - t0, message="empty row with 0 outside its bounds")
        return Solution(Status.OPTIMAL, x=np.zeros(0), objective=p.offset, bound=p.offset,
                        time=time.perf_counter() - t0, message="no variables")
