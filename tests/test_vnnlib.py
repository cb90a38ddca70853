"""VNN-LIB front end: parser constructs and errors, problems, result files, the `cegarnn vnnlib` command."""
import gzip
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from cegarnn.cli.commands import main
from cegarnn.network import Affine, Network, NetworkError, load_onnx, save_onnx
from cegarnn.specs.vnnlib import VnnlibError, parse_vnnlib, parse_vnnlib_text
from cegarnn.specs.vnnlib_problems import vnnlib_problems
from cegarnn.vnncomp.runner import format_result, read_result, write_result

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
VNN2021 = BENCHMARKS / "vnncomp2021"


def decl(nx, ny):
    return "".join(f"(declare-const X_{i} Real)\n" for i in range(nx)) + \
        "".join(f"(declare-const Y_{i} Real)\n" for i in range(ny))


def box(lo, hi):
    return "".join(f"(assert (>= X_{i} {l}))\n(assert (<= X_{i} {h}))\n" for i, (l, h) in enumerate(zip(lo, hi)))


# ============================================================== the public benchmarks
def test_every_vnncomp2021_property_parses():
    if not VNN2021.is_dir():
        pytest.skip(f"benchmarks folder absent: {VNN2021}")
    files = sorted(VNN2021.rglob("*.vnnlib")) + sorted(VNN2021.rglob("*.vnnlib.gz"))
    assert files
    start = time.perf_counter()
    for f in files:
        cases = parse_vnnlib(f)
        assert len(cases) == 1, f
        lo, hi, unsafe = cases[0]
        assert lo.shape == (784,) and unsafe.n_outputs == 10, f
        assert np.all(lo <= hi) and np.all(lo >= 0) and np.all(hi <= 1), f
        assert len(unsafe.disjuncts) == 9, f
        for C, d in unsafe.disjuncts:    # (>= Y_j Y_label): Y_label - Y_j <= 0
            assert C.shape == (1, 10) and sorted(C[0]) == [-1] + [0] * 8 + [1] and d[0] == 0
    assert time.perf_counter() - start < 20


# ============================================================== constructs
def test_numbers_in_any_notation_and_terms():
    text = decl(3, 2) + """
    ; comment (with parentheses
    (assert (>= X_0 -1.5e-1))   (assert (<= X_0 .25))
    (assert (<= (- 2E+0) X_1))  (assert (<= (* 2 X_1) 3))
    (assert (<= 0.1 X_2 0.2))
    (assert (<= (+ Y_0 (* -1 Y_1) 0.5) (/ 1 4)))
    (assert (>= (- Y_0 Y_1 1) -3))
    """
    (lo, hi, unsafe), = parse_vnnlib_text(text)
    np.testing.assert_allclose(lo, [-0.15, -2.0, 0.1])
    np.testing.assert_allclose(hi, [0.25, 1.5, 0.2])
    (C, d), = unsafe.disjuncts                     # one conjunction of two rows
    np.testing.assert_allclose(C, [[1, -1], [-1, 1]])
    np.testing.assert_allclose(d, [-0.25, 2.0])


def test_or_of_ands_on_outputs():
    text = decl(1, 3) + box([0], [1]) + """
    (assert (or (and (<= Y_0 Y_1) (<= Y_0 Y_2)) (and (>= Y_2 5))))
    """
    (lo, hi, unsafe), = parse_vnnlib_text(text)
    assert len(unsafe.disjuncts) == 2
    np.testing.assert_allclose(unsafe.disjuncts[0][0], [[1, -1, 0], [1, 0, -1]])
    np.testing.assert_allclose(unsafe.disjuncts[1][0], [[0, 0, -1]])
    np.testing.assert_allclose(unsafe.disjuncts[1][1], [-5])
    assert unsafe.margin([0, 1, 1]) <= 0 and unsafe.margin([2, 1, 1]) > 0 and unsafe.margin([2, 1, 6]) <= 0


