"""Knowledge distillation: the loss, the teacher-logit cache, and a real KD run."""

from __future__ import annotations

import json

import pytest
import torch

from dlopt.compress import Budget, distill_run, kd_loss
from dlopt.errors import ConfigError


def test_kd_loss_is_zero_for_equal_logits_and_positive_otherwise():
    a = torch.randn(16, 10)
    assert kd_loss(a, a, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(a, torch.randn(16, 10), 4.0).item() > 0


def test_logit_cache_finds_shuffled_rows_and_misses_new_ones():
    from dlopt.compress.distill import _LogitCache

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(50, 1, 4, 4)
    cache = _LogitCache(teacher, x)
    idx = torch.randperm(50)[:20]
    with torch.no_grad():
        torch.testing.assert_close(cache.lookup(x[idx]), teacher(x[idx]))
    assert cache.lookup(x[idx] + 0.01) is None  # augmented rows: fall back to a teacher forward


def test_distill_run_trains_a_smaller_student(lenet_run, tmp_path, fast):
    res = distill_run(lenet_run, {"name": "lenet5", "width": 0.5}, tmp_path / "kd", epochs=1, temperature=4.0,
                      alpha=0.9, baseline=True, budget=Budget(max_drop_pt=100), measure=fast)
    c = res.summary["compression"]
    assert res.accepted and c["params_ratio"] < 0.5
    # the same student trained without KD, for comparison: its accuracy and training time
    assert 0 <= c["nokd"]["test_accuracy"] <= 1 and c["nokd"]["train_seconds"] > 0
    assert not (tmp_path / "kd" / "nokd").exists()  # trained in the work dir, which is removed
    assert c["teacher_cache_hits"] > 0  # no augmentation: teacher logits came from the cache
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["accepted"] is True and summary["model"] == "lenet5"
    from dlopt.train import load

    assert sum(p.numel() for p in load(res.run_dir).model.parameters()) == res.after["params"]


def test_distill_from_student_run_with_hint(lenet_run, tmp_path, fast):
    res = distill_run(lenet_run, lenet_run, tmp_path / "kd2", epochs=1, hint="features.0:features.0",
                      budget=Budget(max_drop_pt=100), measure=fast)
    assert res.summary["compression"]["method"] == "kd+hint"
    assert res.summary["compression"]["teacher_cache_hits"] == 0  # hints need the teacher forward


@pytest.mark.parametrize("kwargs,needle", [({"temperature": 0}, "--temperature"), ({"alpha": 1.5}, "--alpha"),
                                           ({"hint": "nocolon"}, "STUDENT_LAYER:TEACHER_LAYER")])
def test_bad_arguments(lenet_run, tmp_path, kwargs, needle):
    with pytest.raises(ConfigError) as err:
        distill_run(lenet_run, "lenet5", tmp_path / "x", **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_hint_on_a_layer_with_tuple_output_is_one_error(lenet_run, tmp_path, fast):
    """A GRU layer returns (outputs, hidden): was an AttributeError traceback mid-training; found
    only in training, it left OUT/.work behind, so the retry failed on a non-empty OUT."""
    for _ in range(2):  # the retry, without --overwrite, fails the same way
        with pytest.raises(ConfigError) as err:
            distill_run(lenet_run, {"name": "gru", "width": 8}, tmp_path / "h", epochs=1, hint="rnn:features",
                        measure=fast)
        assert "student layer 'rnn' outputs a tuple" in str(err.value) and "\n" not in str(err.value)
        assert not (tmp_path / "h").exists()  # made by the step: removed


def test_student_run_whose_weights_do_not_fit_leaves_out_empty(mlp_run, diabetes_run, tmp_path, fast):
    """A student run trained on other data (10 inputs, not 784) fails when training loads its
    weights, after the teacher's export: OUT/.work was left behind."""
    from dlopt.errors import DloptError

    out = tmp_path / "w"
    with pytest.raises(DloptError):
        distill_run(mlp_run, diabetes_run, out, epochs=1, measure=fast)
    assert not out.exists()  # made by the step: removed


@pytest.mark.parametrize("student,hint,needle", [
    ("cnn1d", None, "needs 1-D input_shape"),
    ("lenet5", "nope:features", "the student has no layer 'nope'"),
])
def test_student_that_cannot_train_is_refused_before_any_work(lenet_run, tmp_path, fast, student, hint, needle):
    """Was refused only after the teacher's export, leaving OUT/.work: a retry needed --overwrite."""
    from dlopt.errors import DloptError

    out = tmp_path / "s"
    with pytest.raises(DloptError) as err:
        distill_run(lenet_run, student, out, epochs=1, hint=hint, measure=fast)
    assert needle in str(err.value)
    assert not out.exists()  # made by the step: removed
