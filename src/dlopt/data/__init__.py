"""Datasets, splits, preprocessing, augmentation and loaders.

Importing this package stays light (no torch): config validation calls
:func:`check_dataset_name` and :func:`check_target`. Everything that needs torch loads on
first attribute access.

    bundle = load_dataset("mnist", subset=2000, seed=0)
    loader = make_loader(bundle.train, batch_size=256, shuffle=True, seed=0, device="cpu")
"""

from __future__ import annotations

from dlopt._lazy import lazy_exports

from dlopt.data._registry import DATASETS, FORMATS, check_dataset_name, check_target, dataset_names

# public name -> private module that defines it (imported on first use)
_LAZY = {
    "load_dataset": "dlopt.data._load",
    "load_data": "dlopt.data._load",
    "list_datasets": "dlopt.data._load",
    "read_raw": "dlopt.data._load",
    "read_splits": "dlopt.data._load",
    "splits_of": "dlopt.data._load",
    "preprocess_splits": "dlopt.data._load",
    "RawSplits": "dlopt.data._load",
    "DatasetRow": "dlopt.data._load",
    "Preprocessor": "dlopt.data.preprocess",
    "build_augment": "dlopt.data.augment",
    "make_loader": "dlopt.data.loader",
    "InMemoryLoader": "dlopt.data.loader",
    "DataLoaderWrapper": "dlopt.data.loader",
    "DataBundle": "dlopt.data._types",
    "Split": "dlopt.data._types",
    "DatasetInfo": "dlopt.data._types",
    "MISSING_TOKENS": "dlopt.data._values",
    "cell_number": "dlopt.data._values",
    "image_8bit": "dlopt.data._values",
    "channels_first": "dlopt.data._values",
}

__getattr__, __dir__, __all__ = lazy_exports(
    __name__, _LAZY, eager=["DATASETS", "FORMATS", "check_dataset_name", "check_target", "dataset_names"]
)

# Registering the built-in datasets and user formats needs numpy only.
from dlopt.data import _builtin, _formats  # noqa: E402,F401  (registers entries)
