"""The ``marabou`` baseline: the same problem handed to the Marabou SMT verifier (``maraboupy``).

The spec network (outputs ``C_all y - d_all``) is written as one Marabou input query: a variable
per neuron, an equation per affine output, Marabou's own ReLU and sigmoid constraints, the input
box as variable bounds, and the unsafe region as one disjunction (disjunct ``j``: every row of
group ``j`` ``<= 0``). Marabou's ``unsat`` is its proof (``verified``); its ``sat`` assignment
(seen on ReLU networks; with sigmoids Marabou 2.0 answers ``UNKNOWN`` instead) counts only once
:func:`~cegarnn.verifier.confirm.confirm` reproduces it on the IR and the original model
(``falsified``), otherwise the answer is ``unknown``. Marabou takes whole seconds as its timeout,
so it gets ``floor`` of the time left after the shared attack; it runs in a forked child that is
killed at the time limit, because its preprocessing overruns its own timeout.
"""
from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from ..network.ir import Affine, Network, ReLU, Sigmoid
from ..specs.problem import Problem
from .confirm import confirm
from .result import FALSIFIED, UNKNOWN, VERIFIED, Result, Stats

INSTALL_HINT = ("the marabou method needs maraboupy (Linux x86-64, Python <= 3.12): "
                "pip install 'maraboupy==2.0.0'")


def available() -> bool:
    """True iff maraboupy's compiled core imports."""
    try:
        from maraboupy import MarabouCore  # noqa: F401
    except ImportError:
        return False
    return True


def _core():
    try:
        from maraboupy import MarabouCore
    except ImportError as e:
        raise RuntimeError(f"{INSTALL_HINT} ({e})") from e
    return MarabouCore


def check_layers(network: Network) -> None:
    """Raise ``ValueError`` for a layer Marabou has no constraint for (e.g. tanh)."""
    for i, layer in enumerate(network.layers):
        if not isinstance(layer, (Affine, ReLU, Sigmoid)):
            raise ValueError(f"layer {i}: Marabou has no constraint for {type(layer).__name__}")


def build_query(network: Network, lower: np.ndarray, upper: np.ndarray, groups: list):
    """Marabou ``InputQuery`` for: some input in ``lower..upper`` makes every output row of some
    group ``<= 0``. Returns ``(query, input_vars, output_vars)``. Raises ``ValueError`` for layers
    Marabou has no constraint for (tanh)."""
    check_layers(network)
    core = _core()
    ipq = core.InputQuery()
    n_vars = 0

    def new_vars(n):
        nonlocal n_vars
        v = np.arange(n_vars, n_vars + n)
        n_vars += n
        return v

    equations, relus, sigmoids = [], [], []
    inputs = cur = new_vars(network.n_inputs)
    for layer in network.layers:
        if isinstance(layer, Affine):
            out = new_vars(layer.out_size)
            W = sp.csr_matrix(layer.W)
            for r in range(layer.out_size):
                eq = core.Equation(core.Equation.EQ)       # sum_c W[r,c] x_c - y_r = -b_r
                row = slice(W.indptr[r], W.indptr[r + 1])
                for c, w in zip(W.indices[row], W.data[row]):
                    if w != 0.0:
                        eq.addAddend(float(w), int(cur[c]))
                eq.addAddend(-1.0, int(out[r]))
                eq.setScalar(-float(layer.b[r]))
                equations.append(eq)
            cur = out
        else:                                               # ReLU or Sigmoid (check_layers)
            out = new_vars(len(cur))
            (relus if isinstance(layer, ReLU) else sigmoids).extend(zip(cur.tolist(), out.tolist()))
            cur = out
    ipq.setNumberOfVariables(n_vars)
    for k, v in enumerate(inputs):
        ipq.markInputVariable(int(v), k)
        ipq.setLowerBound(int(v), float(lower[k]))
        ipq.setUpperBound(int(v), float(upper[k]))
    for k, v in enumerate(cur):
        ipq.markOutputVariable(int(v), k)
    for eq in equations:
        ipq.addEquation(eq)
    for a, b in relus:
        core.addReluConstraint(ipq, a, b)
    for a, b in sigmoids:
        core.addSigmoidConstraint(ipq, a, b)
    disjuncts = []
    for g in groups:
        conj = []
        for r in g:
            eq = core.Equation(core.Equation.LE)            # output row <= 0
            eq.addAddend(1.0, int(cur[r]))
            eq.setScalar(0.0)
            conj.append(eq)
        disjuncts.append(conj)
    if len(disjuncts) == 1:
        for eq in disjuncts[0]:
            ipq.addEquation(eq)
    else:
        core.addDisjunctionConstraint(ipq, disjuncts)
    return ipq, inputs, cur


