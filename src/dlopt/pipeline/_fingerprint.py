"""What a stage's cache key cannot read in its config: the user's data files.

A config names ``csv:rows.csv`` (or an ``npz:``/``idx:``/``imagefolder:`` path, or an IDX set
found in the data directory); editing that file leaves the config, and so the key, as it
was, and a rerun would reuse results of the old data. The key therefore also hashes every
such file's relative path, size and modification time (as ``make`` does: no file is read,
so an image folder of 70k files costs a directory walk, not a pass over its bytes).
Built-in datasets are fixed and add nothing, so their keys stay as they were.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterator

__all__ = ["data_fingerprint"]


def data_fingerprint(*docs: Any, memo: dict[Path, str] | None = None) -> dict[str, str]:
    """``{source: digest}`` of every user data source named by a ``data`` section anywhere
    in ``docs`` (raw config mappings); empty when they only name built-in datasets.

    ``memo`` (resolved path -> digest) is shared by the stages of one pipeline run, so a
    data folder that several stages read is walked once per run, not once per stage."""
    memo = {} if memo is None else memo
    out: dict[str, str] = {}
    for data in _data_sections(docs):
        path = _source_path(data["name"], data.get("data_dir"))
        if path is None:
            continue
        real = path.resolve()
        if real not in memo:
            memo[real] = _digest(path)
        out[str(path)] = memo[real]
    return out


def _data_sections(node: Any) -> Iterator[dict[str, Any]]:
    # sweep variants and stage configs nest their own data sections: walk everything
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            yield data
        for value in node.values():
            yield from _data_sections(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _data_sections(value)


def _source_path(name: str, data_dir: Any) -> Path | None:
    from dlopt.data._registry import DATASETS, FORMATS, data_dir_sets, split_format

    fmt = split_format(name)
    if fmt is not None:
        return Path(fmt[1]).expanduser() if fmt[0] in FORMATS else None
    if name in DATASETS:
        return None
    try:
        return data_dir_sets(data_dir if isinstance(data_dir, str) else None).get(name)
    except OSError:  # an unreadable data directory: the stage reports it when it loads
        return None


def _digest(path: Path) -> str:
    try:
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        stats = [(f.relative_to(path).as_posix() if f != path else f.name, f.stat()) for f in files]
    except OSError:  # missing or unreadable: loading the data fails with its own message
        return "unreadable"
    h = hashlib.sha256()
    for rel, st in stats:
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
