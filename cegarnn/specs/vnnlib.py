"""VNN-LIB properties: parse a property into input boxes with unsafe output regions (the Problems
of a property and a network: ``cegarnn.specs.vnnlib_problems``).

Supported: the subset used by VNN-COMP.

- ``(declare-const X_i Real)`` / ``(declare-const Y_i Real)`` (inputs / outputs, indices 0..n-1);
- ``(assert F)`` where ``F`` is built from ``and``, ``or`` and comparisons ``<=``, ``>=``, ``<``,
  ``>``, ``=``, chained comparisons ``(<= a b c)``, ``true``/``false``;
- linear terms: numbers in any float notation (``-1``, ``.5``, ``1.2e-3``), variables,
  ``(+ ...)``, ``(- a)``, ``(- a b ...)``, ``(* c ... t)`` with at most one non-constant factor,
  ``(/ t c)`` with a constant divisor;
- ``set-logic``, ``set-info``, ``set-option``, ``check-sat``, ``get-model``, ``exit`` are ignored;
  comments start with ``;``; a file ending in ``.gz`` (or starting with the gzip magic) is unzipped.

Semantics: the asserts are a conjunction; the formula is put in disjunctive normal form. Every
conjunct holds bounds on single inputs (``a·X_i <= c``) and linear constraints on outputs only.
Conjuncts with the same input box are merged into one :class:`~cegarnn.specs.property.UnsafeRegion`
(their output parts become its disjuncts), so the result is one case per input box: VNN-COMP's
input disjunctions ``(assert (or (and X-bounds... Y-constraints...) ...))`` give several cases. A
conjunct with no output constraint makes the whole box unsafe (row ``0·y <= 0``).

Strict comparisons (``<``, ``>``; ``=`` is non-strict) are recorded, on output rows
(``UnsafeRegion.strict``) and on input bounds (``VnnlibCase.strict_lower/strict_upper``, passed on
as ``Problem.strict_lower/strict_upper``). Proofs read them as non-strict — the unsafe set and the
input box grow by their boundary only, so an ``unsat`` stays true. A counterexample (``sat``) must
satisfy every strict atom strictly: on the float64 IR and on the executed (float32 onnxruntime)
ONNX model for output atoms, and with the input strictly inside a strict input bound (also once
rounded to float32). A strict bound that pins an input (``X_i > c`` and ``X_i < c``) is an empty
input region, an error like ``lower > upper``.

Not supported (a :class:`VnnlibError` naming the line): constraints over several inputs, constraints
mixing inputs and outputs, non-linear terms, other commands, undeclared variables, inputs without
both bounds, empty input regions.
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple, Optional

import numpy as np

from .property import UnsafeRegion
from .vnnlib_sexpr import Source, VnnlibError, read_sexprs, read_vnnlib_text

__all__ = ["VnnlibError", "VnnlibCase", "parse_vnnlib", "parse_vnnlib_text", "read_vnnlib_text", "vnnlib_sizes"]

MAX_CONJUNCTS = 200_000


class _CaseBox(NamedTuple):
    lower: np.ndarray
    upper: np.ndarray
    unsafe: UnsafeRegion


class VnnlibCase(_CaseBox):
    """One input box ``lower <= x <= upper`` and the unsafe outputs for inputs in it.

    Unpacks as ``(lower, upper, unsafe)``. ``strict_lower`` / ``strict_upper``: boolean masks of
    the input bounds that are strict (``lower < x`` / ``x < upper``); all False by default.
    """

    def __new__(cls, lower, upper, unsafe, strict_lower=None, strict_upper=None):
        self = super().__new__(cls, lower, upper, unsafe)
        n = np.asarray(lower).shape[0]
        self.strict_lower = np.zeros(n, dtype=bool) if strict_lower is None else np.asarray(strict_lower, dtype=bool)
        self.strict_upper = np.zeros(n, dtype=bool) if strict_upper is None else np.asarray(strict_upper, dtype=bool)
        return self

    @classmethod
    def _make(cls, iterable):
        return cls(*iterable)

    def _replace(self, **kw):
        args = {"lower": self.lower, "upper": self.upper, "unsafe": self.unsafe,
                "strict_lower": self.strict_lower, "strict_upper": self.strict_upper}
        args.update(kw)
        return VnnlibCase(**args)

    def __repr__(self):
        return (f"VnnlibCase(lower={self.lower!r}, upper={self.upper!r}, unsafe={self.unsafe!r}, "
                f"strict_lower={self.strict_lower!r}, strict_upper={self.strict_upper!r})")


_VAR = re.compile(r"([XY])_(\d+)\Z")
_IGNORED = {"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"}
_CMP = {"<=", ">=", "<", ">", "="}


# ===================================================================== the parser
class _Parser:
    def __init__(self, src: Source):
        self.src = src
        self.vars: dict[str, tuple[int, int]] = {}      # name -> (0 for X / 1 for Y, index)
        self.n = [0, 0]
        self.atoms: list = []                           # (xcoefs, ycoefs, rhs, pos, strict): sum <= rhs (< if strict)

    # ------------------------------------------------------------ terms
    def number(self, t: str, pos: int) -> Optional[float]:
        try:
            v = float(t)
        except ValueError:
            return None
        if not math.isfinite(v):
            raise self.src.err(pos, f"non-finite number {t!r}")
        return v

    def linear(self, e, pos: int) -> tuple[dict, float]:
        """``e`` as (coefficients {var key: coef}, constant)."""
        if isinstance(e, str):
            v = self.vars.get(e)
            if v is not None:
                return {v: 1.0}, 0.0
            num = self.number(e, pos)
            if num is not None:
                return {}, num
            if _VAR.match(e):
                raise self.src.err(pos, f"undeclared variable {e}")
            raise self.src.err(pos, f"unknown symbol {e!r} in a term")
        pos = e.pos
        if not e or not isinstance(e[0], str):
            raise self.src.err(pos, "malformed term")
        op, args = e[0], e[1:]
        if op == "+":
            coefs, const = {}, 0.0
            for a in args:
                c, k = self.linear(a, pos)
                for key, val in c.items():
                    coefs[key] = coefs.get(key, 0.0) + val
                const += k
            return coefs, const
        if op == "-":
            if not args:
                raise self.src.err(pos, "'-' needs at least one argument")
            coefs, const = self.linear(args[0], pos)
            if len(args) == 1:
                return {key: -val for key, val in coefs.items()}, -const
            coefs = dict(coefs)
            for a in args[1:]:
                c, k = self.linear(a, pos)
                for key, val in c.items():
                    coefs[key] = coefs.get(key, 0.0) - val
                const -= k
            return coefs, const
        if op == "*":
            factor, term = 1.0, None
            for a in args:
                c, k = self.linear(a, pos)
                if c:
                    if term is not None:
                        raise self.src.err(pos, "non-linear product of variables is not supported")
                    term = (c, k)
                else:
                    factor *= k
            if term is None:
                return {}, factor
            c, k = term
            return {key: factor * val for key, val in c.items()}, factor * k
        if op == "/":
            if len(args) < 2:
                raise self.src.err(pos, "'/' needs at least two arguments")
            coefs, const = self.linear(args[0], pos)
            for a in args[1:]:
                c, k = self.linear(a, pos)
                if c:
                    raise self.src.err(pos, "division by a variable is not supported")
                if k == 0:
                    raise self.src.err(pos, "division by zero")
                coefs = {key: val / k for key, val in coefs.items()}
                const /= k
            return coefs, const
        raise self.src.err(pos, f"unsupported operator {op!r} in a term")

    # ------------------------------------------------------------ formulas -> DNF over atom ids
    def atom(self, lhs, rhs, pos: int, strict: bool = False) -> int:
        """Add the atom ``lhs <= rhs`` (``lhs < rhs`` if ``strict``); return its id."""
        c1, k1 = lhs
        c2, k2 = rhs
        coefs = dict(c1)
        for key, val in c2.items():
            coefs[key] = coefs.get(key, 0.0) - val
        xc, yc = {}, {}
        for (kind, i), val in coefs.items():
            if val != 0.0:
                (yc if kind else xc)[i] = val
        self.atoms.append((xc, yc, k2 - k1, pos, strict))
        return len(self.atoms) - 1

    def dnf(self, e, pos: int) -> list:
        if isinstance(e, str):
            if e == "true":
                return [[]]
            if e == "false":
                return []
            raise self.src.err(pos, f"expected a formula, got {e!r}")
        pos = e.pos
        if not e or not isinstance(e[0], str):
            raise self.src.err(pos, "malformed formula")
        op, args = e[0], e[1:]
        if op in _CMP:
            if len(args) < 2:
                raise self.src.err(pos, f"{op!r} needs at least two arguments")
            terms = [self.linear(a, pos) for a in args]
            ids = []
            strict = op in ("<", ">")
            for a, b in zip(terms, terms[1:]):
                if op in ("<=", "<"):
                    ids.append(self.atom(a, b, pos, strict))
                elif op in (">=", ">"):
                    ids.append(self.atom(b, a, pos, strict))
                else:
                    ids.append(self.atom(a, b, pos))
                    ids.append(self.atom(b, a, pos))
            return [ids]
        if op == "and":
            out = [[]]
            for a in args:
                d = self.dnf(a, pos)
                if len(d) == 1:
                    for conj in out:
                        conj.extend(d[0])
                    continue
                if len(out) * len(d) > MAX_CONJUNCTS:
                    raise self.src.err(pos, f"formula too large: more than {MAX_CONJUNCTS} cases in normal form")
                out = [c1 + c2 for c1 in out for c2 in d]
            return out
        if op == "or":
            out = []
            for a in args:
                out.extend(self.dnf(a, pos))
            return out
        if op == "not":
            raise self.src.err(pos, "'not' is not supported (write the negated comparison)")
        raise self.src.err(pos, f"unsupported operator {op!r} in a formula")

    # ------------------------------------------------------------ commands
    def declare(self, e):
        pos = e.pos
        if len(e) != 3 or not isinstance(e[1], str) or not isinstance(e[2], str):
            raise self.src.err(pos, "malformed declare-const (expected (declare-const X_i Real))")
        name, sort = e[1], e[2]
        m = _VAR.match(name)
        if m is None:
            raise self.src.err(pos, f"unsupported variable name {name!r} (expected X_<i> or Y_<i>)")
        if sort != "Real":
            raise self.src.err(pos, f"unsupported sort {sort!r} for {name} (expected Real)")
        if name in self.vars:
            raise self.src.err(pos, f"{name} declared twice")
        kind = 0 if m.group(1) == "X" else 1
        self.vars[name] = (kind, int(m.group(2)))
        self.n[kind] = max(self.n[kind], int(m.group(2)) + 1)

    def run(self) -> list[VnnlibCase]:
        src = self.src
        common: list[int] = []
        multi: list[list] = []
        any_assert = False
        for form in read_sexprs(src):
            if isinstance(form, str) or not form or not isinstance(form[0], str):
                raise src.err(getattr(form, "pos", 0), "malformed command")
            head = form[0]
            if head == "declare-const":
                self.declare(form)
            elif head == "assert":
                if len(form) != 2:
                    raise src.err(form.pos, "assert takes exactly one formula")
                any_assert = True
                d = self.dnf(form[1], form.pos)
                if len(d) == 1:
                    common.extend(d[0])
                else:
                    multi.append(d)
            elif head in _IGNORED:
                continue
            else:
                raise src.err(form.pos, f"unsupported command {head!r}")
        nx, ny = self.n
        for kind, letter in ((0, "X"), (1, "Y")):
            declared = {i for (k, i) in self.vars.values() if k == kind}
            if len(declared) != self.n[kind]:
                missing = min(set(range(self.n[kind])) - declared)
                raise VnnlibError(f"{src.name}: {letter}_{missing} is not declared but {letter}_{self.n[kind] - 1} is "
                                  f"(indices must be 0..n-1)")
        if nx == 0:
            raise VnnlibError(f"{src.name}: no input variables (X_i) declared")
        if ny == 0:
            raise VnnlibError(f"{src.name}: no output variables (Y_i) declared")
        if not any_assert:
            raise VnnlibError(f"{src.name}: no assert: the property says nothing")

        conjuncts = [[]]
        for d in multi:
            if len(conjuncts) * len(d) > MAX_CONJUNCTS:
                raise VnnlibError(f"{src.name}: formula too large: more than {MAX_CONJUNCTS} cases in normal form")
            conjuncts = [c1 + c2 for c1 in conjuncts for c2 in d]

        base = self._box(common, _BoxState.empty(nx), [])
        if base is None:          # the common constraints are contradictory constants: nothing is unsafe
            return []
        cases: dict = {}
        order = []
        for conj in conjuncts:
            box0, rows = base
            res = self._box(conj, box0.copy(), list(rows))
            if res is None:
                continue
            b, rows = res
            self._check_box(b)
            key = (b.lo.tobytes(), b.hi.tobytes(), b.lo_strict.tobytes(), b.hi_strict.tobytes())
            if key not in cases:
                cases[key] = (b, [], [])
                order.append(key)
            if rows:
                C = np.zeros((len(rows), ny))
                for r, (yc, _, _) in enumerate(rows):
                    for i, v in yc.items():
                        C[r, i] = v
                d = np.array([rhs for _, rhs, _ in rows])
                strict = np.array([st for _, _, st in rows], dtype=bool)
            else:                                           # no output constraint: the whole box is unsafe
                C, d, strict = np.zeros((1, ny)), np.zeros(1), np.zeros(1, dtype=bool)
            cases[key][1].append((C, d))
            cases[key][2].append(strict)
        out = []
        for key in order:
            b, disj, strict = cases[key]
            out.append(VnnlibCase(b.lo, b.hi, UnsafeRegion(tuple(disj), ny, strict=tuple(strict)),
                                  strict_lower=b.lo_strict, strict_upper=b.hi_strict))
        return out

    def _box(self, atom_ids, b: "_BoxState", rows):
        """Apply atoms to a box / output rows (in place); None if a constant atom is false.

        The tighter bound wins; at equal values a strict bound makes the bound strict."""
        atoms = self.atoms
        lo, hi, lo_pos, hi_pos = b.lo, b.hi, b.lo_pos, b.hi_pos
        for a in atom_ids:
            xc, yc, rhs, pos, strict = atoms[a]
            if xc and yc:
                raise self.src.err(pos, "constraints mixing inputs (X) and outputs (Y) are not supported")
            if yc:
                rows.append((yc, rhs, strict))
            elif xc:
                if len(xc) != 1:
                    raise self.src.err(pos, "linear constraints over several inputs are not supported "
                                            "(only bounds on single X_i)")
                (i, c), = xc.items()
                v = rhs / c + 0.0         # no -0.0
                if c > 0:
                    if v < hi[i]:
                        hi[i] = v
                        hi_pos[i] = pos
                        b.hi_strict[i] = strict
                    elif v == hi[i] and strict and not b.hi_strict[i]:
                        b.hi_strict[i] = True
                        hi_pos[i] = pos
                elif v > lo[i]:
                    lo[i] = v
                    lo_pos[i] = pos
                    b.lo_strict[i] = strict
                elif v == lo[i] and strict and not b.lo_strict[i]:
                    b.lo_strict[i] = True
                    lo_pos[i] = pos
            elif rhs < 0 or (strict and rhs <= 0):     # constant atom 0 <= rhs (0 < rhs) is false
                return None
        return b, rows

    def _check_box(self, b: "_BoxState"):
        src = self.src
        lo, hi, lo_pos, hi_pos = b.lo, b.hi, b.lo_pos, b.hi_pos
        bad = np.flatnonzero(~np.isfinite(lo))
        if bad.size:
            raise VnnlibError(f"{src.name}: input X_{bad[0]} has no lower bound (only bounded input boxes are supported)")
        bad = np.flatnonzero(~np.isfinite(hi))
        if bad.size:
            raise VnnlibError(f"{src.name}: input X_{bad[0]} has no upper bound (only bounded input boxes are supported)")
        bad = np.flatnonzero(lo > hi)
        if bad.size:
            i = int(bad[0])
            raise VnnlibError(f"{src.name}: empty input region: X_{i} >= {float(lo[i])!r} (line {src.line(int(lo_pos[i]))}) "
                              f"but X_{i} <= {float(hi[i])!r} (line {src.line(int(hi_pos[i]))})")
        bad = np.flatnonzero((lo == hi) & (b.lo_strict | b.hi_strict))
        if bad.size:
            i = int(bad[0])
            rel_lo, rel_hi = (">" if b.lo_strict[i] else ">="), ("<" if b.hi_strict[i] else "<=")
            raise VnnlibError(f"{src.name}: empty input region: X_{i} {rel_lo} {float(lo[i])!r} (line {src.line(int(lo_pos[i]))}) "
                              f"and X_{i} {rel_hi} {float(hi[i])!r} (line {src.line(int(hi_pos[i]))})")


class _BoxState:
    """Input bounds being collected: values, where they were set (for errors), strictness."""

    __slots__ = ("lo", "hi", "lo_pos", "hi_pos", "lo_strict", "hi_strict")

    def __init__(self, lo, hi, lo_pos, hi_pos, lo_strict, hi_strict):
        self.lo, self.hi, self.lo_pos, self.hi_pos = lo, hi, lo_pos, hi_pos
        self.lo_strict, self.hi_strict = lo_strict, hi_strict

    @classmethod
    def empty(cls, n: int) -> "_BoxState":
        return cls(np.full(n, -np.inf), np.full(n, np.inf), np.full(n, -1, dtype=np.int64),
                   np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))

    def copy(self) -> "_BoxState":
        return _BoxState(self.lo.copy(), self.hi.copy(), self.lo_pos.copy(), self.hi_pos.copy(),
                         self.lo_strict.copy(), self.hi_strict.copy())


def parse_vnnlib_text(text: str, name: str = "<vnnlib>") -> list[VnnlibCase]:
    """Parse VNN-LIB text into cases (one per input box); see the module docstring."""
    return _Parser(Source(text, name)).run()


def parse_vnnlib(path) -> list[VnnlibCase]:
    """Parse a ``.vnnlib`` / ``.vnnlib.gz`` file into cases (one per input box)."""
    return parse_vnnlib_text(read_vnnlib_text(path), name=str(path))


def vnnlib_sizes(cases: list[VnnlibCase]) -> tuple[int, int]:
    return (cases[0].lower.shape[0], cases[0].unsafe.n_outputs) if cases else (0, 0)
