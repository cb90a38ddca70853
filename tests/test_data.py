"""Data layer: IDX loader, image shifts, committed demo models."""
from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from cegarnn.data import (SHIFTS, IDXFormatError, apply_shift, brightness, contrast, find_mnist_dir, load_mnist,
                          read_idx, rotate, scale, shear)

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "experiments" / "models"


# ----------------------------------------------------------------------------- tiny IDX fixtures
def _idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write(path: Path, data: bytes, gz: bool) -> None:
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _tiny_mnist(tmp_path: Path, gz: bool, split: str = "train"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    prefix = "train" if split == "train" else "t10k"
    ext = ".gz" if gz else ""
    _write(tmp_path / f"{prefix}-images-idx3-ubyte{ext}", _idx_bytes(images), gz)
    _write(tmp_path / f"{prefix}-labels-idx1-ubyte{ext}", _idx_bytes(labels), gz)
    return images, labels


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_tiny_idx(tmp_path, gz, split):
    images, labels = _tiny_mnist(tmp_path, gz, split)
    x, y = load_mnist(split, root=tmp_path)
    assert x.dtype == np.float32 and x.shape == (5, 28, 28)
    assert y.dtype == np.int64 and y.tolist() == [3, 1, 4, 1, 5]
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x, images / 255.0, rtol=0, atol=1e-7)


def test_load_from_env_var(tmp_path, monkeypatch):
    _tiny_mnist(tmp_path, gz=True)
    monkeypatch.setenv("CEGARNN_DATA", str(tmp_path))
    x, y = load_mnist("train")
    assert x.shape == (5, 28, 28) and len(y) == 5


def test_missing_folder_names_places_tried(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist("train", root=missing)


def test_bad_split_rejected(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid", root=tmp_path)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x01\x02\x08\x03" + b"\x00" * 12, "magic"),  # not starting with two zero bytes
        (b"\x00\x00\x42\x01\x00\x00\x00\x02ab", "type code"),  # unknown data type
        (b"\x00\x00", "too short"),
        (_idx_bytes(np.zeros((4, 28, 28)))[:-10], "declares shape"),  # truncated data
    ],
    ids=["magic", "dtype", "short", "truncated"],
)
def test_corrupt_idx_rejected(tmp_path, data, message):
    p = tmp_path / "bad-idx"
    p.write_bytes(data)
    with pytest.raises(IDXFormatError, match=message) as ei:
        read_idx(p)
    assert str(p) in str(ei.value)


def test_corrupt_gzip_rejected(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(_idx_bytes(np.zeros((3, 28, 28))))[:-8])  # cut the gzip trailer
    with pytest.raises(IDXFormatError, match="decompress"):
        read_idx(p)


def test_labels_file_with_image_shape_rejected(tmp_path):
    _tiny_mnist(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros((5, 2))))
    with pytest.raises(IDXFormatError, match="label"):
        load_mnist("train", root=tmp_path)


def test_count_mismatch_rejected(tmp_path):
    _tiny_mnist(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4)))
    with pytest.raises(IDXFormatError, match="5 images but"):
        load_mnist("train", root=tmp_path)


# ----------------------------------------------------------------------------- shifts
@pytest.fixture
def batch():
    return np.random.default_rng(1).random((4, 28, 28), dtype=np.float32)


def test_shift_identity(batch):
    np.testing.assert_array_equal(rotate(batch, 0.0), batch)
    np.testing.assert_array_equal(shear(batch, 0.0), batch)
    np.testing.assert_array_equal(brightness(batch, 0.0), batch)
    np.testing.assert_array_equal(scale(batch, 1.0), batch)
    np.testing.assert_allclose(contrast(batch, 1.0), batch, atol=1e-7)
    np.testing.assert_array_equal(rotate(batch[0], 0.0), batch[0])  # single image


@pytest.mark.parametrize("fn, params", [
    (rotate, [-30.0, 7.5, 30.0, 123.0]),
    (shear, [-0.4, 0.1, 0.3, 1.0]),
    (brightness, [-0.5, 0.2, 0.7, 1.5]),
    (contrast, [0.3, 1.5, 2.0, 4.0]),
    (scale, [0.5, 0.8, 1.25, 3.0]),
])
def test_shift_values_in_unit_interval_and_shapes(batch, fn, params):
    out = fn(batch, np.array(params))
    assert out.shape == batch.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not np.array_equal(out, batch)
    # per-image parameters = one call per image
    np.testing.assert_allclose(out[1], fn(batch[1], params[1]), atol=1e-7)


def test_scale_known_pattern():
    x = np.zeros((28, 28), np.float32)
    x[12:16, 12:16] = 1.0                     # 4x4 block centred on (13.5, 13.5)
    big = scale(x, 2.0)
    assert big[11:17, 11:17].min() > 0.99      # the block doubles about the centre (6x6 fully on, bilinear edges)
    assert big[:9].max() == 0 and big[19:].max() == 0
    assert abs(scale(x, 0.5).sum() - 4.0) < 1e-4   # area / 4 (bilinear keeps the mass)
    with pytest.raises(ValueError, match="> 0"):
        scale(x, 0.0)


