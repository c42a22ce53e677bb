"""Fashion-MNIST, offline first, as in-memory tensors.

Where the data comes from, in this order:

1. the ``root`` argument of :func:`load_fashion_mnist`;
2. the environment variable ``GNLIB_DATA``;
3. Debian's package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/``);
4. torchvision's download (works on Binder and any machine with internet).

A source folder may hold the four IDX files either gzipped (Debian's layout) or plain,
directly or under ``FashionMNIST/raw/`` (torchvision's layout). They are decompressed into
``<cache>/FashionMNIST/raw/``, checked (md5 of the decompressed bytes, sizes) and loaded with
``torchvision.datasets.FashionMNIST(cache, download=False)``. The cache is
``$XDG_CACHE_HOME/gnlib`` (default ``~/.cache/gnlib``).
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "get_data",
    "synthetic_data",
    "CLASSES",
    "DEBIAN_DIR",
    "DataNotFoundError",
    "ENV_VAR",
    "FILES",
    "MEAN",
    "STD",
    "cache_dir",
    "find_source",
    "load_fashion_mnist",
    "prepare",
    "to_float",
]

ENV_VAR = "GNLIB_DATA"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

#: File name -> md5 of its decompressed bytes.
FILES = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

#: Pixel mean and std of the 60k training images in [0, 1] (checked by a test on real data).
MEAN, STD = 0.2860, 0.3530

HOW_TO_GET = (
    "How to get Fashion-MNIST:\n"
    "  * Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist "
    f"(puts the files in {DEBIAN_DIR}/)\n"
    f"  * or set {ENV_VAR}=/path/to/folder with the four IDX files "
    "(train-images-idx3-ubyte[.gz], ...)\n"
    "  * or pass load_fashion_mnist(root=...)\n"
    "  * or let torchvision download them (needs internet): load_fashion_mnist(download=True)"
)


class DataNotFoundError(RuntimeError):
    """Fashion-MNIST is missing or corrupt; the message says how to get it."""


def cache_dir() -> Path:
    """Where decompressed files live: ``$XDG_CACHE_HOME/gnlib`` or ``~/.cache/gnlib``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gnlib"


