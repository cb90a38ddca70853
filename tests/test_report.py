"""The sweep report: reading rows.csv of many jobs, tables, soundness check, plots and the CLI."""
from __future__ import annotations

import csv
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from cegarnn.shift import report as rp
from cegarnn.shift.rows import COLUMNS

# (method, delta, image, status, time) for classifier mlp, shift rotation; time limit 5 s
ROTATION = [
    ("cegar", 0.5, 0, "verified", 1.0), ("cegar", 0.5, 1, "verified", 2.0),
    ("cegar", 0.5, 2, "falsified", 3.0), ("cegar", 0.5, 3, "unknown", 5.4),
    ("lp", 0.5, 0, "verified", 0.5), ("lp", 0.5, 1, "unknown", 5.1),
    ("lp", 0.5, 2, "unknown", 5.2), ("lp", 0.5, 3, "error", 0.1),
    ("cegar", 1.0, 0, "falsified", 0.2), ("cegar", 1.0, 1, "unknown", 5.0),
    ("lp", 1.0, 0, "verified", 0.3), ("lp", 1.0, 1, "verified", 0.4),   # image 0: a conflict
]


def make_row(shift, classifier, delta, method, image, status, time, **kw):
    row = dict(shift=shift, classifier=classifier, delta=delta, method=method, image=image,
               mnist_index=100 + image, label=image % 10, status=status, reason="", time=time, time_limit=5.0,
               iterations=2, breakpoints=4, binaries=6, boxes=1, solver_calls=3, time_attack=0.1 * time,
               time_bounds=0.2 * time, time_encode=0.1 * time, time_solver=0.4 * time, found_by="",
               cex_margin="", cex_pred="")
    if status == "falsified":
        row.update(found_by="pgd", cex_margin=-0.5, cex_pred=(image + 1) % 10)
    if status == "error":
        row.update(iterations="", breakpoints="", binaries="", boxes="", solver_calls="", time_attack="",
                   time_bounds="", time_encode="", time_solver="", reason="RuntimeError: boom")
    row.update(kw)
    return row


def write_rows(path, rows, columns=COLUMNS):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([r[c] for c in columns])


def typed(tmp_path, rows):
    """``rows`` as ``collect`` returns them (written to a rows.csv and read back)."""
    write_rows(tmp_path / "typed" / "rows.csv", rows)
    return rp.read_rows(tmp_path / "typed" / "rows.csv")


def write_cex(path, shift, classifier, method, delta, images, k=4):
    n = len(images)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez_compressed(path, shift=np.array(shift), classifier=np.array(classifier), method=np.array(method),
                        delta=np.array(float(delta)), image=np.array(images), label=np.array(images) % 10,
                        pred=(np.array(images) + 1) % 10, margin=-np.ones(n),
                        x=rng.random((n, 784), dtype=np.float32), shifted=rng.random((n, 784), dtype=np.float32),
                        z=rng.normal(size=(n, k)), z_units=rng.uniform(-delta, delta, size=(n, k)))


def make_sweep(root, *, conflict=True, shear=True):
    """Hydra-like tree root/<date>/<classifier>/<shift>/delta<d>/<method>/rows.csv (one job per cell)."""
    cells = {}
    data = ROTATION if conflict else [t for t in ROTATION if t[1] != 1.0]
    for m, d, i, s, t in data:
        cells.setdefault(("rotation", d, m), []).append(make_row("rotation", "mlp", d, m, i, s, t))
    if shear:
        for m in ("cegar", "lp"):
            cells[("shear", 0.5, m)] = [make_row("shear", "mlp", 0.5, m, i, "verified", 1.5) for i in range(2)]
    for (shift, d, m), rows in cells.items():
        job = root / "2024-01-01_00-00-00" / "mlp" / shift / f"delta{d}" / m
        write_rows(job / "rows.csv", rows)
    write_cex(root / "2024-01-01_00-00-00" / "mlp" / "rotation" / "delta0.5" / "cegar" / "counterexamples.npz",
              "rotation", "mlp", "cegar", 0.5, [2])
    if conflict:
        write_cex(root / "2024-01-01_00-00-00" / "mlp" / "rotation" / "delta1.0" / "cegar" / "counterexamples.npz",
                  "rotation", "mlp", "cegar", 1.0, [0])
    return root


