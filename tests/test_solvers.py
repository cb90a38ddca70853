"""One test suite for every solver backend (HiGHS, PuLP/CBC, PuLP/HiGHS), plus HiGHS-only
incremental and early-stopping checks. Backends that are not installed are skipped with the reason."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from cegarnn.encoding.program import Program
from cegarnn.solvers import (HighsBackend, PulpBackend, SolverError, Status, available_backends,
                             make_backend, unavailable_reason)
from cegarnn.solvers.highs import map_model_status
from cegarnn.solvers.pulp_backend import _cbc_line_status, cbc_verdict

INF = np.inf
BACKENDS = ["highs", "pulp", "pulp:HiGHS"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    reason = unavailable_reason(request.param)
    if reason is not None:
        pytest.skip(reason)
    return request.param


def solve(program, backend, **kw):
    return make_backend(program, backend).solve(**kw)


def assert_feasible(program, sol, tol=1e-6):
    assert sol.x is not None
    value, viol = program.evaluate(sol.x)
    assert viol <= tol
    assert value == pytest.approx(sol.objective, rel=1e-7, abs=1e-7)


# ---------------------------------------------------------------------------- problems
def small_lp(sense="max", offset=0.0):
    """max x + y  s.t.  x + 2y <= 4, 3x + y <= 6, x, y >= 0  ->  (1.6, 1.2), 2.8."""
    p = Program("lp")
    x = p.add_vars(2, 0.0, INF)
    p.add_dense_rows([[1, 2], [3, 1]], x, [-INF, -INF], [4, 6])
    sign = 1.0 if sense == "max" else -1.0
    p.set_objective(x, [sign, sign], sense=sense, offset=offset)
    return p


def knapsack(n=12, seed=3):
    rng = np.random.default_rng(seed)
    w = rng.integers(5, 40, n).astype(float)
    v = rng.integers(1, 60, n).astype(float)
    cap = float(np.floor(w.sum() / 3))
    p = Program("knapsack")
    x = p.add_binaries(n)
    p.add_dense_rows(w[None, :], x, [-INF], [cap])
    p.set_objective(x, v, sense="max")
    combos = np.array(list(itertools.product([0, 1], repeat=n)), dtype=float)
    best = float(np.max(np.where(combos @ w <= cap, combos @ v, -INF)))
    return p, best


def hard_mkp(n=150, m=10, seed=0, offset=1000.0):
    """Multi-dimensional 0/1 knapsack, correlated profits: neither HiGHS nor CBC closes it in 8 s."""
    rng = np.random.default_rng(seed)
    W = rng.integers(1, 1000, size=(m, n)).astype(float)
    prof = W.sum(0) / m + rng.integers(1, 500, size=n)
    p = Program("mkp")
    x = p.add_binaries(n)
    p.add_dense_rows(W, x, np.full(m, -INF), W.sum(1) * 0.5)
    p.set_objective(x, prof, sense="max", offset=offset)
    return p


def relaxation_bound(program):
    """Optimum of the LP relaxation of a maximisation MILP (same data, no integrality)."""
    q = Program()
    q.add_vars(program.n_vars, program.col_lo, program.col_hi)
    r, c, v = program.entries()
    q.add_rows(r, c, v, program.row_lo, program.row_hi)
    q.set_objective(np.arange(program.n_vars), program.objective, program.sense, program.offset)
    s = HighsBackend(q).solve()
    assert s.status is Status.OPTIMAL
    return s.objective


# ---------------------------------------------------------------------------- shared suite
def test_lp_known_optimum(backend):
    p = small_lp()
    s = solve(p, backend)
    assert s.status is Status.OPTIMAL
    assert s.objective == pytest.approx(2.8, abs=1e-7)
    np.testing.assert_allclose(s.x, [1.6, 1.2], atol=1e-7)
    assert s.bound == pytest.approx(s.objective, abs=1e-7)
    assert_feasible(p, s)


def test_minimisation_and_offset(backend):
    p = small_lp(sense="min", offset=10.0)          # min -x - y + 10
    s = solve(p, backend)
    assert s.status is Status.OPTIMAL
    assert s.objective == pytest.approx(10.0 - 2.8, abs=1e-7)
    q = small_lp(sense="max", offset=-3.0)
    s = solve(q, backend)
    assert s.objective == pytest.approx(2.8 - 3.0, abs=1e-7)
    assert_feasible(q, s)


def test_knapsack_known_optimum(backend):
    p, best = knapsack()
    s = solve(p, backend)
    assert s.status is Status.OPTIMAL
    assert s.objective == pytest.approx(best, abs=1e-6)
    np.testing.assert_allclose(s.x, np.round(s.x), atol=1e-6)
    assert s.bound is not None and s.bound >= best - 1e-6 * max(1.0, best)
    assert_feasible(p, s)


def test_infeasible_lp(backend):
    p = Program()
    x = p.add_vars(2, 0.0, 10.0)
    p.add_dense_rows([[1, 1], [1, 1]], x, [5, -INF], [INF, 3])
    p.set_objective(x, [1, 1])
    s = solve(p, backend)
    assert s.status is Status.INFEASIBLE and s.x is None


def test_infeasible_milp_with_feasible_relaxation(backend):
    p = Program()
    x = p.add_vars(2, 0.0, 10.0, integer=True)
    p.add_dense_rows([[2, 2]], x, [3], [3])         # 2x + 2y = 3 has no integer solution
    p.set_objective(x, [1, 1])
    s = solve(p, backend)
    assert s.status is Status.INFEASIBLE and s.x is None


@pytest.mark.parametrize("integer", [False, True])
def test_unbounded(backend, integer):
    p = Program()
    x = p.add_vars(2, 0.0, INF, integer=integer)
    p.add_dense_rows([[1, -1]], x, [-INF], [1])
    p.set_objective(x, [1, 1], sense="max")
    s = solve(p, backend)
    assert s.status is Status.UNBOUNDED
    if backend == "highs" and integer:   # HiGHS says "infeasible or unbounded"; we check feasibility
        assert "feasible" in s.message


def test_duplicate_entries_are_summed(backend):
    p = Program()
    x = p.add_vars(2, 0.0, 10.0)
    # row 0: x0 + x0 + x1 <= 4  (duplicate pair in one block), row 1: x1 >= 1
    p.add_rows([0, 0, 0, 1], [0, 0, 1, 1], [1.0, 1.0, 1.0, 1.0], [-INF, 1.0], [4.0, INF])
    y = p.add_vars(1, 0.0, 10.0)
    p.add_entries([0, 0], [y[0], y[0]], [0.5, 0.5])   # y enters row 0 with coefficient 1
    p.set_objective([0, 1, 2], [1.0, 1.0, 1.0], sense="max")
    s = solve(p, backend)
    assert s.status is Status.OPTIMAL
    assert s.objective == pytest.approx(4.0, abs=1e-7)   # 2 x0 + x1 + y <= 4, x1 >= 1
    assert s.x[0] == pytest.approx(0.0, abs=1e-7)        # x0 costs twice as much room
    assert_feasible(p, s)


def test_equality_rows_free_and_isolated_variables(backend):
    p = Program()
    x = p.add_vars(2, -INF, INF, name="free")      # free variables
    iso = p.add_vars(1, 2.0, 5.0, name="iso")       # appears in no row and not in the objective
    p.add_dense_rows([[1, 1], [1, -1]], x, [3, 1], [3, 1])      # x + y = 3, x - y = 1
    p.add_dense_rows([[1, 0]], x, [-1], [2.5])                   # ranged row
    p.add_dense_rows([[5, 7]], x, [100], [200])                  # deactivated below
    p.deactivate_rows([3])
    p.set_objective(x, [1, 2], sense="min", offset=0.5)
    s = solve(p, backend)
    assert s.status is Status.OPTIMAL
    np.testing.assert_allclose(s.x[:2], [2.0, 1.0], atol=1e-7)
    assert 2.0 - 1e-9 <= s.x[iso[0]] <= 5.0 + 1e-9
    assert s.objective == pytest.approx(4.5, abs=1e-7)
    assert_feasible(p, s)


def test_time_limited_hard_milp_is_never_optimal(backend):
    p = hard_mkp()
    s = solve(p, backend, time_limit=0.2)
    assert s.status is Status.TIME_LIMIT, s.message
    if s.x is not None:
        assert_feasible(p, s)
        assert np.allclose(s.x, np.round(s.x), atol=1e-6)
    if s.bound is not None and s.objective is not None:
        assert s.bound >= s.objective - 1e-6        # maximisation: bound above the incumbent


def test_target_and_cutoff_never_give_a_wrong_answer(backend):
    """PuLP may ignore target/cutoff; whatever a backend does, the answer stays right."""
    p, best = knapsack()
    s = solve(p, backend, target=best - 10.0)
    assert s.status in (Status.OPTIMAL, Status.INTERRUPTED)
    if s.status is Status.OPTIMAL:
        assert s.objective == pytest.approx(best, abs=1e-6)
    else:
        assert best - 10.0 < s.objective <= best + 1e-6
    s = solve(p, backend, cutoff=best + 5.0)
    assert s.status in (Status.OPTIMAL, Status.INTERRUPTED)
    if s.status is Status.OPTIMAL:
        assert s.objective == pytest.approx(best, abs=1e-6)
    else:
        assert s.bound <= best + 5.0


def test_program_without_rows(backend):
    p = Program()
    x = p.add_vars(3, [-1, 0, 2], [4, 1, 3])
    p.set_objective(x, [1, -1, 0], sense="max")
    s = solve(p, backend)
    assert s.status is Status.OPTIMAL
    assert s.objective == pytest.approx(4.0)
    assert_feasible(p, s)


# ---------------------------------------------------------------------------- HiGHS: incremental
def _random_program(rng, integer):
    p = Program("inc")
    x = p.add_vars(5, 0.0, 10.0, name="x")
    d = p.add_vars(6, 0.0, 1.0, integer=integer, name="d")
    cols = np.concatenate([x, d])
    point = np.concatenate([rng.uniform(0, 10, 5), rng.integers(0, 2, 6)])
    A = rng.normal(size=(8, 11)) * (rng.random((8, 11)) < 0.6)
    act = A @ point
    p.add_dense_rows(A, cols, act - rng.uniform(0, 3, 8), act + rng.uniform(0, 3, 8))
    p.set_objective(cols, rng.normal(size=11), sense="max")
    return p, point


@pytest.mark.parametrize("integer", [False, True])
def test_highs_incremental_matches_from_scratch(integer):
    rng = np.random.default_rng(7)
    p, point = _random_program(rng, integer)
    inc = HighsBackend(p)
    s0 = inc.solve()
    assert s0.status is Status.OPTIMAL
    for _ in range(3):
        old_rows, old_cols = p.n_rows, p.n_vars
        # new columns with entries in existing rows (value 0 keeps `point` feasible)
        new = p.add_vars(3, -5.0, 5.0, name="new")
        rr = rng.choice(old_rows, size=6)
        p.add_entries(rr, rng.choice(new, size=6), rng.normal(size=6))
        point = np.concatenate([point, np.zeros(3)])
        # new rows over old and new columns
        B = rng.normal(size=(2, p.n_vars)) * (rng.random((2, p.n_vars)) < 0.7)
        act = B @ point
        p.add_dense_rows(B, np.arange(p.n_vars), act - 1.0, act + 1.0)
        # bound edits: deactivate a row, fix one binary at the known point's value, tighten a row
        p.deactivate_rows([int(rng.integers(old_rows))])
        p.set_col_bounds([5], point[5], point[5])
        p.set_row_bounds([old_rows + 1], act[1] - 0.5, act[1] + 0.5)
        # objective change (other sense and an offset)
        p.set_objective(np.arange(p.n_vars), rng.normal(size=p.n_vars), sense="min", offset=2.0)
        s = inc.solve()
        assert s.status is Status.OPTIMAL
        assert_feasible(p, s)
        for other in available_backends():
            ref = make_backend(p, other).solve()
            assert ref.status is Status.OPTIMAL
            assert s.objective == pytest.approx(ref.objective, rel=1e-6, abs=1e-6), other
        assert inc.highs.getNumCol() == p.n_vars and inc.highs.getNumRow() == p.n_rows
        assert old_cols < p.n_vars


def test_highs_rejects_edit_of_synced_coefficient():
    p = small_lp()
    b = HighsBackend(p)
    assert b.solve().status is Status.OPTIMAL
    y = p.add_vars(1, 0.0, 1.0)
    p.add_entries([0], y, [1.0])                    # new column in an old row: allowed
    assert b.solve().status is Status.OPTIMAL
    p.add_entries([1], [0], [2.0])                  # old row, old column: forbidden
    with pytest.raises(SolverError, match="already synced"):
        b.solve()


def test_highs_rebuilds_a_replaced_change_log():
    p = small_lp()
    b = HighsBackend(p)
    b.solve()
    p.changes.clear()
    assert b.solve().objective == pytest.approx(2.8, abs=1e-7)


# ---------------------------------------------------------------------------- HiGHS: early stop
def test_highs_target_stops_early_with_a_better_point():
    p = hard_mkp()
    s = HighsBackend(p).solve(time_limit=10.0, target=60000.0)
    assert s.status is Status.INTERRUPTED, s.message
    assert s.objective > 60000.0
    assert_feasible(p, s)
    assert s.time < 5.0


def test_highs_cutoff_stops_early_with_a_bound_past_cutoff():
    p = hard_mkp()
    cutoff = relaxation_bound(p) + 1.0              # nothing can beat the LP relaxation
    s = HighsBackend(p).solve(time_limit=10.0, cutoff=cutoff)
    assert s.status is Status.INTERRUPTED, s.message
    assert s.bound is not None and s.bound <= cutoff
    assert s.time < 5.0


def test_highs_cutoff_on_minimisation():
    p = hard_mkp()
    p.set_objective(np.arange(p.n_vars), -p.objective, sense="min", offset=-1000.0)
    cutoff = -(relaxation_bound(hard_mkp()) + 1.0)
    s = HighsBackend(p).solve(time_limit=10.0, cutoff=cutoff)
    assert s.status is Status.INTERRUPTED, s.message
    assert s.bound >= cutoff


def test_highs_zero_time_limit():
    s = HighsBackend(hard_mkp()).solve(time_limit=0.0)
    assert s.status is Status.TIME_LIMIT


# ---------------------------------------------------------------------------- status tables
def test_highs_status_mapping_is_exact():
    import highspy
    M = highspy.HighsModelStatus
    expected = {
        "kOptimal": Status.OPTIMAL, "kInfeasible": Status.INFEASIBLE,
        "kUnbounded": Status.UNBOUNDED, "kUnboundedOrInfeasible": Status.UNBOUNDED,
        "kTimeLimit": Status.TIME_LIMIT, "kIterationLimit": Status.ITERATION_LIMIT,
        "kInterrupt": Status.INTERRUPTED, "kHighsInterrupt": Status.INTERRUPTED,
        "kObjectiveBound": Status.INTERRUPTED, "kObjectiveTarget": Status.INTERRUPTED,
        "kSolveError": Status.NUMERICAL_ERROR, "kPresolveError": Status.NUMERICAL_ERROR,
        "kPostsolveError": Status.NUMERICAL_ERROR,
    }
    for name, member in M.__members__.items():
        assert map_model_status(member) is expected.get(name, Status.UNKNOWN), name
    assert map_model_status(M.kNotset, highspy.HighsStatus.kError) is Status.NUMERICAL_ERROR


@pytest.mark.parametrize("line, status", [
    ("Optimal - objective value 12.5", Status.OPTIMAL),
    ("Infeasible - objective value 5.0", Status.INFEASIBLE),
    ("Integer infeasible - objective value 1.5", Status.INFEASIBLE),
    ("Unbounded - objective value 0", Status.UNBOUNDED),
    ("Stopped on time - objective value 65520.3", Status.TIME_LIMIT),
    ("Stopped on time (no integer solution - continuous used) - objective value 0", Status.TIME_LIMIT),
    ("Stopped on iterations - objective value 3", Status.ITERATION_LIMIT),
    ("Stopped on difficulties - objective value 3", Status.NUMERICAL_ERROR),
    ("Stopped on ctrl-c - objective value 3", Status.INTERRUPTED),
    ("Status unknown - objective value 3", Status.UNKNOWN),
])
def test_cbc_status_lines(line, status):
    assert _cbc_line_status(line) is status


def test_cbc_verdict_after_time_limit_is_not_trusted():
    line = "Integer infeasible - objective value -577.9"
    assert cbc_verdict(line, False, None, 500.0)[0] is Status.INFEASIBLE
    assert cbc_verdict(line, False, 600.0, 5.0)[0] is Status.INFEASIBLE
    status, has_point, msg = cbc_verdict(line, False, 120.0, 179.4)
    assert status is Status.TIME_LIMIT and not has_point and "not trusted" in msg
    # a continuous fallback point is never returned; an incumbent after a time limit is
    assert cbc_verdict("Stopped on time (no integer solution - continuous used) - objective value 0",
                       False, 1.0, 1.0)[:2] == (Status.TIME_LIMIT, False)
    assert cbc_verdict("Stopped on time - objective value 3", True, 1.0, 1.0)[:2] == (Status.TIME_LIMIT, True)
    assert cbc_verdict("", False, None, 0.0)[0] is Status.UNKNOWN


# ---------------------------------------------------------------------------- factory
def test_make_backend_unknown_name():
    with pytest.raises(SolverError):
        make_backend(small_lp(), "gurobi-direct")
    if PulpBackend.available():
        with pytest.raises(SolverError):
            make_backend(small_lp(), "pulp:NO_SUCH_SOLVER")


def test_available_backends_lists_highs():
    assert "highs" in available_backends()


def test_registry_entries_and_a_new_backend(monkeypatch):
    from cegarnn.solvers import BACKENDS
    from cegarnn.solvers.registry import BackendEntry
    assert BACKENDS["highs"].available() == HighsBackend.available()
    assert BACKENDS["pulp"].unavailable_reason("NO_SUCH_SOLVER") is not None

    class Fake:
        name = "fake"
        sub_option = "flavour"

        def __init__(self, program, flavour="plain"):
            self.program, self.flavour = program, flavour

        @staticmethod
        def available():
            return True

        @staticmethod
        def unavailable_reason(sub=""):
            return None

    monkeypatch.setitem(BACKENDS, "fake", BackendEntry(lambda: Fake))
    b = make_backend(small_lp(), "fake:spicy")
    assert isinstance(b, Fake) and b.flavour == "spicy"
    assert "fake" in available_backends() and unavailable_reason("fake") is None


# ---------------------------------------------------------------------------- safe LP bounds
from fractions import Fraction  # noqa: E402

from cegarnn.solvers.base import safe_lp_bound, scaled_margin  # noqa: E402


def _dual_lp(sense="min"):
    """min x + 2y  s.t.  x + y >= 1, x - y <= 0.5, 0 <= x, y <= 10: optimum 1.25 at (0.75, 0.25),
    row duals (1.5, -0.5) (c - A^T y = 0). ``max`` is the same LP with the objective negated."""
    p = Program("dual")
    x = p.add_vars(2, 0.0, 10.0)
    p.add_dense_rows([[1, 1], [1, -1]], x, [1.0, -INF], [INF, 0.5])
    s = 1.0 if sense == "min" else -1.0
    p.set_objective(x, [s, 2 * s], sense=sense)
    return p


@pytest.mark.parametrize("sense", ["min", "max"])
def test_highs_dual_sign_convention_and_safe_bound(sense):
    p = _dual_lp(sense)
    b = HighsBackend(p)
    s = b.solve()
    assert s.status is Status.OPTIMAL
    y = np.array(b.highs.getSolution().row_dual)
    s_ = 1.0 if sense == "min" else -1.0
    np.testing.assert_allclose(y, s_ * np.array([1.5, -0.5]), atol=1e-12)   # c - A^T y = col_dual
    assert safe_lp_bound(p, y) == pytest.approx(s_ * 1.25, abs=1e-12)
    if sense == "min":
        assert s.bound <= 1.25 and s.bound == pytest.approx(1.25, abs=1e-12)
        assert safe_lp_bound(p, -y) < 1.25 - 0.1     # wrong signs: still a valid, weak bound
    else:
        assert s.bound >= -1.25 and s.bound == pytest.approx(-1.25, abs=1e-12)


def _loose_dual_lp(sense):
    """min sum c_j x_j, c_j in [-0.005, -0.004], s.t. sum x <= 3, 0 <= x <= 1 (or its max mirror).
    Every reduced cost at x = 0 is within a dual tolerance of 1e-2, so HiGHS may stop there."""
    n = 12
    c = -0.004 - 0.001 * np.arange(n) / n
    p = Program("loose")
    x = p.add_vars(n, 0.0, 1.0)
    p.add_dense_rows(np.ones((1, n)), x, [-INF], [3.0])
    s = 1.0 if sense == "min" else -1.0
    p.set_objective(x, s * c, sense=sense, offset=s * 0.125)
    # exact optimum: the three most negative c_j (exact rationals of the float data)
    best = sum(sorted(Fraction(float(v)) for v in c)[:3]) + Fraction(0.125)
    return p, s * best


@pytest.mark.parametrize("sense", ["min", "max"])
def test_safe_bound_survives_a_loose_dual_tolerance(sense):
    """HiGHS stops at a non-optimal vertex when the dual tolerance is loose; its objective is then
    on the unsafe side of the true optimum, the safe bound is not."""
    p, true = _loose_dual_lp(sense)
    s = HighsBackend(p, presolve=False, dual_feasibility_tolerance=1e-2,
                     primal_feasibility_tolerance=1e-3).solve()
    assert s.status is Status.OPTIMAL
    if sense == "min":
        assert Fraction(s.objective) > true + Fraction(1, 1000)      # raw objective: wrong proof
        assert Fraction(s.bound) <= true                             # safe bound: right
    else:
        assert Fraction(s.objective) < true - Fraction(1, 1000)
        assert Fraction(s.bound) >= true
    # with default tolerances the bound is the optimum
    t = HighsBackend(p).solve()
    assert float(t.bound) == pytest.approx(float(true), abs=1e-12)
    assert (Fraction(t.bound) <= true) if sense == "min" else (Fraction(t.bound) >= true)


def _random_lp(rng, m=8, n=10):
    """A feasible LP around a known point: boxed, one-sided and free columns; <=, >=, ranged and
    equality rows. Free and one-sided columns get their missing bound implied by a row."""
    point = rng.uniform(-2, 2, n)
    lo, hi = np.full(n, -4.0), np.full(n, 4.0)
    kinds = rng.integers(0, 4, n)            # 0 boxed, 1 lower only, 2 upper only, 3 free
    lo[kinds == 2] = -INF
    lo[kinds == 3] = -INF
    hi[kinds == 1] = INF
    hi[kinds == 3] = INF
    A = rng.normal(size=(m, n)) * (rng.random((m, n)) < 0.5)
    act = A @ point
    rlo = act - rng.uniform(0.1, 2, m)
    rhi = act + rng.uniform(0.1, 2, m)
    rk = rng.integers(0, 4, m)
    rlo[rk == 1] = -INF
    rhi[rk == 2] = INF
    rlo[rk == 3] = rhi[rk == 3] = act[rk == 3]
    # a boxing row per unbounded column (x_j within 3 of the point), so the LP is bounded
    unb = np.flatnonzero(~(np.isfinite(lo) & np.isfinite(hi)))
    B = np.zeros((unb.size, n))
    B[np.arange(unb.size), unb] = 1.0
    A = np.vstack([A, B])
    rlo = np.concatenate([rlo, point[unb] - 3])
    rhi = np.concatenate([rhi, point[unb] + 3])
    return A, rlo, rhi, lo, hi, rng.normal(size=n)


def test_safe_bound_equals_the_optimum_on_random_lps():
    from scipy.optimize import linprog
    rng = np.random.default_rng(11)
    for k in range(30):
        A, rlo, rhi, lo, hi, c = _random_lp(rng)
        sense = "min" if k % 2 == 0 else "max"
        p = Program("rand")
        x = p.add_vars(len(c), lo, hi)
        p.add_dense_rows(A, x, rlo, rhi)
        p.set_objective(x, c, sense=sense, offset=1.5)
        s = HighsBackend(p, presolve=(k % 3 == 0)).solve()
        assert s.status is Status.OPTIMAL
        sg = 1.0 if sense == "min" else -1.0
        A_ub = np.vstack([A[np.isfinite(rhi)], -A[np.isfinite(rlo)]])
        b_ub = np.concatenate([rhi[np.isfinite(rhi)], -rlo[np.isfinite(rlo)]])
        ref = linprog(sg * c, A_ub=A_ub, b_ub=b_ub, bounds=list(zip(np.where(np.isfinite(lo), lo, None),
                                                                     np.where(np.isfinite(hi), hi, None))),
                      method="highs", options={"primal_feasibility_tolerance": 1e-10,
                                               "dual_feasibility_tolerance": 1e-10})
        assert ref.status == 0
        opt = sg * ref.fun + 1.5
        assert s.bound == pytest.approx(opt, abs=1e-9 * (1 + abs(opt))), k
        assert sg * (s.bound - opt) <= 1e-9 * (1 + abs(opt)), k


@pytest.mark.parametrize("sense", ["min", "max"])
def test_safe_bound_with_a_free_margin_variable(sense):
    """The verifier's shape: a free variable t above (below) several outputs is minimised
    (maximised); t's missing bounds are implied by its rows and the objective cut-off."""
    rng = np.random.default_rng(3)
    p = Program("margin")
    y = p.add_vars(4, -1.0, 1.0)
    p.add_dense_rows(rng.normal(size=(3, 4)), y, [-0.3] * 3, [0.3] * 3)
    t = p.add_vars(1)                                   # free
    k = 4
    vals = np.concatenate([np.ones(k), -np.ones(k)])
    rows = np.concatenate([np.arange(k), np.arange(k)])
    cols = np.concatenate([y, np.repeat(t, k)])
    if sense == "min":
        p.add_rows(rows, cols, vals, np.full(k, -INF), np.zeros(k))    # y_i - t <= 0
    else:
        p.add_rows(rows, cols, vals, np.zeros(k), np.full(k, INF))     # y_i - t >= 0
    p.set_objective(t, [1.0], sense=sense)
    s = HighsBackend(p, presolve=False).solve()
    assert s.status is Status.OPTIMAL
    assert np.isfinite(s.bound)
    assert s.bound == pytest.approx(s.objective, abs=1e-12)
    assert (s.bound <= s.objective) if sense == "min" else (s.bound >= s.objective)


