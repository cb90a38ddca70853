"""Markdown table of the committed shift models (experiments/models/shifts/*/model.json).

    .venv/bin/python experiments/summarise_shift_models.py > experiments/results/shift_models.md
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models" / "shifts"


def main() -> None:
    print("# Shift models (conditional VAEs) — experiments/train_shift_models.py\n")
    print("Reconstruction: mean |pixel error| against the true T_theta(x) on the 10,000 MNIST test images, "
          "theta drawn from the training range. `G(x, z_post)`: z = mean of the encoder q(z | x, T_theta x) "
          "(how well G reproduces that transformation); `identity`: the untransformed x; `G(x, mu)`: the "
          "prior mean. Robust fraction: share of the 60 test images whose MLP label survives 100 "
          "z ~ U(mu ± delta·sigma) (an upper bound on what any verifier can prove).\n")
    print("| shift | theta range | G(x, z_post) | identity | G(x, mu) | robust δ=0.5 | δ=1 | δ=2 | δ=3 | training (s) | samples |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for d in sorted(p for p in MODELS.iterdir() if (p / "model.json").is_file()):
        m = json.loads((d / "model.json").read_text())
        r, rob = m["reconstruction"], m["robustness_random_sampling"]
        f = lambda k: f"{rob[k]['fraction_robust_mlp']:.2f}"
        print(f"| {m['shift']} | {m['theta_range']} | {r['mae_G_posterior_mean']:.4f} | {r['mae_identity_baseline']:.4f} "
              f"| {r['mae_G_prior_mean']:.4f} | {f('0.5')} | {f('1.0')} | {f('2.0')} | {f('3.0')} | "
              f"{m['training_seconds']} | [png](../models/shifts/{d.name}/samples.png) |")
    conv = json.loads((MODELS / "classifier_conv.json").read_text())
    print(f"\nClassifiers: MLP 784-32-32-10 (test accuracy {conv['mlp_test_accuracy']:.4f}); CNN "
          f"classifier_conv.onnx ({conv['parameters']} parameters, test accuracy {conv['test_accuracy']:.4f}). "
          f"Test images: {conv['test_images']['count']} ({conv['test_images']['selection']}).")


if __name__ == "__main__":
    main()
