"""An unknown key whose letters are a known key's in another order gets that key as its
did-you-mean in every section (one rule, ``config._close_keys``, which the search axes use
too: tests/tune/test_space.py), where difflib rates such a swap as far off."""

from __future__ import annotations

import pytest

from dlopt.config import load_config
from dlopt.errors import ConfigError


@pytest.mark.parametrize("override, meant", [
    ("train.optim.rl=0.1", "did you mean 'train.optim.lr'?"),
    ("train.optim.spe=0.1", "did you mean 'train.optim.eps'?"),
    ("train.early_stopping.doem=max", "did you mean 'train.early_stopping.mode'?"),
])
def test_a_swapped_key_of_any_section_is_guessed(override, meant):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert str(err.value).endswith(meant)
