"""Command-line entry points; wiring only (configs and flags → plain arguments → library calls).

- ``verify.py``: ``cegarnn-verify``, the Hydra entry point (``verify_main``; configs in ``conf/``);
- ``commands.py``: ``cegarnn vnnlib | bench | compare | report`` (``main``; also ``python -m cegarnn.cli``);
- ``exits.py``: the exit codes and error lines of both.
"""


def __getattr__(name):        # cegarnn.cli.main / cegarnn.cli.verify_main without importing both modules
    if name == "main":
        from .commands import main
        return main
    if name == "verify_main":
        from .verify import verify_main
        return verify_main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