def test_safe_bound_is_valid_for_any_multipliers():
    """Random multipliers give weak but valid bounds (never above the true minimum)."""
    rng = np.random.default_rng(5)
    for _ in range(20):
        A, rlo, rhi, lo, hi, c = _random_lp(rng)
        p = Program("any")
        x = p.add_vars(len(c), lo, hi)
        p.add_dense_rows(A, x, rlo, rhi)
        p.set_objective(x, c, sense="min")
        opt = HighsBackend(p).solve().bound
        for _ in range(5):
            assert safe_lp_bound(p, rng.normal(size=p.n_rows)) <= opt + 1e-12


def test_milp_bound_margin_is_scaled_to_the_problem():
    p, best = knapsack()
    p.set_objective(np.arange(p.n_vars), p.objective * 1e6, sense="max")
    b = HighsBackend(p)
    s = b.solve()
    assert s.status is Status.OPTIMAL
    db = b.highs.getInfo().mip_dual_bound
    margin = scaled_margin(p, db, 1e-6)
    assert margin >= 1e-6 * abs(db) >= 1.0               # not an absolute 1e-6
    assert s.bound == pytest.approx(db + margin, rel=1e-12)
    assert s.bound >= best * 1e6


def test_pulp_lp_bound_is_safe_and_falls_back_to_a_scaled_margin(monkeypatch):
    if unavailable_reason("pulp") is not None:
        pytest.skip("pulp not available")
    for sense in ("min", "max"):
        p = _dual_lp(sense)
        s_ = 1.0 if sense == "min" else -1.0
        for name in ("pulp", "pulp:HiGHS"):
            if unavailable_reason(name) is not None:
                continue
            s = make_backend(p, name).solve()
            assert s.status is Status.OPTIMAL
            assert s.bound == pytest.approx(s_ * 1.25, abs=1e-12)
            assert s_ * s.bound <= 1.25
    p = small_lp("max")
    monkeypatch.setattr(PulpBackend, "row_duals", lambda self, prob: None)
    s = make_backend(p, "pulp").solve()
    assert s.bound == pytest.approx(s.objective + scaled_margin(p, s.objective, 1e-6), rel=1e-12)
    assert s.bound > s.objective + 1e-6


