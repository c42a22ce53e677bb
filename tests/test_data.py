"""gnlib.data: real Fashion-MNIST when present, and clear errors for missing/corrupt files."""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest
import torch

from gnlib import data
from gnlib.data import DataNotFoundError, find_source, load_fashion_mnist, prepare, to_float

HAVE_DEBIAN = all((data.DEBIAN_DIR / f"{n}.gz").is_file() for n in data.FILES)
needs_real_data = pytest.mark.skipif(
    not HAVE_DEBIAN and not os.environ.get("CI"),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist); required when CI=true",
)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """Each test gets its own cache and no GNLIB_DATA, and a fresh in-process cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    data._load.cache_clear()
    yield
    data._load.cache_clear()


@needs_real_data
def test_real_data_sizes_labels_and_checksums(tmp_path):
    train_x, train_y, test_x, test_y = load_fashion_mnist(download=False)
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == torch.uint8
    assert test_x.shape == (10000, 28, 28)
    assert train_y.dtype == torch.int64 and test_y.shape == (10000,)
    assert train_y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert torch.bincount(train_y).tolist() == [6000] * 10
    raw = tmp_path / "cache" / "gnlib" / "FashionMNIST" / "raw"
    for name, md5 in data.FILES.items():
        assert data._md5(raw / name) == md5
    # the normalization constants are the real training-set statistics
    pixels = train_x.to(torch.float64) / 255
    assert pixels.mean().item() == pytest.approx(data.MEAN, abs=5e-5)
    assert pixels.std().item() == pytest.approx(data.STD, abs=5e-5)
    x = to_float(train_x[:1000])
    assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32
    assert find_source()[1] == "debian"


@needs_real_data
def test_env_var_and_torchvision_layout(tmp_path, monkeypatch):
    """A folder in torchvision's layout (FashionMNIST/raw, plain files) works via GNLIB_DATA."""
    src = tmp_path / "src" / "FashionMNIST" / "raw"
    src.mkdir(parents=True)
    for name in data.FILES:
        with gzip.open(data.DEBIAN_DIR / f"{name}.gz", "rb") as f, open(src / name, "wb") as g:
            shutil.copyfileobj(f, g)
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "src"))
    assert find_source() == (tmp_path / "src", "env")
    train_x, train_y, _, _ = load_fashion_mnist(download=False)
    assert train_y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


def _fake_source(folder: Path, corrupt: str | None = None, truncate: bool = False) -> Path:
    """Four small gzipped files with the right names (wrong content => md5 mismatch)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in data.FILES:
        payload = b"not really fashion-mnist " + name.encode()
        blob = gzip.compress(payload)
        if name == corrupt and truncate:
            blob = blob[: len(blob) // 2]
        (folder / f"{name}.gz").write_bytes(blob)
    return folder


def test_corrupt_file_gives_clear_error(tmp_path):
    src = _fake_source(tmp_path / "src")
    with pytest.raises(DataNotFoundError, match=r"(?s)corrupt or truncated \(md5 .*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(root=src, download=False)


def test_truncated_gzip_gives_clear_error(tmp_path):
    src = _fake_source(tmp_path / "src", corrupt="train-labels-idx1-ubyte", truncate=True)
    with pytest.raises(DataNotFoundError, match=r"(?s)could not read .*train-labels.*GNLIB_DATA"):
        prepare(src, tmp_path / "cache2")


def test_explicit_root_missing_is_an_error_not_a_fallback(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match=r"not found in root=.*missing \["):
        load_fashion_mnist(root=tmp_path / "empty")


def test_env_var_missing_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError, match="GNLIB_DATA="):
        load_fashion_mnist()


def test_nothing_found_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    assert find_source() == (None, "download")
    with pytest.raises(DataNotFoundError, match="(?s)not found on this machine.*apt-get install"):
        load_fashion_mnist(download=False)


def test_failed_download_gives_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataNotFoundError, match="(?s)download failed .*network unreachable"):
        load_fashion_mnist(download=True)


def test_to_float_rejects_floats():
    with pytest.raises(TypeError, match="uint8"):
        to_float(torch.zeros(2, 28, 28))
