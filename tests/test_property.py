"""UnsafeRegion / Problem strictness: what a counterexample must satisfy (strict rows, strict input bounds)."""
import numpy as np
import pytest

from cegarnn.network import Affine, Network
from cegarnn.specs.problem import Problem
from cegarnn.specs.property import SpecError, UnsafeRegion, classification_unsafe
from cegarnn.verifier.confirm import confirm


def region(strict=()):
    # disjunct 0: y0 - y1 <= 0 (row 0) and y0 <= 1 (row 1); disjunct 1: -y1 <= -5
    C0, d0 = np.array([[1.0, -1.0], [1.0, 0.0]]), np.array([0.0, 1.0])
    C1, d1 = np.array([[0.0, -1.0]]), np.array([-5.0])
    return UnsafeRegion(((C0, d0), (C1, d1)), 2, strict=strict)


def test_strict_rows_need_a_negative_value_non_strict_ones_zero_is_enough():
    loose = region()
    tight = region((np.array([True, False]), np.array([True])))
    y_tie = np.array([0.0, 0.0])          # row 0 == 0, row 1 < 0; disjunct 1 is false (y1 < 5)
    assert loose.violated_disjunct(y_tie) == 0
    assert tight.violated_disjunct(y_tie) is None
    np.testing.assert_array_equal(tight.disjunct_holds(y_tie), [False, False])
    # the margins ignore strictness (the attack and the proofs use them)
    assert loose.margin(y_tie) == tight.margin(y_tie) == 0.0
    np.testing.assert_array_equal(loose.disjunct_margins(y_tie), tight.disjunct_margins(y_tie))
    # row 1 (non-strict) may be tight: y0 == 1 with y0 < y1
    assert tight.violated_disjunct(np.array([1.0, 2.0])) == 0
    # a strict single-row disjunct at its boundary: y1 == 5 is not unsafe, y1 > 5 is
    y = np.array([7.0, 5.0])
    assert loose.violated_disjunct(y) == 1 and tight.violated_disjunct(y) is None
    assert tight.violated_disjunct(np.array([7.0, 5.5])) == 1
    # batches, and NaN outputs satisfy nothing
    h = tight.disjunct_holds(np.array([[0.0, 0.0], [0.0, 1.0], [7.0, 6.0]]))
    np.testing.assert_array_equal(h, [[False, False], [True, False], [False, True]])
    assert tight.violated_disjunct(np.array([np.nan, 9.0])) is None


def test_violated_disjunct_picks_the_smallest_margin_among_holding_disjuncts():
    tight = region((np.array([True, False]), np.array([False])))
    y = np.array([-10.0, 5.0])        # disjunct 0 holds with margin -11, disjunct 1 with margin 0
    assert tight.violated_disjunct(y) == 0
    y = np.array([5.0, 5.0])          # disjunct 0 fails (strict tie), disjunct 1 holds
    assert tight.violated_disjunct(y) == 1


def test_strictness_defaults_and_validation():
    u = region()
    assert not u.has_strict and [s.tolist() for s in u.strict] == [[False, False], [False]]
    assert not classification_unsafe(3, 0).has_strict
    assert region((np.array([False, True]), np.array([False]))).has_strict
    with pytest.raises(SpecError, match="region has 2"):
        region((np.array([True, False]),))
    with pytest.raises(SpecError, match="rows"):
        region((np.array([True]), np.array([True])))
    with pytest.raises(SpecError, match="boolean"):
        region((np.array([1, 0]), np.array([1])))


def identity_problem(**kw):
    """y = x on [0, 1]; unsafe: y >= 1 (row -y <= -1)."""
    net = Network((Affine(np.eye(1), np.zeros(1)),), (1,))
    unsafe = UnsafeRegion(((np.array([[-1.0]]), np.array([-1.0])),), 1)
    return Problem(net, [0.0], [1.0], unsafe, **kw)


def test_confirm_rejects_points_on_a_strict_input_bound():
    assert confirm(identity_problem(), [1.0]) is not None                       # closed box: x = 1 is unsafe
    assert confirm(identity_problem(strict_upper=np.array([True])), [1.0]) is None
    assert confirm(identity_problem(strict_upper=np.array([True])), [5.0]) is None   # clipped onto the bound
    assert confirm(identity_problem(strict_lower=np.array([True])), [1.0]) is not None


def test_confirm_moves_a_point_off_a_strict_bound_and_checks_it_there():
    net = Network((Affine(np.eye(1), np.zeros(1)),), (1,))
    unsafe = UnsafeRegion(((np.array([[-1.0]]), np.array([-0.5])),), 1)       # y >= 0.5
    p = Problem(net, [0.0], [1.0], unsafe, strict_upper=np.array([True]), strict_lower=np.array([True]))
    for z in (1.0, 1.0 - 1e-12):          # on the bound, or on it once rounded to float32
        cex = confirm(p, [z])
        assert cex is not None
        x = cex.free_input[0]
        assert 0.5 <= x < 1.0 and float(np.float32(x)) < 1.0
    assert confirm(p, [0.0]) is None      # moved to just above 0: not unsafe


def test_confirm_honours_strict_rows_on_the_reference_too():
    net = Network((Affine(np.eye(1), np.zeros(1)),), (1,))
    strict = UnsafeRegion(((np.array([[-1.0]]), np.array([-1.0])),), 1, strict=(np.array([True]),))   # y > 1
    ok = Problem(net, [0.0], [2.0], strict, reference=lambda z: np.asarray(z) + 0.5)
    assert confirm(ok, [1.0]) is None                 # IR output is exactly 1
    cex = confirm(ok, [1.5])
    assert cex is not None and cex.confirmed_reference
    tie = Problem(net, [0.0], [2.0], strict, reference=lambda z: np.ones_like(np.asarray(z)))   # reference == 1
    assert confirm(tie, [1.5]) is None
    loose = Problem(net, [0.0], [2.0], UnsafeRegion(((np.array([[-1.0]]), np.array([-1.0])),), 1),
                    reference=lambda z: np.ones_like(np.asarray(z)))
    assert confirm(loose, [1.5]) is not None


def test_problem_strict_masks_are_validated():
    with pytest.raises(SpecError, match="strict_upper"):
        identity_problem(strict_upper=np.array([1]))
    with pytest.raises(SpecError, match="strict_lower"):
        identity_problem(strict_lower=np.array([True, False]))
    net = Network((Affine(np.eye(1), np.zeros(1)),), (1,))
    with pytest.raises(SpecError, match="empty input region"):
        Problem(net, [1.0], [1.0], UnsafeRegion(((np.array([[-1.0]]), np.array([-1.0])),), 1),
                strict_lower=np.array([True]))
    p = identity_problem(strict_upper=np.array([False]))
    assert p.strict_upper is None and p.strict_lower is None
