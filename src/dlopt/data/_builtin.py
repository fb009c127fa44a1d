"""Built-in datasets. Each factory returns :class:`RawData`; nothing is ever downloaded.

Adding a dataset is one ``@DATASETS.register(...)`` here; its info record feeds
``list_datasets`` without loading the data.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from dlopt.data._idx import IDX_FILES, read_idx_set
from dlopt.data._raw import RawData
from dlopt.data._registry import DATASETS, resolve_data_dir
from dlopt.data._values import scaled_pixels
from dlopt.errors import DataError

log = logging.getLogger(__name__)

MNIST_DIR = Path(__file__).parent / "_files" / "mnist"
# The original LeCun files; a mismatch means the embedded copy was altered.
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
CACHE_ENV = "DLOPT_CACHE_DIR"


@functools.lru_cache(maxsize=4)
def _cached_idx_set(directory: str, checksums: tuple[tuple[str, str], ...],
                    stamp: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, ...]:
    # Reading and checksumming MNIST costs ~0.5 s: cache per process (keyed by the files'
    # mtime/size so edited files are re-read), arrays read-only so no caller mutates them.
    arrays = read_idx_set(directory, checksums=dict(checksums))
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _stamp(directory: Path) -> tuple[tuple[int, int], ...]:
    stats = [(directory / f).stat() if (directory / f).is_file() else None for f in IDX_FILES.values()]
    return tuple((s.st_mtime_ns, s.st_size) if s else (0, -1) for s in stats)


def idx_raw(directory: Path, *, source: str | None = None, checksums: dict[str, str] | None = None,
            class_names: list[str] | None = None, num_classes: int | None = None) -> RawData:
    """RawData for an IDX set folder (``source``: the folder's absolute path unless given).
    Images are pixels, scaled as the npz reader scales them: uint8 (the MNIST type) by 255,
    other integers by their range, floats taken as they are."""
    # absolute: the cache key, the recorded source and error lines must not depend on the cwd
    directory = Path(os.path.abspath(directory))
    key = tuple(sorted((checksums or {}).items()))
    xtr, ytr, xte, yte = _cached_idx_set(str(directory), key, _stamp(directory))
    xtr, xte, scale = scaled_pixels(xtr, xte, f"IDX set {directory}")
    return RawData(
        x=xtr, y=ytr, x_test=xte, y_test=yte, task="classification", kind="image", source=source or str(directory),
        class_names=list(class_names or []), scale=scale, num_classes=num_classes,
    )


@DATASETS.register(
    "mnist", task="classification", input_shape=(1, 28, 28), num_classes=10,
    n_train=60000, n_test=10000, source="embedded IDX (sha256-checked)",
)
def mnist() -> RawData:
    """Handwritten digits, the four original gzipped IDX files shipped with dlopt."""
    return idx_raw(MNIST_DIR, source=f"embedded {MNIST_DIR}", checksums=MNIST_SHA256,
                   class_names=[str(i) for i in range(10)], num_classes=10)


@DATASETS.register(
    "fashion-mnist", task="classification", input_shape=(1, 28, 28), num_classes=10,
    n_train=60000, n_test=10000, source="IDX in <data-dir>/fashion-mnist", folder="fashion-mnist",
)
def fashion_mnist(*, data_dir: Path | None = None) -> RawData:
    """Zalando Fashion-MNIST from ``<data_dir>/fashion-mnist`` (never downloaded)."""
    root = resolve_data_dir(data_dir)
    if root is None:
        raise DataError(
            f"fashion-mnist needs a data directory: set data_dir or $DLOPT_DATA_DIR "
            f"(expects <dir>/fashion-mnist/{IDX_FILES['train_x']}, ...)"
        )
    return idx_raw(root / "fashion-mnist", class_names=FASHION_CLASSES, num_classes=10)


@DATASETS.register(
    "digits", task="classification", input_shape=(1, 8, 8), num_classes=10,
    n_train=1797, n_test=0, source="sklearn load_digits",
)
def digits() -> RawData:
    """scikit-learn's 8x8 digits; no official test split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return RawData(
        x=d.images[:, None].astype(np.float32), y=d.target.astype(np.int64),
        task="classification", kind="image", source="sklearn.datasets.load_digits",
        class_names=[str(c) for c in d.target_names], scale=16.0, num_classes=10,
    )


def _mnist1d_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV, "~/.cache/dlopt")).expanduser() / "mnist1d-v1.npz"


@DATASETS.register(
    "mnist1d", task="classification", input_shape=(40,), num_classes=10,
    n_train=4000, n_test=1000, source="mnist1d generator (local)",
)
def mnist1d() -> RawData:
    """MNIST-1D: 40-step signals, shape (40,), from the ``mnist1d`` package's default generator."""
    cache = _mnist1d_cache()
    arrays = _load_npz_cache(cache)
    if arrays is None:
        arrays = _generate_mnist1d()
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, cache)
        except OSError as exc:  # a read-only home must not stop training
            log.warning("cannot cache mnist1d at %s: %s", cache, exc)
    return RawData(
        x=arrays["x"], y=arrays["y"], x_test=arrays["x_test"],
        y_test=arrays["y_test"], task="classification", kind="sequence",
        source="mnist1d.data.make_dataset", class_names=[str(i) for i in range(10)], num_classes=10,
    )


def _load_npz_cache(path: Path) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, ValueError, KeyError) as exc:
        log.warning("ignoring unreadable mnist1d cache %s: %s", path, exc)
        return None


def _generate_mnist1d() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds numpy's global RNG; restore it so callers' randomness is untouched.
    state = np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    return {
        "x": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
        "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64),
    }


def _sklearn_table(loader: Callable, *, regression: bool = False) -> RawData:
    d = loader()
    names = [] if regression else [str(c) for c in d.target_names]
    return RawData(
        x=d.data.astype(np.float32),
        y=d.target.astype(np.float32 if regression else np.int64),
        task="regression" if regression else "classification", kind="tabular",
        source=f"sklearn.datasets.{loader.__name__}", class_names=names,
        feature_names=[str(f) for f in d.feature_names],
        num_classes=None if regression else len(names),
    )


@DATASETS.register("iris", task="classification", input_shape=(4,), num_classes=3,
                   n_train=150, n_test=0, source="sklearn load_iris")
def iris() -> RawData:
    """Iris flowers: 4 features, 3 classes."""
    from sklearn.datasets import load_iris

    return _sklearn_table(load_iris)


@DATASETS.register("wine", task="classification", input_shape=(13,), num_classes=3,
                   n_train=178, n_test=0, source="sklearn load_wine")
def wine() -> RawData:
    """Wine cultivars: 13 features, 3 classes."""
    from sklearn.datasets import load_wine

    return _sklearn_table(load_wine)


@DATASETS.register("breast-cancer", task="classification", input_shape=(30,), num_classes=2,
                   n_train=569, n_test=0, source="sklearn load_breast_cancer")
def breast_cancer() -> RawData:
    """Wisconsin breast cancer: 30 features, 2 classes."""
    from sklearn.datasets import load_breast_cancer

    return _sklearn_table(load_breast_cancer)


@DATASETS.register("diabetes", task="regression", input_shape=(10,), num_classes=0,
                   n_train=442, n_test=0, source="sklearn load_diabetes")
def diabetes() -> RawData:
    """Diabetes progression: 10 features, a real-valued target."""
    from sklearn.datasets import load_diabetes

    return _sklearn_table(load_diabetes, regression=True)