def _solve_in_child(spec_net: Network, lower, upper, groups, seconds: int, stop_at: float):
    """Build and solve the query in a forked child, killed at ``stop_at`` (``time.perf_counter``)
    if it has not answered: Marabou's preprocessing does not watch the clock (measured: 22 s
    under a 4 s timeout). Returns ``(exit_code, input_values or None, encode_seconds, solve_seconds)``;
    exit_code ``'KILLED'`` when the child had to be stopped."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")          # no re-import; the child only runs Marabou's C++ core
    recv, send = ctx.Pipe(duplex=False)

    def child():
        try:
            t = time.perf_counter()
            core = _core()
            ipq, inputs, _ = build_query(spec_net, lower, upper, groups)
            t_enc = time.perf_counter() - t
            send.send(t_enc)
            options = core.Options()
            options._timeoutInSeconds = int(seconds)
            options._verbosity = 0
            options._numWorkers = 1
            options._numBlasThreads = 1
            t = time.perf_counter()
            exit_code, values, _ = core.solve(ipq, options, "")
            z = [values[int(v)] for v in inputs] if exit_code == "sat" else None
            send.send((exit_code, z, t_enc, time.perf_counter() - t))
        except BaseException as e:        # noqa: BLE001 - reported to the parent, never raised in the child
            send.send(("ERROR: " + f"{type(e).__name__}: {e}", None, 0.0, 0.0))
        finally:
            send.close()

    t0 = time.perf_counter()
    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    send.close()
    t_enc = 0.0
    try:
        while recv.poll(max(0.0, stop_at - time.perf_counter())):
            msg = recv.recv()
            if not isinstance(msg, tuple):
                t_enc = msg                 # the query is built
                continue
            return msg
        return "KILLED", None, t_enc, time.perf_counter() - t0 - t_enc
    except EOFError:                        # the child died without an answer
        return (f"ERROR: Marabou process exited with code {proc.exitcode}", None, t_enc,
                time.perf_counter() - t0 - t_enc)
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        recv.close()


#: the reason of an untrusted Marabou unsat
UNSAT_UNCHECKED = "Marabou answered unsat, which nothing checks (trust_unchecked=True counts it as verified)"


def solve(problem: Problem, spec_net: Network, groups: list, seconds: int, stats: Stats, method: str,
          start: float, stop_at: float, trust_unsat: bool = False) -> Result:
    """One Marabou call on the whole box with Marabou's timeout ``seconds`` (>= 1, whole seconds);
    the call is stopped at ``stop_at`` (``time.perf_counter``) whatever Marabou is doing.
    Marabou's ``unsat`` is ``verified`` only with ``trust_unsat`` (nothing checks it; maraboupy
    2.0.0 answered ``unsat`` where we confirmed counterexamples); else ``unknown`` saying so."""
    _core()
    check_layers(spec_net)              # here, not only in the child: a clear error for the caller
    exit_code, z, t_enc, t_solve = _solve_in_child(spec_net, problem.lower, problem.upper, groups, seconds, stop_at)
    stats.time_encode += t_enc
    stats.time_solver += t_solve
    stats.solver_calls += 1
    stats.iterations += 1

    def done(status, reason, cex=None):
        stats.wall_time = time.perf_counter() - start
        return Result(status, reason, method, cex, stats, problem.name)

    if exit_code == "unsat":
        if trust_unsat:
            return done(VERIFIED, "proved by Marabou (unsat, unchecked)")
        return done(UNKNOWN, UNSAT_UNCHECKED)
    if exit_code == "sat":
        cex = confirm(problem, np.asarray(z, dtype=np.float64), "marabou")
        if cex is not None:
            return done(FALSIFIED, "Marabou counterexample confirmed", cex)
        return done(UNKNOWN, "Marabou's sat assignment is not confirmed on the IR/original model")
    if exit_code in ("TIMEOUT", "KILLED"):
        return done(UNKNOWN, "time limit (Marabou timeout)" if exit_code == "TIMEOUT"
                    else "time limit (Marabou stopped: it overran its own timeout)")
    if exit_code == "UNKNOWN" and any(isinstance(l, Sigmoid) for l in spec_net.layers):
        return done(UNKNOWN, "Marabou answered UNKNOWN (it decides sigmoid constraints only by refuting; "
                             "it returns no assignment)")
    return done(UNKNOWN, f"Marabou answered {exit_code!r}")


def whole_seconds(remaining: float) -> int:
    """Marabou's timeout for ``remaining`` seconds: whole seconds, at least 1 (0 would mean none)."""
    return max(1, int(math.floor(remaining)))
