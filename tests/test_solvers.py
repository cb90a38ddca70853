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
