"""Dataset names: the built-in registry, user-data formats (``npz:PATH``, ...) and IDX sets
found in a data directory. Light on purpose (no torch): config validation imports it.
"""

from __future__ import annotations

import os
from pathlib import Path

from dlopt.errors import ConfigError
from dlopt.registry import Entry, Registry

__all__ = ["DATASETS", "FORMATS", "DATA_DIR_ENV", "resolve_data_dir", "recorded_data_dir", "data_dir_sets",
           "check_dataset_name", "check_target", "dataset_names", "split_format"]

#: Built-in datasets. Info keys: task, input_shape, num_classes, n_train, n_test, source.
DATASETS: Registry = Registry("dataset", error=ConfigError)
#: User data formats, used as ``<format>:<path>``. Info keys: help, and labels (where the
#: labels come from) for a reader that takes no ``target`` column.
FORMATS: Registry = Registry("data format", error=ConfigError)

DATA_DIR_ENV = "DLOPT_DATA_DIR"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """``data_dir`` if given, else ``$DLOPT_DATA_DIR``, else None; absolute (a relative one is
    read from the working directory, which sources and error lines must name)."""
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    return Path(os.path.abspath(Path(value).expanduser())) if value else None


def recorded_data_dir(name: str, data_dir: object) -> str | None:
    """The data directory a written config records for dataset ``name``: ``data_dir`` made
    absolute; unset, the ``$DLOPT_DATA_DIR`` that a set read from the data directory
    (fashion-mnist, an IDX set found there) came from, else None. A relative directory, or
    one known only from the environment, names other data when the config is re-run elsewhere."""
    if isinstance(data_dir, str) and data_dir:
        return str(resolve_data_dir(data_dir))
    if data_dir is not None or not _reads_data_dir(name):
        return None
    root = resolve_data_dir()
    return None if root is None else str(root)


def _reads_data_dir(name: str) -> bool:
    """Whether dataset ``name`` is read from the data directory (a built-in reader taking
    ``data_dir``, or an IDX set found there): not a file format, nor data that is no set at
    all (a ``fit`` run's in-memory arrays), whose record would then need the variable."""
    if name in DATASETS:
        return "data_dir" in DATASETS.get(name).params()
    return split_format(name) is None and name in data_dir_sets()


def data_dir_sets(data_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """IDX sets in the data directory: sub-folder name -> folder (built-in names excluded)."""
    from dlopt.data._idx import is_idx_set

    root = resolve_data_dir(data_dir)
    if root is None or not root.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(root.iterdir())
        if p.name not in DATASETS and is_idx_set(p)
    }


def split_format(name: str) -> tuple[str, str] | None:
    """``("csv", "path")`` for ``csv:path``; None for a plain name."""
    prefix, sep, rest = name.partition(":")
    return (prefix, rest) if sep else None


def dataset_names(data_dir: str | os.PathLike | None = None) -> list[str]:
    """Built-in names plus IDX sets found in the data directory."""
    return sorted({*DATASETS.names(), *data_dir_sets(data_dir)})


def check_dataset_name(name: str, data_dir: str | os.PathLike | None = None) -> None:
    """Raise :class:`ConfigError` unless ``name`` is a known dataset or ``<format>:<path>``."""
    fmt = split_format(name)
    if fmt is not None:
        prefix, rest = fmt
        if prefix not in FORMATS:
            raise ConfigError(
                f"unknown data format {prefix!r} in {name!r}; valid: "
                + ", ".join(f"{f}:PATH" for f in FORMATS.names())
            )
        if not rest.strip():
            raise ConfigError(f"data name {name!r} needs a path after '{prefix}:'")
        return
    if name in DATASETS or name in data_dir_sets(data_dir):
        return
    formats = ", ".join(f"{f}:PATH" for f in FORMATS.names())
    raise ConfigError(
        f"unknown dataset {name!r}; valid: {', '.join(dataset_names(data_dir))} (or {formats})"
    )


def check_target(name: str, target: str | None) -> None:
    """Raise :class:`ConfigError` when ``target`` (``data.target``) is set for the checked
    dataset name ``name`` whose reader takes no target column: every source but csv has its
    labels already and would ignore it without a word."""
    if target is None:
        return
    entry, labels = _reader(name)
    if "target" not in entry.params():
        raise ConfigError(f"data.target={target!r}: {name} has its own labels ({labels}); data.target is "
                          f"only for csv:PATH, where it names the target column (remove it)")


def _reader(name: str) -> tuple[Entry, str]:
    """The reader of the checked dataset name ``name`` and where its labels come from."""
    fmt = split_format(name)
    if fmt is not None:  # a format a user registered may say nothing of its labels
        entry = FORMATS.get(fmt[0])
        return entry, entry.info.get("labels", "from its reader")
    if name in DATASETS:
        entry = DATASETS.get(name)
        return entry, entry.info.get("labels", "built-in dataset")
    entry = FORMATS.get("idx")  # an IDX set found in the data directory
    return entry, entry.info["labels"]
