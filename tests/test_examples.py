"""Every example config still loads and passes the checks its command runs before any work:
examples are what users copy first, and options drift (stop 26's docs audit ran them by hand)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from dlopt.config import RunConfig, TuneConfig, load_config
from dlopt.pipeline import load_pipeline

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))


def test_the_examples_are_found() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_an_example_passes_its_commands_up_front_checks(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    if "fashion-mnist" in path.read_text() and not os.environ.get("DLOPT_DATA_DIR"):
        pytest.skip("DLOPT_DATA_DIR is unset: no Fashion-MNIST files to check against")
    if "stages" in raw:
        cfg, _ = load_pipeline(path)
        assert cfg.stages
    elif "search" in raw:
        assert load_config(path, schema=TuneConfig).search.space  # its validator runs check_search
    else:
        assert isinstance(load_config(path, schema=RunConfig), RunConfig)