def test_shift_registry_ranges_and_apply_shift(batch):
    assert set(SHIFTS) == {"rotation", "shear", "scaling", "brightness", "contrast"}
    for name, (fn, (lo, hi)) in SHIFTS.items():
        assert lo < hi
        np.testing.assert_array_equal(apply_shift(name, batch, lo), fn(batch, lo))
        out = apply_shift(name, batch, np.array([lo, hi, lo, hi]))
        assert 0.0 <= out.min() and out.max() <= 1.0
    with pytest.raises(ValueError, match="unknown shift 'fog'"):
        apply_shift("fog", batch, 0.1)


def test_rotate_90_known_pattern():
    x = np.zeros((28, 28), np.float32)
    x[2:5, 20:26] = 1.0  # a bar near the top right
    x[10, 3] = 0.5
    out = rotate(x, 90.0)
    np.testing.assert_allclose(out, np.rot90(x), atol=1e-6)  # counter-clockwise as displayed
    assert out[2:8, 2:5].min() == 1.0 and out.sum() == x.sum()  # the bar moved to the top left
    np.testing.assert_allclose(rotate(x, -90.0), np.rot90(x, -1), atol=1e-6)
    np.testing.assert_allclose(rotate(rotate(x, 90.0), -90.0), x, atol=1e-6)


def test_shear_moves_rows_in_opposite_directions():
    x = np.zeros((28, 28), np.float32)
    x[:, 14] = 1.0  # vertical line just right of the centre column 13.5
    out = shear(x, 0.5)
    # row r is shifted by 0.5*(r - 13.5) columns: top row goes left, bottom row right
    assert np.argmax(out[1]) < 14 < np.argmax(out[26])
    np.testing.assert_allclose(out[1].sum(), 1.0, atol=1e-6)  # bilinear keeps the mass inside


def test_shift_rejects_bad_shapes(batch):
    with pytest.raises(ValueError, match="shape"):
        rotate(batch[None], 10.0)
    with pytest.raises(ValueError, match="degrees"):
        rotate(batch, [1.0, 2.0])


# ----------------------------------------------------------------------------- committed models
def _demo_module():
    spec = importlib.util.spec_from_file_location("train_demo_models", REPO / "experiments" / "train_demo_models.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


needs_models = pytest.mark.skipif(
    not (MODELS / "classifier.pt").is_file(), reason="experiments/models is absent (run experiments/train_demo_models.py)"
)


@needs_models
def test_committed_models_classify_test_images():
    torch = pytest.importorskip("torch")
    demo = _demo_module()
    models = demo.load_demo_models(MODELS)
    images, labels, indices = demo.load_test_images(MODELS)
    assert images.dtype == np.float32 and images.ndim == 3 and images.shape[1:] == (28, 28)
    assert len(images) == len(labels) == len(indices) >= 20
    assert images.min() >= 0.0 and images.max() <= 1.0
    with torch.no_grad():
        pred = models["classifier"](torch.from_numpy(images)).argmax(1).numpy()
    np.testing.assert_array_equal(pred, labels)


@needs_models
def test_committed_generator_outputs():
    torch = pytest.importorskip("torch")
    demo = _demo_module()
    models = demo.load_demo_models(MODELS)
    images, _, _ = demo.load_test_images(MODELS)
    x = torch.from_numpy(images[:8].reshape(8, 784))
    with torch.no_grad():
        stats = models["prior"](x)
        assert stats.shape == (8, 2 * demo.LATENT)
        mu, logvar = stats.chunk(2, -1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
        out = models["generator"](torch.cat([x, z], 1))
    assert out.shape == (8, 784)
    assert float(out.min()) > 0.0 and float(out.max()) < 1.0


@needs_models
def test_committed_onnx_matches_torch():
    torch = pytest.importorskip("torch")
    ort = pytest.importorskip("onnxruntime")
    demo = _demo_module()
    models = demo.load_demo_models(MODELS)
    images, _, _ = demo.load_test_images(MODELS)
    x = images[:10].reshape(10, 784)
    with torch.no_grad():
        mu, logvar = models["prior"](torch.from_numpy(x)).chunk(2, -1)
    u = np.random.default_rng(0).uniform(-2, 2, mu.shape).astype(np.float32)
    z = (mu + torch.exp(0.5 * logvar) * torch.from_numpy(u)).numpy()
    inputs = {"classifier": x, "prior": x, "generator": np.concatenate([x, z], 1)}
    for name, batch in inputs.items():
        sess = ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        for row in batch:
            got = sess.run(None, {"input": row[None]})[0]
            with torch.no_grad():
                ref = models[name](torch.from_numpy(row[None])).numpy()
            np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0, err_msg=name)


def test_load_demo_models_missing_dir(tmp_path):
    pytest.importorskip("torch")
    with pytest.raises(FileNotFoundError, match="classifier.pt"):
        _demo_module().load_demo_models(tmp_path)


# ----------------------------------------------------------------------------- real MNIST
def _real_mnist_available() -> bool:
    try:
        find_mnist_dir("test")
        find_mnist_dir("train")
        return True
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not _real_mnist_available(), reason="MNIST IDX files not found (../shared/data/mnist or CEGARNN_DATA)")
def test_load_real_mnist():
    x, y = load_mnist("test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert x.min() == 0.0 and x.max() == 1.0
    assert y[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(y, minlength=10).min() > 800
    xt, yt = load_mnist("train")
    assert xt.shape == (60000, 28, 28) and yt.shape == (60000,)