def test_input_disjunctions_give_one_case_per_box():
    text = decl(2, 2) + """
    (assert (or
        (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (<= Y_0 Y_1))
        (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1) (>= Y_0 7))
        (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1) (>= Y_1 9))
    ))
    """
    cases = parse_vnnlib_text(text)
    assert len(cases) == 2
    np.testing.assert_allclose(cases[0].lower, [0, 0])
    np.testing.assert_allclose(cases[1].lower, [2, 0])
    assert len(cases[0].unsafe.disjuncts) == 2 and len(cases[1].unsafe.disjuncts) == 1


def test_input_disjunction_with_separate_output_assert_and_pinned_inputs():
    text = decl(2, 2) + """
    (assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))
    (assert (= X_1 0.5))
    (assert (or (<= Y_0 0) (<= Y_1 0)))
    """
    cases = parse_vnnlib_text(text)
    assert len(cases) == 2
    for c in cases:
        assert c.lower[1] == c.upper[1] == 0.5
        assert len(c.unsafe.disjuncts) == 2


def test_no_output_constraint_means_the_whole_box_is_unsafe():
    (lo, hi, unsafe), = parse_vnnlib_text(decl(1, 2) + box([0], [1]) + "(assert true)")
    assert unsafe.margin([123.0, -4.0]) <= 0


def test_gzipped_property(tmp_path):
    text = decl(1, 1) + box([-1e-3], [2]) + "(assert (<= Y_0 0))"
    p = tmp_path / "prop.vnnlib.gz"
    p.write_bytes(gzip.compress(text.encode()))
    (lo, hi, _), = parse_vnnlib(p)
    assert lo[0] == -1e-3 and hi[0] == 2


@pytest.mark.parametrize("body, words", [
    ("(assert (<= X_7 1))", ["undeclared variable X_7", ":4:"]),
    ("(assert (<= (exp X_0) 1))", ["unsupported operator 'exp'"]),
    ("(assert (<= (* X_0 X_0) 1))", ["non-linear"]),
    ("(assert (<= X_0 Y_0))", ["mixing inputs"]),
    ("(assert (<= (+ X_0 X_1) 1))", ["several inputs"]),
    ("(assert (>= X_0 3))", ["empty input region", "X_0"]),
    ("(assert (<= Y_0 1)", ["never closed"]),
    ("(assert (<= Y_0 1)))", ["unbalanced"]),
    ("(declare-fun f () Real)", ["unsupported command 'declare-fun'"]),
    ("(assert (not (<= Y_0 1)))", ["'not'"]),
    ("(assert (<= Y_0 nan))", ["non-finite"]),
])
def test_errors_name_the_problem(body, words):
    text = "(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n" + body + "\n" + \
        box([0, 0], [1, 1])
    with pytest.raises(VnnlibError) as e:
        parse_vnnlib_text(text, name="p.vnnlib")
    for w in words:
        assert w in str(e.value)


def test_missing_bound_and_missing_declaration():
    with pytest.raises(VnnlibError, match="X_0 has no upper bound"):
        parse_vnnlib_text(decl(1, 1) + "(assert (>= X_0 0)) (assert (<= Y_0 0))")
    with pytest.raises(VnnlibError, match="Y_0 is not declared"):
        parse_vnnlib_text(decl(1, 0) + "(declare-const Y_1 Real)" + box([0], [1]))


def test_truncated_gzip_and_missing_file(tmp_path):
    p = tmp_path / "prop.vnnlib.gz"
    p.write_bytes(gzip.compress((decl(1, 1) + box([0], [1]) + "(assert (<= Y_0 0))").encode())[:30])
    with pytest.raises(VnnlibError, match="truncated or corrupt gzip"):
        parse_vnnlib(p)
    with pytest.raises(VnnlibError, match="not found"):
        parse_vnnlib(tmp_path / "nope.vnnlib")


