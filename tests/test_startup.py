"""Start-up of `cegarnn vnnlib` (issue 15, item 4): the modules on its path import no heavy library
(torch, onnxruntime, auto_LiRPA, ...) until a run needs it, and the verdicts stay the same.
Nothing here is timed; experiments/bench_startup.py measures the times."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cegarnn.cli.commands import main
from cegarnn.vnncomp.runner import read_result

ROOT = Path(__file__).resolve().parents[1]
VNN2021 = ROOT.parent / "shared" / "benchmarks" / "vnncomp2021"
MNISTFC = VNN2021 / "mnistfc"

HEAVY = ("torch", "onnxruntime", "auto_LiRPA", "matplotlib", "hydra", "pulp", "highspy", "onnx", "ml_dtypes")
VNNLIB_PATH = ("cegarnn", "cegarnn.cli.commands", "cegarnn.cli", "cegarnn.vnncomp.runner",
               "cegarnn.specs.vnnlib_problems", "cegarnn.network", "cegarnn.network.reference",
               "cegarnn.verifier", "cegarnn.verifier.cegar", "cegarnn.verifier.methods",
               "cegarnn.verifier.context", "cegarnn.verifier.attack", "cegarnn.verifier.branching",
               "cegarnn.verifier.box_solve", "cegarnn.verifier.threads", "cegarnn.bounds", "cegarnn.solvers",
               "cegarnn.encoding")


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter (nothing imported yet); its stdout."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_vnnlib_path_modules_import_no_heavy_library():
    out = _python("import importlib, json, sys\n"
                  f"for m in {VNNLIB_PATH!r}: importlib.import_module(m)\n"
                  f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert json.loads(out) == []


def _tiny_instance(tiny_onnx, tmp_path, unsafe: str):
    _, onnx_path = tiny_onnx()
    prop = tmp_path / "p.vnnlib"
    prop.write_text("".join(f"(declare-const X_{i} Real)\n" for i in range(3))
                    + "".join(f"(declare-const Y_{i} Real)\n" for i in range(2))
                    + "".join(f"(assert (>= X_{i} -0.1))\n(assert (<= X_{i} 0.1))\n" for i in range(3))
                    + f"(assert {unsafe})\n")
    return onnx_path, prop


# what a run has imported when its first bound call starts, and at the end (a fresh interpreter)
_PROBE = """
import json, sys
from cegarnn.verifier import context
seen, orig = {{}}, context.RunContext.bounds
def bounds(self, *a, **k):
    seen.setdefault("first_bound", [m for m in {heavy!r} if m in sys.modules])
    return orig(self, *a, **k)
