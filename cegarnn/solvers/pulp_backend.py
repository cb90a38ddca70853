"""PuLP backend: any solver PuLP can drive (CBC bundled; HiGHS, Gurobi, CPLEX, ... if installed).

Requires: ``pulp`` and the named solver (``available()`` checks both). Not incremental: the
:class:`~cegarnn.encoding.program.Program` is translated into a fresh ``pulp.LpProblem``
whenever it changed since the last solve (one ``LpAffineExpression`` per row, built from the CSR
matrix; ranged rows become two constraints; free rows are dropped).

Status mapping reads the solver's own status, not only PuLP's summary, because PuLP reports
``Optimal`` for time-limited MILPs:

* CBC (``PULP_CBC_CMD``/``COIN_CMD``): the first line of CBC's solution file, which PuLP parses
  into ``prob.status``/``prob.sol_status``; we keep the raw line. ``Optimal`` -> OPTIMAL;
  ``Infeasible``/``Integer infeasible`` -> INFEASIBLE; ``Unbounded`` -> UNBOUNDED;
  ``Stopped on time`` -> TIME_LIMIT; ``Stopped on iterations`` -> ITERATION_LIMIT;
  ``Stopped on difficulties`` -> NUMERICAL_ERROR; ``Stopped on ctrl-c`` -> INTERRUPTED; anything
  else -> UNKNOWN. A point is returned only when CBC has an integer-feasible one
  (``... - objective value``), never the continuous relaxation CBC writes when it has none.
  Two caveats of CBC itself: for a MILP, ``Unbounded`` means the LP relaxation is unbounded (the
  MILP may be integer-infeasible; ``Status.UNBOUNDED`` covers "infeasible or unbounded"); and an
  ``Infeasible``/``Unbounded`` verdict that arrives after the time limit has expired is reported
  as TIME_LIMIT, because CBC 2.10.3 was seen declaring a feasible MILP infeasible when its time
  limit ran out during preprocessing (see :func:`cbc_verdict`).
* ``HiGHS`` (PuLP's highspy interface): HiGHS' model status, mapped as in the HiGHS backend
  (``kUnboundedOrInfeasible`` -> UNBOUNDED; only the HiGHS backend re-checks feasibility).
* any other solver: PuLP's ``status`` with ``sol_status``; ``Optimal`` is trusted only together
  with ``LpSolutionOptimal``, and a run with a time limit that returns a merely feasible point is
  TIME_LIMIT. Solvers whose PuLP interface does not set ``sol_status`` cannot tell a time-limited
  run from an optimal one; for those, when a time limit was given and ``Optimal`` is reported,
  we say UNKNOWN (with the point) rather than risk a wrong OPTIMAL.

``target``/``cutoff`` are ignored (PuLP has no portable callback); the solve runs to its normal
end, so the answer is still correct, only not early.

``Solution.bound`` (what proofs rest on):

* optimal LP: the safe bound of :func:`~cegarnn.solvers.base.safe_lp_bound` from the row duals
  PuLP reads back (``constraint.pi``; CBC and HiGHS both give them; a ranged row's two
  constraints are added up). PuLP's sign convention differs between solvers (CBC: the program's
  own sense; HiGHS: min form), and any multipliers give a valid bound, so both signs are tried and
  the better bound is kept. When the solver gave no duals, the objective relaxed by
  :func:`~cegarnn.solvers.base.scaled_margin` with ``tol = 1e-6`` (CBC's and HiGHS' default
  feasibility tolerances are 1e-7..1e-6) -- NOT rigorous, like every MILP bound.
* MILP: HiGHS' dual bound when available, for a CBC-optimal MILP ``objective`` relaxed by the
  relative gap (CBC does not report its bound through PuLP); either relaxed further by
  :func:`~cegarnn.solvers.base.scaled_margin` (``tol = 1e-6``). Not rigorous.
* otherwise None.
"""
from __future__ import annotations

import time
import warnings
from typing import Optional

import numpy as np

from .base import LPView, Solution, SolverError, Status, relax_bound, safe_lp_bound, scaled_margin
from .silence import silence_banner

#: tolerance of the (non-rigorous) scaled margin used when no duals are available
MARGIN_TOL = 1e-6

try:
    import pulp
except ImportError:  # pragma: no cover
    pulp = None

_CBC = ("PULP_CBC_CMD", "COIN_CMD", "COIN")