def md_row(md, section, delta, method):
    """Cells of the summary-table row (delta, method) under the heading ``### section``."""
    lines = md.splitlines()
    start = lines.index(f"### {section}")
    for line in lines[start + 1:]:
        if line.startswith("###"):
            break
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and cells[0] == f"{delta:g}" and cells[1] == method:
            return dict(zip(("delta", "method", "verified", "falsified", "unknown", "error", "decided",
                             "median", "over"), cells)), line
    raise AssertionError(f"no row {delta} {method} under {section}")


def test_collect_types_nested_dirs_and_duplicates(tmp_path, caplog):
    make_sweep(tmp_path / "a")
    rows = rp.collect(tmp_path / "a")
    assert len(rows) == len(ROTATION) + 4
    err = next(r for r in rows if r["status"] == "error")
    assert err["iterations"] is None and err["time_solver"] is None and err["reason"] == "RuntimeError: boom"
    fal = next(r for r in rows if r["status"] == "falsified")
    assert isinstance(fal["cex_pred"], int) and fal["cex_margin"] == -0.5 and isinstance(fal["delta"], float)
    ver = next(r for r in rows if r["status"] == "verified")
    assert ver["cex_pred"] is None and isinstance(ver["image"], int) and isinstance(ver["time"], float)

    # a rerun of one cell in a later directory (sorted path order) replaces that cell's row
    write_rows(tmp_path / "b" / "rerun" / "rows.csv", [make_row("rotation", "mlp", 0.5, "lp", 1, "verified", 0.7)])
    with caplog.at_level(logging.WARNING, logger="cegarnn.shift.rows"):
        rows2 = rp.collect([tmp_path / "a", tmp_path / "b"])
    assert len(rows2) == len(rows)
    r = next(r for r in rows2 if (r["method"], r["delta"], r["image"], r["shift"]) == ("lp", 0.5, 1, "rotation"))
    assert r["status"] == "verified" and r["time"] == 0.7
    assert "1 duplicate" in caplog.text


def test_summary_counts_median_and_over_limit(tmp_path):
    rows = rp.collect(make_sweep(tmp_path))
    md = rp.summary_table(rows)
    c, line = md_row(md, "mlp / rotation", 0.5, "cegar")
    assert (c["verified"], c["falsified"], c["unknown"], c["error"], c["decided"]) == ("2", "1", "1", "0", "3")
    assert float(c["median"]) == pytest.approx(2.5) and float(c["over"]) == pytest.approx(0.4)
    assert "**cegar**" in line and "**3**" in line              # cegar decides the most at delta 0.5
    c, line = md_row(md, "mlp / rotation", 0.5, "lp")
    assert (c["verified"], c["falsified"], c["unknown"], c["error"], c["decided"]) == ("1", "0", "2", "1", "1")
    assert float(c["median"]) == pytest.approx(2.8) and float(c["over"]) == pytest.approx(0.2)
    assert "**" not in line
    c, line = md_row(md, "mlp / rotation", 1.0, "lp")            # lp decides 2 > cegar's 1
    assert c["decided"] == "2" and "**lp**" in line
    assert "**" not in md_row(md, "mlp / rotation", 1.0, "cegar")[1]
    # shear: a tie, both bold; all shifts: rotation + shear summed
    assert "**cegar**" in md_row(md, "mlp / shear", 0.5, "cegar")[1]
    assert "**lp**" in md_row(md, "mlp / shear", 0.5, "lp")[1]
    c, _ = md_row(md, "mlp / all shifts (rotation, shear)", 0.5, "cegar")
    assert (c["verified"], c["decided"]) == ("4", "5")
    assert float(c["median"]) == pytest.approx(1.75)             # of 1, 1.5, 1.5, 2, 3, 5.4


def test_disagreements_only_verified_vs_falsified():
    rows = [make_row("rot", "mlp", 1.0, "cegar", 0, "verified", 1.0),
            make_row("rot", "mlp", 1.0, "lp", 0, "falsified", 1.0),
            make_row("rot", "mlp", 1.0, "crown", 0, "unknown", 1.0),
            make_row("rot", "mlp", 1.0, "cegar", 1, "unknown", 1.0),      # unknown vs verified: fine
            make_row("rot", "mlp", 1.0, "lp", 1, "verified", 1.0),
            make_row("rot", "mlp", 1.0, "cegar", 2, "error", 1.0),        # error vs falsified: fine
            make_row("rot", "mlp", 1.0, "lp", 2, "falsified", 1.0),
            make_row("rot", "mlp", 0.5, "lp", 0, "falsified", 1.0)]       # other delta: other instance
    dis = rp.disagreements(rows)
    assert len(dis) == 1
    d = dis[0]
    assert (d["shift"], d["classifier"], d["delta"], d["image"]) == ("rot", "mlp", 1.0, 0)
    assert d["statuses"] == {"cegar": "verified", "lp": "falsified", "crown": "unknown"}
    assert rp.disagreements(rows[3:]) == []
    assert "0 (none)" in rp.disagreements_markdown([])