def test_highs_cutoff_stop_is_a_usable_proof_after_the_margin():
    """The early stop uses the relaxed (reported) bound, so the bound of an interrupted run is
    past the cutoff, as a verifier needs it to be."""
    p = hard_mkp()
    p.set_objective(np.arange(p.n_vars), -p.objective, sense="min", offset=-1000.0)
    cutoff = -(relaxation_bound(hard_mkp()) + 1.0)
    b = HighsBackend(p)
    s = b.solve(time_limit=10.0, cutoff=cutoff)
    assert s.status is Status.INTERRUPTED, s.message
    assert s.bound >= cutoff
    db = b.highs.getInfo().mip_dual_bound
    assert s.bound == pytest.approx(db - scaled_margin(p, db, 1e-6), rel=1e-12)


# ---------------------------------------------------------------------------- silence
# HiGHS prints its banner ("Running HiGHS ... Copyright ...") from C++ to file descriptor 1 when
# the first highspy.Highs of a process is built; only a fresh process shows it, so the tiny LP is
# built and solved in a child whose stdout is the descriptor capfd captures.
_TINY_LP = """
import sys
import numpy as np
from cegarnn.encoding.program import Program
from cegarnn.solvers import make_backend
p = Program("tiny")
x = p.add_vars(2, 0.0, 1.0)
p.add_dense_rows(np.array([[1.0, 1.0]]), x, np.array([-np.inf]), np.array([1.5]))
p.set_objective(x, [1.0, 2.0], "max")
s = make_backend(p, sys.argv[1]).solve()
sys.stdout.write(f"{s.status.value} {s.objective:.6f}\\n")
"""


