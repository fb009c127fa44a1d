"""Compression and deployment options are checked (the compression room's own registries,
the exporters, batch sizes) before any stage runs: a typo must not wait until the upstream
stages have trained."""

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
    ({"name": "export", "exporter": "dynamoo"}, {"exporter": "legacy"},
     "'export': exporter='dynamoo' is unknown; allowed: dynamo, legacy"),
    ({"name": "bench", "batch_sizes": [0, 8]}, {"batch_sizes": [1, 8]},
     "'bench': batch_sizes.0=0: Input should be greater than or equal to 1"),
])
def test_bad_compression_options_fail_at_config_check(stage, fixed, message):
    with pytest.raises(ConfigError) as err:
        parse_pipeline(_pipe(stage))
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    parse_pipeline(_pipe({**stage, **fixed}))  # the check refuses the typo, not the option


def test_a_distill_student_named_by_stage_is_an_input():
    """``student: small`` runs the ``small`` stage first, wherever the file puts it, and makes
    the distill stage's cache key follow it (a changed student reruns the distillation)."""
    from dlopt.pipeline import stage_order

    doc = _pipe({"name": "distill", "student": "small"})
    doc["stages"].append({"name": "small", "type": "train", "config": {"model": {"width": 0.5}}})
    cfg, _ = parse_pipeline(doc)
    assert [s.name for s in stage_order(cfg)] == ["train", "small", "distill"]
    assert cfg.stage("distill").refs() == ["train", "small"]
    doc["stages"][2] = {"name": "small", "type": "export", "input": "train"}  # a student must be a run
    with pytest.raises(ConfigError, match="'distill': inputs entry 'small' gives a 'onnx'; distill takes: run"):
        parse_pipeline(doc)
