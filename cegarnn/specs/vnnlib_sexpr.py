"""VNN-LIB text: reading a (possibly gzipped) property file and splitting it into s-expressions.

Errors are :class:`VnnlibError` naming the file and line. The formulas are read by
``cegarnn.specs.vnnlib``.
"""
from __future__ import annotations

import bisect
import re
from pathlib import Path

from ..fileio import read_maybe_gzip
from .property import SpecError


class VnnlibError(SpecError):
    """A VNN-LIB file cannot be read or uses syntax/semantics outside the supported subset."""


# ===================================================================== reading
def read_vnnlib_text(path) -> str:
    """The text of a ``.vnnlib`` or ``.vnnlib.gz`` file (clear errors for missing/corrupt files)."""
    p = Path(path)
    data = read_maybe_gzip(p, "property file", VnnlibError)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VnnlibError(f"{p}: not a text file ({e})") from None


# ===================================================================== s-expressions
_TOKEN = re.compile(r";[^\n]*|\(|\)|[^\s();]+")


class SExpr(list):
    """A parenthesised expression, remembering where it starts (for error messages)."""

    __slots__ = ("pos",)


class Source:
    """The text being parsed and a fast offset -> line number map."""

    def __init__(self, text: str, name: str):
        self.text = text
        self.name = name
        self._starts = None

    def line(self, pos: int) -> int:
        if self._starts is None:
            self._starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        return bisect.bisect_right(self._starts, pos)

    def err(self, pos: int, msg: str) -> VnnlibError:
        return VnnlibError(f"{self.name}:{self.line(pos)}: {msg}")


def read_sexprs(src: Source) -> SExpr:
    """The top-level forms of ``src`` (strings for atoms, ``SExpr`` for parenthesised lists)."""
    top = SExpr()
    top.pos = 0
    cur, stack = top, []
    for m in _TOKEN.finditer(src.text):
        t = m.group()
        c = t[0]
        if c == "(":
            new = SExpr()
            new.pos = m.start()
            cur.append(new)
            stack.append(cur)
            cur = new
        elif c == ")":
            if not stack:
                raise src.err(m.start(), "unbalanced ')'")
            cur = stack.pop()
        elif c == ";":
            continue
        else:
            if not stack:
                raise src.err(m.start(), f"unexpected {t!r} outside parentheses")
            cur.append(t)
    if stack:
        raise src.err(cur.pos, "'(' is never closed (truncated file?)")
    return top

