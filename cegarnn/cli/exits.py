"""Exit codes and error lines of every command (``cegarnn-verify`` and ``cegarnn ...``).

0: a definitive answer (verified/falsified, sat/unsat); 1: no definitive answer (unknown, timeout)
— also what ``compare`` and ``report`` return when two tools/methods disagree on a definitive
answer; 2: bad input or a failure; 130: interrupted (Ctrl-C).
"""
from __future__ import annotations

import sys

EXIT_DEFINITIVE, EXIT_UNKNOWN, EXIT_ERROR = 0, 1, 2
EXIT_DISAGREEMENT = 1
EXIT_INTERRUPTED = 130


def one_line(e: BaseException) -> str:
    """The exception's message on one line (its type name if it has none)."""
    msg = " ".join(str(e).split())
    return msg or type(e).__name__


def print_error(e: BaseException | str) -> None:
    """``error: <message>`` on stderr, one line."""
    print(f"error: {one_line(e) if isinstance(e, BaseException) else e}", file=sys.stderr)


def exit_code(decided: bool) -> int:
    """``EXIT_DEFINITIVE`` for a definitive answer, else ``EXIT_UNKNOWN``."""
    return EXIT_DEFINITIVE if decided else EXIT_UNKNOWN