@pytest.mark.parametrize("name", ["highs", "pulp:HiGHS"])
def test_highs_prints_nothing_in_a_fresh_process(capfd, name):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import cegarnn
    reason = unavailable_reason(name)
    if reason is not None:
        pytest.skip(reason)
    root = str(Path(cegarnn.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    capfd.readouterr()
    subprocess.run([sys.executable, "-c", _TINY_LP, name], env=env, check=True, timeout=120)
    out, err = capfd.readouterr()
    assert out == "optimal 2.500000\n"
    assert "HiGHS" not in err and "Copyright" not in err


def test_highs_backend_prints_nothing_while_building_and_solving(capfd):
    capfd.readouterr()
    p = small_lp("max")
    b = HighsBackend(p)
    s = b.solve()
    b.reset()
    b.solve(time_limit=5.0)
    out, err = capfd.readouterr()
    assert s.status is Status.OPTIMAL
    assert out == "" and err == ""


def test_farkas_certificate_of_infeasibility():
    """An LP's INFEASIBLE stands only with a dual ray that certifies it."""
    from cegarnn.encoding import Program
    from cegarnn.solvers.base import farkas_certified
    p = Program()
    x = p.add_vars(1, lb=0.0, ub=1.0)
    p.add_rows([0], [int(x[0])], [1.0], [2.0], [np.inf])          # x >= 2 with x <= 1
    assert farkas_certified(p, np.array([1.0]))
    assert not farkas_certified(p, np.array([0.0]))
    q = Program()
    y = q.add_vars(1, lb=0.0, ub=3.0)
    q.add_rows([0], [int(y[0])], [1.0], [2.0], [np.inf])          # feasible: no ray certifies
    assert not farkas_certified(q, np.array([1.0])) and not farkas_certified(q, np.array([-1.0]))
    sol = make_backend(p, "highs").solve()
    assert sol.status == Status.INFEASIBLE                        # certified by HiGHS' own ray
