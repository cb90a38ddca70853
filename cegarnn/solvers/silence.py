"""Keeping HiGHS quiet: no banner, no log, unless a solve asks for it (``verbose=True``).

HiGHS writes its banner ("Running HiGHS ... Copyright ...") from C++ to the process' stdout (file
descriptor 1) in the constructor of the first ``highspy.Highs`` of the process — before any option
such as ``output_flag`` can be set, so Python-level redirection cannot catch it. :func:`new_highs`
builds that first instance with descriptor 1 pointed at ``/dev/null``; later instances print no
banner, and every instance gets ``output_flag = False`` at once.
"""
from __future__ import annotations

import os
import sys
import threading

try:  # pragma: no cover - exercised through HighsBackend.available()
    import highspy
except ImportError:  # pragma: no cover
    highspy = None

_banner_lock = threading.Lock()
_banner_done = False


def _c_flush() -> None:
    """Flush C stdio buffers (``fflush(NULL)``), so that nothing printed while stdout was
    redirected comes out after it is restored."""
    try:
        import ctypes
        ctypes.CDLL(None).fflush(None)
    except Exception:  # pragma: no cover - no C library handle on this platform
        pass


def _with_stdout_discarded(fn):
    """``fn()`` with the process' file descriptor 1 pointed at ``/dev/null`` (catches C-level
    output). Anything another thread writes to fd 1 meanwhile is lost too, so keep ``fn`` short.
    If fd 1 cannot be redirected, ``fn()`` simply runs."""
    try:
        sys.stdout.flush()
    except Exception:  # pragma: no cover - a closed or replaced sys.stdout
        pass
    try:
        saved = os.dup(1)
    except OSError:  # pragma: no cover - no fd 1
        return fn()
    try:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
        except OSError:  # pragma: no cover
            return fn()
        try:
            os.dup2(devnull, 1)
        finally:
            os.close(devnull)
        try:
            return fn()
        finally:
            _c_flush()
            os.dup2(saved, 1)
    finally:
        os.close(saved)


def new_highs():
    """A ``highspy.Highs`` with all console output off (``output_flag = False``), built without
    HiGHS' banner reaching stdout (the first one of the process is built with stdout discarded)."""
    global _banner_done
    if not _banner_done:
        with _banner_lock:
            if not _banner_done:
                h = _with_stdout_discarded(_quiet_highs)
                _banner_done = True
                return h
    return _quiet_highs()


def _quiet_highs():
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


def silence_banner() -> None:
    """Make sure HiGHS' once-per-process banner has been printed to nowhere, e.g. before code that
    builds its own ``highspy.Highs`` (PuLP's HiGHS interface). No-op without highspy."""
    if highspy is not None and not _banner_done:
        new_highs()


__all__ = ["new_highs", "silence_banner"]