def _cbc_line_status(line: str) -> Status:
    s = line.strip().lower()
    if s.startswith("optimal"):
        return Status.OPTIMAL
    if s.startswith("infeasible") or s.startswith("integer infeasible"):
        return Status.INFEASIBLE
    if s.startswith("unbounded"):
        return Status.UNBOUNDED
    if s.startswith("stopped on time"):
        return Status.TIME_LIMIT
    if s.startswith("stopped on iterations"):
        return Status.ITERATION_LIMIT
    if s.startswith("stopped on difficulties"):
        return Status.NUMERICAL_ERROR
    if s.startswith("stopped on ctrl-c"):
        return Status.INTERRUPTED
    return Status.UNKNOWN


def cbc_verdict(line: str, feasible_point: bool, time_limit: Optional[float],
                run_time: float) -> tuple[Status, bool, str]:
    """(status, whether CBC's values are a usable point, message) from the first line of CBC's
    solution file. ``feasible_point``: PuLP's ``sol_status`` is optimal/integer-feasible, i.e. the
    line ends in "- objective value v" after the status words (CBC writes the LP relaxation's
    values, which must not be returned, when it says "no integer solution - continuous used")."""
    status = _cbc_line_status(line) if line else Status.UNKNOWN
    message = f"CBC: {line}" if line else "CBC: no status in the solution file"
    has_point = feasible_point and status not in (Status.INFEASIBLE, Status.UNBOUNDED)
    if status is Status.OPTIMAL and not has_point:
        status = Status.UNKNOWN
    if (status in (Status.INFEASIBLE, Status.UNBOUNDED) and time_limit is not None
            and run_time >= float(time_limit)):
        # Seen with the bundled CBC 2.10.3: a feasible MILP (5,000 rows) whose time limit expired
        # during preprocessing came back "Integer infeasible" ("Pre-processing says infeasible or
        # unbounded"); without a time limit CBC found solutions. A verdict that arrives only
        # after the time limit has passed is not trusted.
        status = Status.TIME_LIMIT
        message += " (reported after the time limit expired; not trusted)"
    return status, has_point, message


