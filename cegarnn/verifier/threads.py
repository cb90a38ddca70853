"""The thread limit of a run — numpy's BLAS (threadpoolctl) and torch's intra-op threads — without
importing torch for it.

A run needs torch only for some bounds providers (auto_LiRPA) or a torch reference model, so torch
is imported, if at all, in the middle of the run. :func:`limit_threads` sets torch's thread count
at once when torch is already loaded, and otherwise right after ``import torch`` completes,
through a one-shot import hook that exists only while the run does. Either way the count torch
had before is restored at the end.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from contextlib import contextmanager


class _Then(importlib.abc.Loader):
    """Delegates to ``loader``; calls ``callback(module)`` once the module has been executed."""

    def __init__(self, loader, callback):
        self._loader, self._callback = loader, callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        module.__loader__ = module.__spec__.loader = self._loader     # leave no trace in the module
        self._callback(module)

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _AfterImport(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` entry that finds no module itself: for ``name`` it removes itself, lets
    the other finders find the module and wraps its loader so that ``callback`` runs after it."""

    def __init__(self, name: str, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        self.remove()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Then(spec.loader, self.callback)
        return spec

    def remove(self):
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass


@contextmanager
def limit_threads(n: int):
    """Run the block with at most ``n`` BLAS threads and ``n`` torch threads (torch imported or not)."""
    from threadpoolctl import threadpool_limits
    restore = []

    def limit(torch):
        restore.append((torch, torch.get_num_threads()))
        torch.set_num_threads(n)

    hook = None
    if "torch" in sys.modules:
        limit(sys.modules["torch"])
    else:
        hook = _AfterImport("torch", limit)
        sys.meta_path.insert(0, hook)
    try:
        with threadpool_limits(limits=n):   # numpy's BLAS (10x slower when oversubscribed)
            yield
    finally:
        if hook is not None:
            hook.remove()
        for torch, old in restore:
            torch.set_num_threads(old)