# ============================================================== problems
def test_problems_fold_pinned_inputs_and_reference_matches(tiny_onnx, tmp_path):
    net, onnx_path = tiny_onnx()
    prop = tmp_path / "p.vnnlib"
    prop.write_text(decl(3, 2) + box([-1, 0.25, -0.5], [1, 0.25, 0.5]) + "(assert (<= Y_0 Y_1))")
    (pb,) = vnnlib_problems(onnx_path, prop)
    assert pb.n_free == 2 and pb.meta["fixed_inputs"] == 1
    z = np.array([[0.3, -0.2], [-1.0, 0.5]])
    full = pb.full_input(z)
    np.testing.assert_allclose(full, [[0.3, 0.25, -0.2], [-1.0, 0.25, 0.5]])
    loaded = load_onnx(onnx_path)              # float32 weights, as in the file
    np.testing.assert_allclose(pb.network.forward(z), loaded.forward(full), atol=1e-12)
    np.testing.assert_allclose(pb.reference(z), loaded.forward(full), atol=1e-5)


def test_size_mismatches_are_clear_errors(tiny_onnx, tmp_path):
    _, onnx_path = tiny_onnx()
    p = tmp_path / "p.vnnlib"
    p.write_text(decl(4, 2) + box([0] * 4, [1] * 4) + "(assert (<= Y_0 0))")
    with pytest.raises(VnnlibError, match="declares 4 inputs.*has 3 inputs"):
        vnnlib_problems(onnx_path, p)
    p.write_text(decl(3, 3) + box([0] * 3, [1] * 3) + "(assert (<= Y_0 0))")
    with pytest.raises(VnnlibError, match="declares 3 outputs.*has 2 outputs"):
        vnnlib_problems(onnx_path, p)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    with pytest.raises(NetworkError):
        vnnlib_problems(bad, p)


# ============================================================== result files
def test_result_file_round_trip(tmp_path):
    x, y = np.array([0.1, -2.5e-7, 1 / 3]), np.array([1e10, -0.0])
    p = tmp_path / "r.txt"
    text = write_result(p, "sat", x, y)
    assert text.startswith("sat\n((X_0 0.1)\n (X_1 ") and text.rstrip().endswith("(Y_1 -0.0))")
    res, x2, y2 = read_result(p)
    assert res == "sat"
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)
    for r in ("unsat", "timeout", "unknown", "error"):
        write_result(p, r, reason="why\nnot")
        assert read_result(p) == (r, None, None)
        assert p.read_text() == f"{r}\n; why not\n"
    with pytest.raises(ValueError):
        format_result("maybe")


# ============================================================== the command
def test_sat_counterexample_checks_out_on_onnxruntime(tiny_onnx, tmp_path, capsys):
    net, onnx_path = tiny_onnx()
    prop = tmp_path / "sat.vnnlib"
    # unsafe: Y_0 >= Y_1 - 100 -- true for almost every input
    prop.write_text(decl(3, 2) + box([-1, -1, 0.5], [1, 1, 0.5]) + "(assert (>= Y_0 (- Y_1 100)))")
    out = tmp_path / "res.txt"
    rc = main(["vnnlib", str(onnx_path), str(prop), "--timeout", "20", "--out", str(out)])
    assert rc == 0
    assert capsys.readouterr().out == out.read_text()
    res, x, y = read_result(out)
    assert res == "sat" and x.shape == (3,) and y.shape == (2,)
    (lo, hi, unsafe), = parse_vnnlib(prop)
    assert np.all(x >= lo) and np.all(x <= hi)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32).reshape(1, 3)})[0].reshape(-1)
    np.testing.assert_allclose(y, y_ort, rtol=1e-6, atol=1e-6)
    assert unsafe.margin(y_ort) <= 0


def test_unsat_on_an_easy_case_and_gz_network(tiny_onnx, tmp_path, capsys):
    net, _ = tiny_onnx()
    gz = tmp_path / "tiny.onnx.gz"
    save_onnx(net, gz)
    prop = tmp_path / "unsat.vnnlib"
    prop.write_text(decl(3, 2) + box([-0.1] * 3, [0.1] * 3) + "(assert (or (>= Y_0 1000) (<= Y_1 -1000)))")
    out = tmp_path / "res.txt"
    rc = main(["vnnlib", str(gz), str(prop), "--timeout", "20", "--out", str(out)])
    assert rc == 0 and read_result(out)[0] == "unsat"


