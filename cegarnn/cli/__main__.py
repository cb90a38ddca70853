"""``python -m cegarnn.cli ...``: the ``cegarnn`` command (the benchmark runner starts its children so)."""
import sys

from .commands import main

sys.exit(main())