def test_write_csv_sort_order(tmp_path):
    methods = ["zeta", "marabou", "bab-crown", "alpha", "crown", "milp-fixed", "lp", "cegar"]
    rows = [make_row(s, c, d, m, i, "verified", 1.0)
            for c in ("mlp", "conv") for s in ("shear", "rotation") for d in (1.0, 0.25)
            for m in methods for i in (3, 1)]
    rng = np.random.default_rng(1)
    rows = [rows[k] for k in rng.permutation(len(rows))]
    rows[0]["reason"] = "a, quoted \"reason\""
    path = rp.write_csv(rows, tmp_path / "out" / "results.csv")
    with path.open(newline="") as f:
        back = list(csv.DictReader(f))
    assert tuple(back[0]) == COLUMNS and len(back) == len(rows)
    order = ["cegar", "lp", "milp-fixed", "crown", "bab-crown", "marabou", "alpha", "zeta"]
    keys = [(r["classifier"], r["shift"], float(r["delta"]), order.index(r["method"]), int(r["image"]))
            for r in back]
    assert keys == sorted(keys)
    assert keys[0] == ("conv", "rotation", 0.25, 0, 1) and keys[-1] == ("mlp", "shear", 1.0, 7, 3)
    again = rp.read_rows(path)                                  # round trip keeps values and blanks
    assert any(r["reason"] == "a, quoted \"reason\"" for r in again) and all(r["cex_pred"] is None for r in again)


def test_time_breakdown_shares(tmp_path):
    rows = [make_row("rot", "mlp", 1.0, "cegar", i, "verified", 2.0) for i in range(3)]
    rows.append(make_row("rot", "mlp", 1.0, "cegar", 3, "error", 4.0))   # no component times: all 'other'
    rows = typed(tmp_path, rows)
    tb = rp.time_breakdown(rows)[("mlp", "cegar")]
    assert tb["total"] == pytest.approx(10.0)
    assert tb["share_solver"] == pytest.approx(0.4 * 6 / 10) and tb["share_other"] == pytest.approx((0.2 * 6 + 4) / 10)
    assert tb["mean_iterations"] == pytest.approx(2.0)
    md = rp.time_breakdown_table(rows)
    assert "| mlp | cegar | 4 | 10.0 | 6.0% | 12.0% | 6.0% | 24.0% | 52.0% | 2.0 | 4.0 | 6.0 |" in md