def test_bad_input_gives_an_error_result(tiny_onnx, tmp_path, capsys):
    _, onnx_path = tiny_onnx()
    prop = tmp_path / "p.vnnlib"
    prop.write_text(decl(4, 2) + box([0] * 4, [1] * 4) + "(assert (<= Y_0 0))")
    out = tmp_path / "res.txt"
    assert main(["vnnlib", str(onnx_path), str(prop), "--out", str(out)]) == 2
    lines = out.read_text().splitlines()
    assert lines[0] == "error" and "4 inputs" in lines[1] and len(lines) == 2
    bad = tmp_path / "bad.onnx.gz"
    bad.write_bytes(gzip.compress(b"x" * 1000)[:20])
    assert main(["vnnlib", str(bad), str(prop), "--out", str(out)]) == 2
    assert "gzip" in out.read_text()


# ============================================================== strict comparisons
def test_strictness_of_output_and_input_atoms_is_recorded():
    text = decl(2, 2) + """
    (assert (> X_0 0)) (assert (<= X_0 1))
    (assert (>= X_1 -1)) (assert (<= X_1 1)) (assert (< X_1 1))
    (assert (or (and (> Y_0 Y_1) (<= Y_0 3)) (and (< Y_1 2)) (and (= Y_0 4))))
    """
    case, = parse_vnnlib_text(text)
    lo, hi, unsafe = case                                 # still unpacks as three values
    np.testing.assert_array_equal(case.strict_lower, [True, False])
    np.testing.assert_array_equal(case.strict_upper, [False, True])   # <= 1 and < 1: strict
    assert [s.tolist() for s in unsafe.strict] == [[True, False], [True], [False, False]]
    # the tighter bound wins, whatever its strictness
    case, = parse_vnnlib_text(decl(1, 1) + "(assert (< X_0 1)) (assert (<= X_0 0.5)) (assert (> X_0 0))"
                              "(assert (>= X_0 0.25)) (assert (<= Y_0 0))")
    assert case.lower[0] == 0.25 and case.upper[0] == 0.5
    assert not case.strict_lower[0] and not case.strict_upper[0]
    # chained strict comparison; constant strict atoms
    case, = parse_vnnlib_text(decl(1, 1) + "(assert (< 0 X_0 1)) (assert (<= Y_0 0))")
    assert case.strict_lower[0] and case.strict_upper[0]
    assert parse_vnnlib_text(decl(1, 1) + box([0], [1]) + "(assert (< 0 0)) (assert (<= Y_0 0))") == []
    assert len(parse_vnnlib_text(decl(1, 1) + box([0], [1]) + "(assert (<= 0 0)) (assert (<= Y_0 0))")) == 1
    # a strict bound pinning an input leaves no input at all
    with pytest.raises(VnnlibError, match="empty input region: X_0 >= 0.5.*X_0 < 0.5"):
        parse_vnnlib_text(decl(1, 1) + "(assert (>= X_0 0.5)) (assert (< X_0 0.5)) (assert (<= Y_0 0))")


def test_input_boxes_differing_only_in_strictness_stay_separate_cases():
    text = decl(1, 1) + "(assert (or (and (>= X_0 0) (<= X_0 1) (<= Y_0 0)) (and (>= X_0 0) (< X_0 1) (>= Y_0 5))))"
    cases = parse_vnnlib_text(text)
    assert len(cases) == 2
    assert [bool(c.strict_upper[0]) for c in cases] == [False, True]


def test_problems_carry_input_strictness_of_the_free_inputs(tiny_onnx, tmp_path):
    _, onnx_path = tiny_onnx()
    prop = tmp_path / "p.vnnlib"
    prop.write_text(decl(3, 2) + "(assert (> X_0 -1)) (assert (<= X_0 1)) (assert (= X_1 0.25))"
                    "(assert (>= X_2 -0.5)) (assert (< X_2 0.5)) (assert (> Y_0 Y_1))")
    (pb,) = vnnlib_problems(onnx_path, prop)
    assert pb.n_free == 2
    np.testing.assert_array_equal(pb.strict_lower, [True, False])
    np.testing.assert_array_equal(pb.strict_upper, [False, True])
    assert pb.unsafe.strict[0].tolist() == [True]
    prop.write_text(decl(3, 2) + box([-1, 0.25, -0.5], [1, 0.25, 0.5]) + "(assert (>= Y_0 Y_1))")
    (pb,) = vnnlib_problems(onnx_path, prop)
    assert pb.strict_lower is None and pb.strict_upper is None and not pb.unsafe.has_strict


