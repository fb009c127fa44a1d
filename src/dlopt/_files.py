"""Removing what a command wrote: a file or a folder tree, or everything inside a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["remove_path", "empty_dir"]


def remove_path(path: Path, *, ignore_errors: bool = False) -> None:
    """Delete ``path``: a folder with its tree, else the file or link itself (a link to a
    folder is removed, not followed); a missing path is nothing to do."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
        return
    try:
        path.unlink(missing_ok=True)
    except OSError:
        if not ignore_errors:
            raise


def empty_dir(d: Path, *, ignore_errors: bool = False) -> None:
    """Delete everything inside folder ``d``, keeping ``d``."""
    for entry in d.iterdir():
        remove_path(entry, ignore_errors=ignore_errors)
