"""Helpers shared by the data tests."""

from __future__ import annotations

import pytest

from dlopt.data import load_dataset
from dlopt.errors import DataError


def load_error(name: str, **kw) -> str:
    """The one-line DataError ``load_dataset(name, **kw)`` raises."""
    with pytest.raises(DataError) as info:
        load_dataset(name, **kw)
    msg = str(info.value)
    assert "\n" not in msg, msg
    return msg
