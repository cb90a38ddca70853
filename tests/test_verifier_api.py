"""The verifier's shape: the method registry, Options that check themselves, verdicts as values."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from cegarnn.verifier import (FALSIFIED, METHODS, UNKNOWN, VERIFIED, Method, OptionError, Options, Reason,
                              Result, Verdict, check_method)
from cegarnn.verifier.box_solve import BoxKind, BoxOutcome

VERIFIER = Path(__file__).resolve().parents[1] / "cegarnn" / "verifier"


def test_registry_names_and_promises():
    assert list(METHODS) == ["cegar", "lp", "milp-fixed", "crown", "bab-crown", "neuron-bab", "marabou"]
    for name, m in METHODS.items():
        assert isinstance(m, Method) and callable(m.run)
        doc = m.doc.lower()
        assert "sound" in doc and "complete" in doc and "requires" in doc, name
    assert check_method("lp") is METHODS["lp"]
    with pytest.raises(ValueError, match="unknown method 'nope'; choose one of cegar, lp"):
        check_method("nope")


def test_method_names_appear_in_code_only_in_the_registry():
    """String literals equal to a method name, outside docstrings, only in methods.py (allowed: the
    bounds name 'crown' where bounds are asked for, and Marabou's counterexample tag ``found_by``)."""
    names = set(METHODS)
    for path in VERIFIER.glob("*.py"):
        if path.name == "methods.py":
            continue
        tree = ast.parse(path.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docs:
                allowed = {("context.py", "crown"), ("marabou.py", "marabou")}
                assert (path.name, node.value) in allowed, (path.name, node.lineno, node.value)


def test_marabou_requirement_is_a_property_of_the_method(monkeypatch):
    from cegarnn.verifier import marabou
    monkeypatch.setattr(marabou, "available", lambda: False)
    assert "maraboupy" in METHODS["marabou"].missing()
    with pytest.raises(RuntimeError, match="maraboupy"):
        METHODS["marabou"].require()
    assert METHODS["cegar"].missing() is None


@pytest.mark.parametrize("bad,match", [
    ({"time_limit": 0}, "time_limit must be > 0"),
    ({"policy": "random"}, "unknown policy"),
    ({"bounds": "deeppoly"}, "unknown bounds"),
    ({"backend": "gurobi"}, "unknown backend"),
    ({"threads": 0}, "threads must be >= 1"),
    ({"top_k": 0}, "top_k must be >= 1"),
    ({"batch_size": "8"}, "batch_size must be an integer"),
    ({"tol": -1e-6}, "tol must be finite and >= 0"),
])
def test_options_validate_themselves(bad, match):
    with pytest.raises(ValueError, match=match):
        Options(**bad)


def test_options_from_mapping():
    opts = Options.from_mapping({"time_limit": 5, "bounds": "interval", "backend": "pulp:PULP_CBC_CMD"})
    assert opts.time_limit == 5 and opts.bounds == "interval"
    with pytest.raises(OptionError, match="unknown verifier option\\(s\\): colour, size"):
        Options.from_mapping({"colour": "red", "size": 3, "top_k": 3})
    assert issubclass(OptionError, TypeError) and issubclass(OptionError, ValueError)


def test_verdicts_are_string_values():
    assert (VERIFIED, FALSIFIED, UNKNOWN) == ("verified", "falsified", "unknown")
    assert Verdict("verified") is VERIFIED and f"{UNKNOWN}" == "unknown"
    r = Result("unknown", Reason.TIME_LIMIT, "cegar")
    assert r.status is UNKNOWN and r.status == "unknown" and r.reason == "time limit"
    d = json.loads(r.to_json())
    assert d["status"] == "unknown" and d["reason"] == "time limit"
    assert type(r.to_dict()["status"]) is str and type(r.to_dict()["reason"]) is str
    with pytest.raises(ValueError):
        Result("proved")


def test_box_outcome():
    out = BoxOutcome(BoxKind.SPLIT, candidate=None, disjunct=None)
    assert out.kind is BoxKind.SPLIT and out.counterexample is None and out.reason == ""