def test_missing_column_bad_value_and_empty_root(tmp_path):
    cols = tuple(c for c in COLUMNS if c not in ("time_solver", "status"))
    bad = tmp_path / "bad" / "job" / "rows.csv"
    write_rows(bad, [make_row("rot", "mlp", 1.0, "lp", 0, "verified", 1.0)], columns=cols)
    with pytest.raises(ValueError, match=r"rows\.csv.*missing column\(s\): status, time_solver"):
        rp.collect(tmp_path / "bad")
    write_rows(bad, [make_row("rot", "mlp", 1.0, "lp", 0, "proved", 1.0)])
    with pytest.raises(ValueError, match="unknown status 'proved'"):
        rp.collect(tmp_path / "bad")
    row = make_row("rot", "mlp", 1.0, "lp", 0, "verified", 1.0)
    row["image"] = "x"
    write_rows(bad, [row])
    with pytest.raises(ValueError, match=r"rows\.csv:2: column 'image'"):
        rp.collect(tmp_path / "bad")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no rows.csv found below"):
        rp.collect(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        rp.collect(tmp_path / "nowhere")
    write_rows(tmp_path / "hdr" / "rows.csv", [])
    with pytest.raises(ValueError, match="hold no rows"):
        rp.collect(tmp_path / "hdr")


def test_counterexamples_loader_and_pick(tmp_path):
    write_cex(tmp_path / "a" / "counterexamples.npz", "rot", "mlp", "lp", 0.5, [1, 2, 3])
    write_cex(tmp_path / "b" / "counterexamples.npz", "rot", "mlp", "cegar", 1.0, [2, 2 + 0])
    cex = rp.collect_counterexamples(tmp_path)
    assert len(cex) == 4                                       # the duplicate image 2 of cegar kept once
    c = cex[0]
    assert (c["shift"], c["classifier"], c["method"], c["delta"]) == ("rot", "mlp", "lp", 0.5)
    assert c["x"].shape == (784,) and c["z_units"].shape == (4,) and isinstance(c["pred"], int)
    picked = rp.pick_counterexamples(cex, 3)
    assert [(p["delta"], p["image"]) for p in picked] == [(1.0, 2), (0.5, 1), (0.5, 3)]
    assert len(rp.pick_counterexamples(cex, 8)) == 4
    assert rp.collect_counterexamples(tmp_path / "a" / "counterexamples.npz")[0]["image"] == 1


def test_plots_are_valid_pngs(tmp_path):
    import matplotlib.image as mpimg
    rows = [r for r in rp.collect(make_sweep(tmp_path / "s")) if r["shift"] == "rotation"]
    rows.append(make_row("rotation", "mlp", 0.5, "crown", 0, "unknown", 0.0))     # nothing decided, time 0
    paths = [rp.cactus_plot(rows, tmp_path / "out" / "cactus.png", "rotation"),
             rp.counterexample_figure(sorted((tmp_path / "s").rglob("counterexamples.npz")), tmp_path / "cex.png")]
    for p in paths:
        img = mpimg.imread(p)
        assert p.stat().st_size > 1000 and img.ndim == 3 and min(img.shape[:2]) > 100
    with pytest.raises(ValueError, match="no counterexamples"):
        rp.counterexample_figure([], tmp_path / "none.png")


def test_write_report(tmp_path):
    info = rp.write_report(make_sweep(tmp_path / "s"), tmp_path / "out", title="T")
    out = tmp_path / "out"
    assert info["n_rows"] == len(ROTATION) + 4 and info["n_disagreements"] == 1 and info["n_counterexamples"] == 2
    names = sorted(os.path.basename(f) for f in info["files"])
    assert names == ["cactus_mlp_rotation.png", "cactus_mlp_shear.png", "counterexamples_mlp_rotation.png",
                     "results.csv", "tables.md"]
    md = (out / "tables.md").read_text()
    assert md.startswith("# T") and "| mlp | rotation | 1 | 0 | 100 | cegar=falsified, lp=verified |" in md
    assert "cegar=unknown, lp=verified" not in md and "Where the time goes" in md
    key = ("shift", "classifier", "delta", "method", "image", "status")
    back = rp.read_rows(out / "results.csv")
    assert sorted(tuple(r[k] for k in key) for r in back) == sorted(tuple(r[k] for k in key)
                                                                    for r in rp.collect(tmp_path / "s"))
    ok = rp.write_report(make_sweep(tmp_path / "ok", conflict=False, shear=False), tmp_path / "out2")
    assert ok["n_disagreements"] == 0 and "0 (none)" in (tmp_path / "out2" / "tables.md").read_text()


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "cegarnn.cli", "report", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=env)


def test_cli_exit_codes(tmp_path):
    ok = _cli(make_sweep(tmp_path / "ok", conflict=False, shear=False), "--out", tmp_path / "o1", "--title", "X")
    assert ok.returncode == 0, ok.stderr
    assert "disagreements: 0" in ok.stdout and (tmp_path / "o1" / "cactus_mlp_rotation.png").is_file()

    conflict = tmp_path / "bad"
    write_rows(conflict / "j1" / "rows.csv", [make_row("rot", "mlp", 1.0, "cegar", 0, "verified", 1.0)])
    write_rows(conflict / "j2" / "rows.csv", [make_row("rot", "mlp", 1.0, "lp", 0, "falsified", 1.0)])
    dis = _cli(conflict, "--out", tmp_path / "o2")
    assert dis.returncode == 1, dis.stderr
    assert "disagreements: 1" in dis.stdout and "cegar=verified, lp=falsified" in dis.stdout

    (tmp_path / "empty").mkdir()
    bad = _cli(tmp_path / "empty", "--out", tmp_path / "o3")
    assert bad.returncode == 2 and bad.stderr.startswith("error: no rows.csv found")
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "o3").exists()
