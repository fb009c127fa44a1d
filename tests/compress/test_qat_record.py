"""A quantizer that trains (QAT, binary/ternary) records that training in the delivered run's
summary: the epochs, steps and seconds it fine-tuned, as its metrics.jsonl shows."""

from __future__ import annotations

import pytest

from dlopt.compress import Budget, quantize_run

_ANY_DROP = Budget(max_drop_pt=100.0)  # the guard accepts: the delivered model is the candidate's


@pytest.mark.parametrize("run, method", [("lenet_run", "qat"), ("mlp_run", "binary")])
def test_a_training_quantizers_summary_records_its_epochs(request, tmp_path, fast, run, method):
    res = quantize_run(request.getfixturevalue(run), tmp_path / method, method=method, epochs=2,
                       calib_samples=64, budget=_ANY_DROP, measure=fast)
    assert res.accepted, res.reason
    s = res.summary
    assert s["epochs"] == 2  # was 0: the model was said to be untrained
    assert s["steps"] > 0 and s["train_seconds"] > 0
    # the source's own training stays apart, under source_training
    assert s["source_training"]["best_epoch"] == 1
