"""Train a learned time-stepper of the Brusselator (the issue-14 invertibility benchmark).

    .venv/bin/python experiments/train_brusselator.py       # about 40 s on 2 cores; seeded

The Brusselator ``x' = a + x² y - (b + 1) x``, ``y' = b x - x² y`` with ``a = 1``, ``b = 3`` (a
stable limit cycle) is integrated with scipy (RK45, rtol 1e-9) over ``DT = 0.1`` from 20,000
states drawn uniformly in ``[0.5, 3.5] x [0.5, 4.5]``; a ReLU MLP ``[2, 64, 64, 2]`` is fitted to
the flow map ``s -> s(DT)`` (Adam, mean squared error, float32, CPU). The flow map of an ODE is
invertible, so the network should be invertible near the states it was trained on; how far, is
what ``bench_invariance.py`` certifies. Writes ``experiments/models/brusselator/``:
``brusselator.pt`` (the torch module), ``brusselator.onnx`` and ``brusselator.json`` (settings,
errors, the command).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "experiments" / "models" / "brusselator"
A, B, DT = 1.0, 3.0, 0.1
STEPS = 12_000
BOX = (np.array([0.5, 0.5]), np.array([3.5, 4.5]))


def rhs(_t, s):
    x, y = s
    return [A + x * x * y - (B + 1) * x, B * x - x * x * y]


def flow(states: np.ndarray) -> np.ndarray:
    """``s(DT)`` for every row of ``states`` (scipy RK45, rtol 1e-9, atol 1e-11)."""
    from scipy.integrate import solve_ivp
    return np.array([solve_ivp(rhs, (0.0, DT), s, rtol=1e-9, atol=1e-11).y[:, -1] for s in states])


def main() -> None:
    import torch
    from torch import nn

    from cegarnn.network import from_torch, save_onnx
    torch.manual_seed(0)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    S = BOX[0] + (BOX[1] - BOX[0]) * rng.random((20_000, 2))
    T = flow(S)
    St, Tt = torch.tensor(S, dtype=torch.float32), torch.tensor(T, dtype=torch.float32)
    t_data = time.perf_counter() - t0
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, STEPS)
    for step in range(STEPS):
        idx = torch.randint(0, S.shape[0], (512,))
        loss = ((model(St[idx]) - Tt[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    test = BOX[0] + (BOX[1] - BOX[0]) * rng.random((2000, 2))
    with torch.no_grad():
        pred = model(torch.tensor(test, dtype=torch.float32)).double().numpy()
    err = np.abs(pred - flow(test))
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(model, OUT / "brusselator.pt")
    save_onnx(from_torch(model), OUT / "brusselator.onnx")
    info = {"system": f"Brusselator a={A}, b={B}", "dt": DT, "box": [BOX[0].tolist(), BOX[1].tolist()],
            "architecture": "[2, 64, 64, 2] ReLU (nn.Sequential)", "train_states": int(S.shape[0]),
            "steps": STEPS, "batch": 512, "optimiser": "Adam lr 2e-3, cosine", "seed": 0,
            "test_max_abs_error": float(err.max()), "test_mean_abs_error": float(err.mean()),
            "seconds": {"data": round(t_data, 1), "total": round(time.perf_counter() - t0, 1)},
            "torch_version": torch.__version__, "command": "python experiments/train_brusselator.py"}
    (OUT / "brusselator.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
