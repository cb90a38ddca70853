"""Verification: the CEGAR loop, baselines, cheap attacks and results."""
from .result import FALSIFIED, UNKNOWN, VERIFIED, Counterexample, Result, Stats

__all__ = ["verify", "Options", "METHODS", "Result", "Counterexample", "Stats", "VERIFIED", "FALSIFIED", "UNKNOWN"]


def __getattr__(name):
    if name in ("Options", "METHODS"):
        from . import cegar
        return getattr(cegar, name)
    raise AttributeError(name)


def verify(problem_or_network, lower=None, upper=None, unsafe=None, *, method: str = "cegar",
           time_limit: float = 60.0, **options) -> Result:
    """Verify a :class:`~cegarnn.specs.problem.Problem`, or a network (IR, torch module or ONNX path)
    with an input box ``lower..upper`` and an :class:`~cegarnn.specs.property.UnsafeRegion`.

    ``method``: 'cegar' (default), 'lp', 'milp-fixed', 'crown', 'bab-crown', 'marabou'. Other keyword options
    are the fields of :class:`cegarnn.verifier.cegar.Options` (bounds, backend, policy, top_k, ...).
    Returns a :class:`Result`: 'verified' only from a proof, 'falsified' only with a counterexample
    confirmed on the IR and the original model, otherwise 'unknown' with the reason.
    """
    from ..specs.problem import Problem, box_problem
    from .cegar import Options, run
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
    unknown = set(options) - set(Options.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown verifier option(s): {', '.join(sorted(unknown))}")
    return run(problem, method, Options(time_limit=time_limit, **options))
