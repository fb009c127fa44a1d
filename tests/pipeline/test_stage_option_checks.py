"""Compression options are checked with the compression room's own registries before any
stage runs: a typo must not wait until the upstream stages have trained."""

from __future__ import annotations

import pytest

from dlopt.errors import ConfigError
from dlopt.pipeline import parse_pipeline

BASE = {"data": {"name": "mnist", "subset": 500}, "model": {"name": "lenet5"}, "train": {"epochs": 1}}


def _pipe(stage: dict) -> dict:
    return {"name": "p", "base": BASE, "stages": [{"name": "train"}, {"input": "train", **stage}]}


@pytest.mark.parametrize("stage, fixed, message", [
    ({"name": "prune", "method": "foo"}, {"method": "taylor"},
     "'prune': unknown pruning method 'foo'; valid: bn, global, l1"),
    ({"name": "distill", "student": "lenet9"}, {"student": "train"},  # a stage's run as the student
     "'distill': student: unknown model 'lenet9'; valid: "),
    ({"name": "distill", "student": {"name": "lenet5", "widht": 0.5}}, {"student": {"name": "lenet5", "width": 0.5}},
     "unknown option 'widht' for model 'lenet5'"),
    ({"name": "quantize", "method": "int3"}, {"method": "static"},
     "'quantize': unknown quantization method 'int3'; valid: auto"),
    ({"name": "quantize", "calibration": "median"}, {"calibration": "entropy"},
     "calibration='median' is invalid; allowed: minmax"),
])
def test_bad_compression_options_fail_at_config_check(stage, fixed, message):
    with pytest.raises(ConfigError) as err:
        parse_pipeline(_pipe(stage))
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    parse_pipeline(_pipe({**stage, **fixed}))  # the check refuses the typo, not the option