def zero_net(tmp_path, n_in=1):
    """A network whose two outputs are constant zero."""
    path = tmp_path / "zero.onnx"
    save_onnx(Network((Affine(np.zeros((2, n_in)), np.zeros(2)),), (n_in,)), path)
    return path


def test_strict_output_atom_that_can_never_hold_is_not_sat(tmp_path, capsys):
    onnx_path = zero_net(tmp_path)
    out = tmp_path / "res.txt"
    prop = tmp_path / "p.vnnlib"
    prop.write_text(decl(1, 2) + box([0], [1]) + "(assert (> Y_0 Y_1))")        # 0 > 0: never
    main(["vnnlib", str(onnx_path), str(prop), "--timeout", "1", "--out", str(out)])
    assert read_result(out)[0] in ("unsat", "timeout", "unknown")
    prop.write_text(decl(1, 2) + box([0], [1]) + "(assert (>= Y_0 Y_1))")       # 0 >= 0: always
    assert main(["vnnlib", str(onnx_path), str(prop), "--timeout", "10", "--out", str(out)]) == 0
    res, x, y = read_result(out)
    assert res == "sat" and y.tolist() == [0.0, 0.0]


def test_strict_input_bound_excludes_the_only_unsafe_inputs(tmp_path, capsys):
    path = tmp_path / "id.onnx"
    save_onnx(Network((Affine(np.eye(1), np.zeros(1)),), (1,)), path)           # y = x
    out = tmp_path / "res.txt"
    prop = tmp_path / "p.vnnlib"
    prop.write_text(decl(1, 1) + "(assert (>= X_0 0)) (assert (< X_0 1.0)) (assert (>= Y_0 1.0))")
    main(["vnnlib", str(path), str(prop), "--timeout", "1", "--out", str(out)])
    assert read_result(out)[0] in ("unsat", "timeout", "unknown")
    # with the closed bound x = 1 is a counterexample
    prop.write_text(decl(1, 1) + "(assert (>= X_0 0)) (assert (<= X_0 1.0)) (assert (>= Y_0 1.0))")
    assert main(["vnnlib", str(path), str(prop), "--timeout", "10", "--out", str(out)]) == 0
    res, x, _ = read_result(out)
    assert res == "sat" and x[0] == 1.0
    # unsafe points near the strict bound: the counterexample lies strictly inside, also in float32
    prop.write_text(decl(1, 1) + "(assert (>= X_0 0)) (assert (< X_0 1.0)) (assert (> Y_0 0.5))")
    assert main(["vnnlib", str(path), str(prop), "--timeout", "10", "--out", str(out)]) == 0
    res, x, y = read_result(out)
    assert res == "sat" and 0.5 < x[0] < 1.0 and np.float32(x[0]) < 1.0 and y[0] > 0.5


def test_strict_output_counterexample_holds_strictly_on_onnxruntime(tiny_onnx, tmp_path, capsys):
    net, onnx_path = tiny_onnx()
    prop = tmp_path / "sat.vnnlib"
    prop.write_text(decl(3, 2) + box([-1, -1, 0.5], [1, 1, 0.5]) + "(assert (> Y_0 (- Y_1 100)))")
    out = tmp_path / "res.txt"
    assert main(["vnnlib", str(onnx_path), str(prop), "--timeout", "20", "--out", str(out)]) == 0
    res, x, y = read_result(out)
    assert res == "sat"
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32).reshape(1, 3)})[0].reshape(-1)
    assert float(y_ort[0]) > float(y_ort[1]) - 100