context.RunContext.bounds = bounds
from cegarnn.cli.commands import main
rc = main({argv!r})
seen["end"] = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps(seen))
"""


def _probe(argv) -> dict:
    return json.loads(_python(_PROBE.format(heavy=HEAVY, argv=[str(a) for a in argv])).splitlines()[-1])


def test_interval_run_imports_no_torch_and_onnxruntime_only_after_the_first_bound(tiny_onnx, tmp_path):
    net, prop = _tiny_instance(tiny_onnx, tmp_path, "(or (>= Y_0 1000) (<= Y_1 -1000))")     # unsat
    out = tmp_path / "res.txt"
    seen = _probe(["vnnlib", net, prop, "--timeout", "30", "--out", out, "-o", "bounds=interval"])
    assert read_result(out)[0] == "unsat"
    assert seen["first_bound"] == []                          # nothing heavy before the first bound
    assert "torch" not in seen["end"] and "auto_LiRPA" not in seen["end"]
    assert "onnxruntime" in seen["end"]                       # the conversion check, before the answer


def test_default_run_imports_no_torch(tiny_onnx, tmp_path):
    # bounds='auto' is our numpy CROWN ('ir-crown'): neither torch nor auto_LiRPA is ever imported
    net, prop = _tiny_instance(tiny_onnx, tmp_path, "(or (>= Y_0 1000) (<= Y_1 -1000))")
    out = tmp_path / "res.txt"
    seen = _probe(["vnnlib", net, prop, "--timeout", "30", "--out", out])
    assert read_result(out)[0] == "unsat"
    assert "torch" not in seen["first_bound"] and "onnxruntime" not in seen["first_bound"]
    assert "torch" not in seen["end"] and "auto_LiRPA" not in seen["end"]
    assert "onnx" not in seen["end"] and "ml_dtypes" not in seen["end"]     # read by onnx_wire


def test_loading_committed_models_does_not_import_onnx():
    models = ["experiments/models/classifier.onnx", "experiments/models/shifts/classifier_conv.onnx"]
    if MNISTFC.is_dir():
        models.append(str(MNISTFC / "mnist-net_256x2.onnx"))
    out = _python("import json, sys\n"
                  "from cegarnn.network import load_onnx\n"
                  f"nets = [load_onnx(p) for p in {models!r}]\n"
                  "print(json.dumps([[[n.n_inputs, n.n_outputs] for n in nets],"
                  " [m for m in ('onnx', 'ml_dtypes') if m in sys.modules]]))")
    sizes, loaded = json.loads(out)
    assert sizes[:2] == [[784, 10], [784, 10]]
    assert loaded == []


def test_explicit_crown_still_means_auto_lirpa(tiny_onnx, tmp_path):
    pytest.importorskip("torch")
    net, prop = _tiny_instance(tiny_onnx, tmp_path, "(or (>= Y_0 1000) (<= Y_1 -1000))")
    out = tmp_path / "res.txt"
    seen = _probe(["vnnlib", net, prop, "--timeout", "30", "--out", out, "-o", "bounds=crown"])
    assert read_result(out)[0] == "unsat"
    assert "auto_LiRPA" in seen["end"]


def test_sat_from_the_numpy_attack_is_confirmed_on_onnxruntime(tiny_onnx, tmp_path):
    net, prop = _tiny_instance(tiny_onnx, tmp_path, "(>= Y_0 (- Y_1 100))")                 # sat everywhere
    out = tmp_path / "res.txt"
    seen = _probe(["vnnlib", net, prop, "--timeout", "30", "--out", out, "--stats", tmp_path / "s.json"])
    res, x, y = read_result(out)
    assert res == "sat" and x.shape == (3,)
    assert "first_bound" not in seen                          # decided by the attack, before any bound
    assert "torch" not in seen["end"] and "onnxruntime" in seen["end"]


def test_network_vjp_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    from cegarnn.network import Affine, Network, ReLU, Sigmoid, Tanh, to_torch
    rng = np.random.default_rng(3)
    layers = (Affine(rng.normal(size=(7, 4)), rng.normal(size=7)), ReLU(),
              Affine(rng.normal(size=(6, 7)), rng.normal(size=6)), Sigmoid(),
              Affine(rng.normal(size=(5, 6)), rng.normal(size=5)), Tanh(),
              Affine(rng.normal(size=(3, 5)), rng.normal(size=3)))
    net = Network(layers, (4,))
    x = rng.normal(size=(9, 4))
    g = rng.normal(size=(9, 3))
    y, back = net.vjp(x)
    xt = torch.as_tensor(x).requires_grad_(True)
    yt = to_torch(net)(xt)
    (gt,) = torch.autograd.grad((yt * torch.as_tensor(g)).sum(), xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(back(g), gt.numpy(), rtol=1e-10, atol=1e-12)


def test_thread_limit_reaches_torch_imported_during_the_run():
    out = _python("import sys\n"
                  "from cegarnn.verifier.threads import limit_threads\n"
                  "with limit_threads(1):\n"
                  "    import torch\n"
                  "    inside = torch.get_num_threads()\n"
                  "print(inside, any(type(f).__name__ == '_AfterImport' for f in sys.meta_path),\n"
                  "      torch.__loader__.__class__.__name__)")
    inside, hook_left, loader = out.split()
    assert inside == "1" and hook_left == "False" and loader != "_Then"


@pytest.mark.skipif(not MNISTFC.is_dir(), reason="VNN-COMP 2021 benchmarks not found (../shared/benchmarks)")
@pytest.mark.parametrize("prop, verdict", [("prop_7_0.03.vnnlib", "sat"), ("prop_2_0.03.vnnlib", "unsat")])
def test_mnistfc_verdicts_unchanged(prop, verdict, tmp_path, capsys):
    """Answers of the previous commit (experiments/results/vnncomp2021/mnistfc_cegar.csv)."""
    out = tmp_path / "res.txt"
    main(["vnnlib", str(MNISTFC / "mnist-net_256x2.onnx"), str(MNISTFC / prop), "--timeout", "120",
          "--out", str(out)])
    assert read_result(out)[0] == verdict


# --------------------------------------------------------------------------- the default bounds provider
def _context(policy: str, eps: float, seed: int = 5):
    from cegarnn.network import Affine, Network, ReLU, Sigmoid
    from cegarnn.specs.problem import classification_problem
    from cegarnn.verifier.context import RunContext
    from cegarnn.verifier.options import Options
    rng = np.random.default_rng(seed)
    net = Network((Affine(rng.normal(size=(12, 6)), rng.normal(size=12)), ReLU(),
                   Affine(rng.normal(size=(10, 12)) / 3, rng.normal(size=10)), Sigmoid(),
                   Affine(rng.normal(size=(3, 10)), rng.normal(size=3))), (6,))
    x = rng.random(6)
    label = int(np.argmax(net.forward(x[None])[0]))
    prob = classification_problem(net, x, label, eps)
    return RunContext.create(prob, "cegar", Options(bounds="auto", policy=policy)), prob


@pytest.mark.parametrize("policy", ["input", "segments"])
def test_auto_bounds_are_our_crown_when_it_proves(policy):
    ctx, prob = _context(policy, eps=1e-4)
    b = ctx.bounds(prob.lower, prob.upper)
    assert b.method == "ir-crown" and ctx.proved(b)
    assert ctx.resolve_bounds("crown") == "crown" and ctx.resolve_bounds("alpha-crown") == "alpha-crown"


def test_auto_bounds_segments_root_adds_alpha_where_crown_does_not_prove():
    pytest.importorskip("torch")
    from cegarnn.verifier import context
    ctx, prob = _context("segments", eps=1.0)
    crown = ctx.bounder("ir-crown").bounds(prob.lower, prob.upper)[0]
    assert not ctx.proved(crown)
    b = ctx.bounds(prob.lower, prob.upper)
    assert b.method != "ir-crown" and context.AUTO_SEGMENTS_ALPHA in ("alpha-crown", "ir-alpha-crown")
    for lo_c, lo_b, up_c, up_b in zip(crown.lower, b.lower, crown.upper, b.upper):
        assert np.all(lo_b >= lo_c) and np.all(up_b <= up_c)        # never looser than CROWN
    X = prob.lower + np.random.default_rng(0).random((2000, 6)) * (prob.upper - prob.lower)
    for v, lo_b, up_b in zip(ctx.spec_net.forward_all(X), b.lower, b.upper):
        assert np.all(v >= lo_b - 1e-9) and np.all(v <= up_b + 1e-9)


def test_vnnlib_run_does_not_import_the_repair_and_invariance_registries(tiny_onnx, tmp_path):
    """Their registries fill only the help of their own subcommands (about 0.1 s of start-up)."""
    net, prop = _tiny_instance(tiny_onnx, tmp_path, "(or (>= Y_0 1000) (<= Y_1 -1000))")
    out = tmp_path / "res.txt"
    packages = ("cegarnn.repair", "cegarnn.invariance")
    seen = json.loads(_python(_PROBE.format(heavy=packages, argv=["vnnlib", str(net), str(prop), "--timeout", "30",
                                                                    "--out", str(out)])).splitlines()[-1])
    assert read_result(out)[0] == "unsat"
    assert seen["end"] == []
    listed = _python("from cegarnn.cli.commands import build_parser\n"
                     "print(build_parser('repair')._subparsers._group_actions[0].choices['repair'].epilog)")
    assert "finetune" in listed
