"""Verification: the CEGAR loop, baselines, cheap attacks and results."""
from .result import FALSIFIED, UNKNOWN, VERIFIED, Counterexample, Reason, Result, Stats, Verdict

__all__ = ["verify", "run", "Options", "OptionError", "METHODS", "DEFAULT_METHOD", "Method", "check_method",
           "Result", "Counterexample", "Stats", "Verdict", "Reason", "VERIFIED", "FALSIFIED", "UNKNOWN"]

# imported on first use: they pull in the bounds providers, the encoder and the solver registry
_LAZY = {"Options": ".options", "OptionError": ".options", "POLICIES": ".options",
         "METHODS": ".methods", "DEFAULT_METHOD": ".methods", "Method": ".methods", "check_method": ".methods",
         "run": ".cegar"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(name)


def verify(problem_or_network, lower=None, upper=None, unsafe=None, *, method: str | None = None,
           time_limit: float = 60.0, **options) -> Result:
    """Verify a :class:`~cegarnn.specs.problem.Problem`, or a network (IR, torch module or ONNX path)
    with an input box ``lower..upper`` and an :class:`~cegarnn.specs.property.UnsafeRegion`.

    ``method``: a name in :data:`METHODS` — 'cegar' (the default), 'lp', 'milp-fixed', 'crown',
    'bab-crown', 'marabou'. Other keyword options are the fields of :class:`Options` (bounds,
    backend, policy, top_k, ...); an unknown one raises :class:`OptionError` (a ``TypeError``).
    Returns a :class:`Result`: 'verified' only from a proof, 'falsified' only with a counterexample
    confirmed on the IR and the original model, otherwise 'unknown' with the reason.
    """
    from ..specs.problem import Problem, box_problem
    from .cegar import run
    from .options import Options
    if isinstance(problem_or_network, Problem):
        if lower is not None or upper is not None or unsafe is not None:
            raise TypeError("pass either a Problem or a network with lower/upper/unsafe, not both")
        problem = problem_or_network
    else:
        if lower is None or upper is None or unsafe is None:
            raise TypeError("a network needs lower, upper and unsafe (an UnsafeRegion)")
        from ..network.ir import Network
        net = problem_or_network
        ref = None
        if not isinstance(net, Network):
            from ..network import load_network
            from ..specs.problem import model_reference
            ref = model_reference(net)
            net = load_network(net)
        problem = box_problem(net, lower, upper, unsafe, reference=ref)
    return run(problem, method, Options.from_mapping({"time_limit": time_limit, **options}))