class PulpBackend:
    """Translate a Program into PuLP and solve it with ``solver`` (a PuLP solver name).

    ``solver_options`` are passed to ``pulp.getSolver`` (e.g. ``threads=1``)."""

    name = "pulp"
    sub_option = "solver"   # 'pulp:HiGHS' -> solver='HiGHS'

    def __init__(self, program, solver: str = "PULP_CBC_CMD", msg: bool = False, **solver_options):
        if pulp is None:
            raise SolverError("pulp is not installed: pip install pulp")
        if solver not in pulp.listSolvers():
            raise SolverError(f"unknown PuLP solver {solver!r}; PuLP knows {pulp.listSolvers()}")
        self.program = program
        self.solver_name = solver
        self.msg = bool(msg)
        self.solver_options = dict(solver_options)
        self._prob = None
        self._vars: list = []
        self._signature = None
        self._infeasible_row: Optional[int] = None

    # ------------------------------------------------------------------ availability
    @staticmethod
    def available(solver: str = "PULP_CBC_CMD") -> bool:
        if pulp is None:
            return False
        try:
            return solver in pulp.listSolvers(onlyAvailable=True)
        except Exception:  # pragma: no cover - a broken solver install
            return False

    @staticmethod
    def unavailable_reason(sub: str = "") -> Optional[str]:
        """None if PuLP and its solver ``sub`` (default ``PULP_CBC_CMD``) can be used, else why not."""
        if pulp is None:
            return "pulp is not installed"
        solver = sub or "PULP_CBC_CMD"
        return None if PulpBackend.available(solver) else f"PuLP solver {solver} is not available"

    # ------------------------------------------------------------------ translation
    def _program_signature(self):
        p = self.program
        return (p.n_vars, p.n_rows, p.n_entries, len(p.changes), p.sense, p.offset)

    def build(self):
        """Translate the program into a fresh ``pulp.LpProblem`` (also done by ``solve``)."""
        p = self.program
        sense = pulp.LpMaximize if p.sense == "max" else pulp.LpMinimize
        prob = pulp.LpProblem((p.name or "cegarnn").replace(" ", "_"), sense)
        lo, hi, integ = p.col_lo, p.col_hi, p.integrality
        vs = [prob.add_variable(f"x{j}",
                                None if lo[j] == -np.inf else float(lo[j]),
                                None if hi[j] == np.inf else float(hi[j]),
                                pulp.LpInteger if integ[j] else pulp.LpContinuous)
              for j in range(p.n_vars)]
        # Variables that appear in no row and not in the objective are left out of the PuLP model
        # (PuLP's MPS writer would emit bounds for a column it never declared, which CBC rejects);
        # ``_point`` gives them a value within their bounds.
        obj = p.objective
        nz = np.flatnonzero(obj)
        prob.setObjective(pulp.LpAffineExpression(dict(zip([vs[j] for j in nz], obj[nz].tolist()))))

        A = p.matrix()
        A.sum_duplicates()
        indptr, indices, data = A.indptr, A.indices.tolist(), A.data.tolist()
        rlo, rhi = p.row_lo, p.row_hi
        self._infeasible_row = None
        EQ, LE, GE = pulp.LpConstraintEQ, pulp.LpConstraintLE, pulp.LpConstraintGE
        for i in range(p.n_rows):
            a, b = float(rlo[i]), float(rhi[i])
            s, e = int(indptr[i]), int(indptr[i + 1])
            if a == -np.inf and b == np.inf:
                continue                                   # free (deactivated) row
            if s == e:                                     # empty row: decide it here
                if a > 0.0 or b < 0.0:
                    self._infeasible_row = i
                continue
            terms = {vs[j]: val for j, val in zip(indices[s:e], data[s:e])}
            if a == b:
                prob.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms), EQ, f"r{i}", a))
                continue
            if a != -np.inf:
                prob.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms), GE, f"r{i}_lo", a))
            if b != np.inf:
                prob.addConstraint(pulp.LpConstraint(pulp.LpAffineExpression(terms), LE, f"r{i}_hi", b))
        self._prob, self._vars = prob, vs
        self._signature = self._program_signature()
        return prob

    # ------------------------------------------------------------------ solve
    def solve(self, time_limit: Optional[float] = None, *, target: Optional[float] = None,
              cutoff: Optional[float] = None, mip_gap: float = 1e-6,
              verbose: bool = False) -> Solution:
        """Solve; ``target`` and ``cutoff`` are accepted but ignored (see the module docstring)."""
        t0 = time.perf_counter()
        p = self.program
        if self._prob is None or self._signature != self._program_signature():
            self.build()
        if self._infeasible_row is not None:
            return Solution(Status.INFEASIBLE, time=time.perf_counter() - t0,
                            message=f"row {self._infeasible_row} has no entries and excludes 0")
        if p.n_vars == 0:
            return Solution(Status.OPTIMAL, x=np.zeros(0), objective=p.offset, bound=p.offset,
                            time=time.perf_counter() - t0, message="no variables")
        is_mip = bool(p.integrality.any())
        kwargs = dict(self.solver_options)
        kwargs["msg"] = bool(verbose or self.msg)
        if time_limit is not None:
            kwargs["timeLimit"] = max(0.0, float(time_limit))
        if is_mip:
            kwargs.setdefault("gapRel", float(mip_gap))
        try:
            with warnings.catch_warnings():   # PuLP 3.x deprecation notices about PuLP 4.0
                warnings.simplefilter("ignore", DeprecationWarning)
                solver = pulp.getSolver(self.solver_name, **kwargs)
        except Exception as exc:
            raise SolverError(f"PuLP could not create solver {self.solver_name!r}: {exc}") from exc
        if not solver.available():
            raise SolverError(f"PuLP solver {self.solver_name!r} is not available")

        raw = {}
        if self.solver_name in _CBC:
            original = solver.get_status

            def get_status(filename):
                with open(filename) as f:
                    raw["line"] = f.readline().strip()
                return original(filename)
            solver.get_status = get_status

        if self.solver_name == "HiGHS" and not kwargs["msg"]:
            silence_banner()          # PuLP builds its own highspy.Highs, which prints a banner
        prob = self._prob
        t_run = time.perf_counter()
        try:
            prob.solve(solver)
        except pulp.PulpSolverError as exc:
            return Solution(Status.NUMERICAL_ERROR, time=time.perf_counter() - t0,
                            message=f"{self.solver_name} failed: {exc}")
        run_time = time.perf_counter() - t_run
        return self._result(prob, raw, is_mip, time_limit, mip_gap, t0, run_time)

    # ------------------------------------------------------------------ results
    def _point(self) -> Optional[np.ndarray]:
        p = self.program
        vals = [v.varValue for v in self._vars]
        if any(val is None for val in vals):
            # a variable the solver never saw: any value within its bounds will do
            x = np.array([np.nan if val is None else val for val in vals], dtype=np.float64)
            miss = np.isnan(x)
            x[miss] = np.clip(0.0, p.col_lo[miss], p.col_hi[miss])
            return x
        return np.array(vals, dtype=np.float64)

    def _result(self, prob, raw, is_mip, time_limit, mip_gap, t0, run_time=0.0) -> Solution:
        p = self.program
        x = objective = bound = None
        node_count = 0
        has_point = False
        message = ""
        if self.solver_name in _CBC:
            feasible_point = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
            status, has_point, message = cbc_verdict(raw.get("line", ""), feasible_point,
                                                     time_limit, run_time)
        elif self.solver_name == "HiGHS" and prob.solverModel is not None:
            from .highs import map_model_status, highspy
            h = prob.solverModel
            ms = h.getModelStatus()
            status = map_model_status(ms)
            info = h.getInfo()
            message = "HiGHS: " + h.modelStatusToString(ms)
            has_point = int(info.primal_solution_status) == int(highspy.kSolutionStatusFeasible)
            if is_mip:
                db = float(info.mip_dual_bound)
                if np.isfinite(db) and status not in (Status.INFEASIBLE, Status.UNBOUNDED):
                    # PuLP hands HiGHS min(-c x) for a maximisation and no objective constant
                    bound = (-db if p.sense == "max" else db) + p.offset
                    bound = relax_bound(p, bound, scaled_margin(p, bound, MARGIN_TOL))
                node_count = max(0, int(info.mip_node_count))
        else:
            status, has_point, message = self._generic_status(prob, time_limit)
        if not is_mip and status is not Status.OPTIMAL:
            has_point = False    # an interrupted simplex may stop at an infeasible basis
        if has_point:
            x = self._point()
            objective = float(p.objective @ x + p.offset)
            if status is Status.OPTIMAL and bound is None:
                if is_mip:
                    slack = float(mip_gap) * max(abs(objective), 1.0)
                    bound = relax_bound(p, objective, slack + scaled_margin(p, objective, MARGIN_TOL))
                else:
                    bound = self.safe_bound(prob, objective)
        return Solution(status=status, x=x, objective=objective, bound=bound,
                        time=time.perf_counter() - t0, message=message, node_count=node_count)

    def row_duals(self, prob) -> Optional[np.ndarray]:
        """One multiplier per program row from PuLP's ``constraint.pi`` (a ranged row's two
        constraints summed; dropped rows 0), or None when the solver gave none."""
        p = self.program
        y = np.zeros(p.n_rows)
        seen = False
        cons = prob.constraints
        cons = cons() if callable(cons) else list(cons.values())   # PuLP >= 3.3 / older
        for con in cons:
            name = str(getattr(con, "name", "") or "")
            pi = getattr(con, "pi", None)
            if name.startswith("r"):
                i = name[1:].split("_", 1)[0]
                if i.isdigit():
                    if pi is None:
                        return None
                    if not np.isfinite(float(pi)):
                        return None
                    y[int(i)] += float(pi)
                    seen = True
        return y if (seen or not cons) else None

    def safe_bound(self, prob, objective: float) -> float:
        """Safe LP bound from PuLP's duals (both sign conventions tried), else the objective
        relaxed by the scaled margin (see the module docstring)."""
        p = self.program
        y = self.row_duals(prob)
        if y is None:
            return relax_bound(p, objective, scaled_margin(p, objective, MARGIN_TOL))
        view = LPView(p)
        a = safe_lp_bound(p, y, objective, view)
        b = safe_lp_bound(p, -y, objective, view)
        return max(a, b) if p.sense == "min" else min(a, b)

    def _generic_status(self, prob, time_limit):
        st, sol = prob.status, prob.sol_status
        message = f"{self.solver_name}: {pulp.LpStatus.get(st, st)} / {pulp.LpSolution.get(sol, sol)}"
        if st == pulp.LpStatusInfeasible:
            return Status.INFEASIBLE, False, message
        if st == pulp.LpStatusUnbounded:
            return Status.UNBOUNDED, False, message
        if st == pulp.LpStatusOptimal:
            if sol == pulp.LpSolutionIntegerFeasible:
                return (Status.TIME_LIMIT if time_limit is not None else Status.UNKNOWN), True, message
            if sol == pulp.LpSolutionOptimal:
                if time_limit is not None:
                    return Status.UNKNOWN, True, message + " (time limit set; optimality not certain)"
                return Status.OPTIMAL, True, message
        return Status.UNKNOWN, False, message