def _locate(folder: Path, name: str) -> Path | None:
    for sub in (folder, folder / "FashionMNIST" / "raw"):
        for candidate in (sub / name, sub / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _complete(folder: Path) -> bool:
    return all(_locate(folder, name) is not None for name in FILES)


def find_source(root: str | os.PathLike | None = None) -> tuple[Path | None, str]:
    """The folder to read from and why: ``(path, "argument" | "env" | "debian")``.

    Returns ``(None, "download")`` when no local copy is found. An explicit ``root`` or
    ``GNLIB_DATA`` that lacks the files is an error, not a silent fallback.
    """
    for origin, value in (("argument", root), ("env", os.environ.get(ENV_VAR))):
        if value:
            folder = Path(value).expanduser()
            if not _complete(folder):
                missing = [n for n in FILES if _locate(folder, n) is None]
                where = "root=" if origin == "argument" else f"{ENV_VAR}="
                raise DataNotFoundError(
                    f"Fashion-MNIST not found in {where}{folder}: missing {missing}.\n"
                    + HOW_TO_GET
                )
            return folder, origin
    if _complete(DEBIAN_DIR):
        return DEBIAN_DIR, "debian"
    return None, "download"


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(raw: Path) -> None:
    for name, md5 in FILES.items():
        path = raw / name
        if not path.is_file():
            raise DataNotFoundError(f"{path} is missing.\n" + HOW_TO_GET)
        got = _md5(path)
        if got != md5:
            raise DataNotFoundError(
                f"{path} is corrupt or truncated (md5 {got}, expected {md5}); "
                f"delete {raw} and the bad source file and get the data again.\n" + HOW_TO_GET
            )


def prepare(source: Path, cache: Path | None = None) -> Path:
    """Decompress/copy the IDX files of ``source`` into ``<cache>/FashionMNIST/raw``, verified.

    Returns the cache root that ``torchvision.datasets.FashionMNIST`` expects.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    raw = cache / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    stamp_path = raw / "gnlib-sources.json"
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        stamp = {}
    for name in FILES:
        src = _locate(source, name)
        if src is None:
            raise DataNotFoundError(f"{name}[.gz] not found in {source}.\n" + HOW_TO_GET)
        st = src.stat()
        identity = [str(src.resolve()), st.st_size, st.st_mtime_ns]
        target = raw / name
        if target.is_file() and stamp.get(name) == identity:
            continue  # decompressed from this very file before (and verified below)
        tmp = target.with_suffix(".tmp")
        try:
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
        except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
            tmp.unlink(missing_ok=True)
            raise DataNotFoundError(
                f"could not read {src} ({err}); the file is corrupt or truncated.\n"
                + HOW_TO_GET
            ) from err
        os.replace(tmp, target)
        stamp[name] = identity
    _verify(raw)
    stamp_path.write_text(json.dumps(stamp))
    return cache


def _download(cache: Path) -> Path:
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(cache), train=True, download=True)
        FashionMNIST(str(cache), train=False, download=True)
    except Exception as err:  # network errors come in many types
        raise DataNotFoundError(
            f"Fashion-MNIST is not on this machine and the download failed ({err}).\n"
            + HOW_TO_GET
        ) from err
    _verify(cache / "FashionMNIST" / "raw")
    return cache


@functools.lru_cache(maxsize=4)
def _load(root: str | None, env: str | None, download: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from torchvision.datasets import FashionMNIST

    source, origin = find_source(root)
    if source is not None:
        cache = prepare(source)
    elif download:
        cache = _download(cache_dir())
    else:
        raise DataNotFoundError("Fashion-MNIST not found on this machine.\n" + HOW_TO_GET)
    try:
        train = FashionMNIST(str(cache), train=True, download=False)
        test = FashionMNIST(str(cache), train=False, download=False)
    except RuntimeError as err:
        raise DataNotFoundError(f"torchvision could not load {cache}: {err}\n" + HOW_TO_GET) from err
    out = (train.data, train.targets, test.data, test.targets)
    expected = ((60000, 28, 28), (60000,), (10000, 28, 28), (10000,))
    if tuple(tuple(t.shape) for t in out) != expected:
        raise DataNotFoundError(
            f"unexpected sizes {[tuple(t.shape) for t in out]}, expected {expected}.\n"
            + HOW_TO_GET
        )
    return out


def load_fashion_mnist(
    root: str | os.PathLike | None = None, download: bool = True
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(train_x, train_y, test_x, test_y)``: uint8 images ``(n, 28, 28)``, int64 labels.

    60000 training and 10000 test images, kept as compact uint8 tensors in memory; use
    :func:`to_float` to get normalized ``(n, 1, 28, 28)`` float inputs. Raises
    :class:`DataNotFoundError` with instructions when the data is missing or corrupt.
    Results are cached per process, so calling it twice is free.
    """
    return _load(str(root) if root is not None else None, os.environ.get(ENV_VAR), download)


def to_float(images: Tensor, mean: float = MEAN, std: float = STD) -> Tensor:
    """uint8 ``(n, 28, 28)`` -> float32 ``(n, 1, 28, 28)`` with ``(x/255 - mean)/std``."""
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images, got {images.dtype}")
    x = images.to(torch.float32).div_(255.0).sub_(mean).div_(std)
    return x.unsqueeze(1) if x.dim() == 3 else x


# --------------------------------------------------------------------------------------
# The data of one training run
# --------------------------------------------------------------------------------------
def synthetic_data(n_train: int = 256, n_test: int = 128, seed: int = 0) -> tuple[Tensor, ...]:
    """Tiny learnable stand-in for Fashion-MNIST (tests): uint8 images, 10 classes."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.rand(10, 28, 28, generator=g)
    out = []
    for n in (n_train, n_test):
        y = torch.randint(0, 10, (n,), generator=g)
        x = (protos[y] * 0.7 + 0.3 * torch.rand(n, 28, 28, generator=g)) * 255
        out += [x.to(torch.uint8), y]
    return tuple(out)


def get_data(cfg) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Float tensors ``(xtr, ytr, xte, yte)`` for a run's config (its ``dataset``,
    ``train_size`` and ``test_size``): a fixed training subset (data seed 0, the same for every
    seed and norm) and the first ``test_size`` test images."""
    if cfg.dataset == "synthetic":
        xtr, ytr, xte, yte = synthetic_data()
    elif cfg.dataset == "fashion-mnist":
        xtr, ytr, xte, yte = load_fashion_mnist()
    else:
        raise ValueError(f"unknown dataset {cfg.dataset!r}")
    if cfg.train_size > len(xtr) or cfg.test_size > len(xte):
        raise ValueError(f"train_size/test_size {cfg.train_size}/{cfg.test_size} exceed "
                         f"the data ({len(xtr)}/{len(xte)})")
    idx = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))[: cfg.train_size]
    return to_float(xtr[idx]), ytr[idx], to_float(xte[: cfg.test_size]), yte[: cfg.test_size]



def main(argv: list[str] | None = None) -> int:
    """``python -m gnlib.data [--no-download]``: make sure the data is here, say from where."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m gnlib.data", description=main.__doc__)
    parser.add_argument("--root", help="folder with the four IDX files (else GNLIB_DATA, Debian)")
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    args = parser.parse_args(argv)
    try:
        source, origin = find_source(args.root)
        train_x, _, test_x, _ = load_fashion_mnist(args.root, download=not args.no_download)
    except DataNotFoundError as err:
        print(f"error: {err}")
        return 1
    where = source if source is not None else "torchvision download"
    print(f"Fashion-MNIST OK: {len(train_x)} train + {len(test_x)} test images "
          f"from {where} ({origin}), cached in {cache_dir() / 'FashionMNIST' / 'raw'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
