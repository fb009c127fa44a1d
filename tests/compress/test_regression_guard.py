"""The guard on a regression run judges validation R2 (accuracy is 0 for a real-valued target,
so every candidate used to pass, then regression runs were refused): prune, distill and INT8
quantization on ONNX Runtime, each record naming the metric it judged."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.compress import Budget, distill_run, prune_run, quantize_run


def _val_r2(run_dir):
    """The source model's validation R2, computed here from its predictions (sklearn)."""
    import torch
    from sklearn.metrics import r2_score

    from dlopt.compress._rundir import open_source

    src = open_source(run_dir)
    with torch.no_grad():
        pred = src.model.eval()(src.bundle.val.x).reshape(-1).numpy()
    return r2_score(src.bundle.val.y.numpy(), pred)


def _records_r2(res):
    c = res.summary["compression"]
    assert c["budget"]["metric"] == "r2" and res.before["metric"] == res.after["metric"] == "r2"
    assert "val_accuracy" not in res.after and "r2" in res.reason
    kept = res.run_dir if res.accepted else res.run_dir / "rejected"
    cand = json.loads((kept / "summary.json").read_text())
    assert cand["val"]["r2"] == res.after["val_r2"] and "accuracy" not in cand["val"]


def test_pruning_a_regression_run_is_judged_on_validation_r2(diabetes_run, tmp_path, fast):
    res = prune_run(diabetes_run, tmp_path / "p", method="global", target="sparsity=0.9", finetune_epochs=0,
                    measure=fast)
    assert res.before["val_r2"] == pytest.approx(_val_r2(diabetes_run), abs=1e-5)
    assert res.before["val_r2"] > 0.1  # a trained model: something to lose
    assert not res.accepted and "r2 dropped" in res.reason, res.reason  # 90 % zeros, untuned
    _records_r2(res)
    kept = prune_run(diabetes_run, tmp_path / "p2", method="global", target="sparsity=0.9", finetune_epochs=0,
                     budget=Budget(max_drop_pt=1e6), measure=fast)
    assert kept.accepted and "validation r2 change" in kept.reason
    _records_r2(kept)


def test_int8_regression_is_judged_on_the_onnx_runtime_values(diabetes_run, tmp_path, fast):
    """ORT's output for regression is the predicted value: INT8 R2 stays near FP32's."""
    res = quantize_run(diabetes_run, tmp_path / "q", method="static", calib_samples=128, measure=fast)
    _records_r2(res)
    assert res.after["val_r2"] == pytest.approx(res.before["val_r2"], abs=0.05)
    assert res.after["test_r2"] == pytest.approx(res.before["test_r2"], abs=0.05)


def test_distilling_a_regression_teacher_matches_its_predictions(diabetes_run, tmp_path, fast):
    res = distill_run(diabetes_run, {"name": "mlp", "width": 8, "depth": 1}, tmp_path / "d", epochs=2,
                      budget=Budget(max_drop_pt=1e6), measure=fast)
    assert res.accepted, res.reason
    _records_r2(res)


def test_regression_kd_term_is_the_mse_to_the_teacher():
    """A softmax over one output is constant: the KL term was 0 whatever the student said."""
    from types import SimpleNamespace

    import torch

    from dlopt.compress import KnowledgeDistillation

    teacher = torch.nn.Linear(3, 1)
    x = torch.randn(8, 3)
    student_out = teacher(x).detach() + 2.0
    kd = KnowledgeDistillation(teacher, alpha=1.0, task="regression")
    state = SimpleNamespace(x=x, outputs=student_out, loss=torch.tensor(0.0))
    kd.on_after_loss(state)
    assert float(state.loss) == pytest.approx(4.0, rel=1e-5)




def test_cli_names_the_metric_it_judged(diabetes_run, tmp_path):
    res = CliRunner().invoke(app, ["quantize", str(diabetes_run), "--out", str(tmp_path / "cli"), "--method",
                                   "dynamic", "--no-latency", "--exporter", "legacy", "--max-drop-pt", "1000"])
    assert res.exit_code == 0, res.output
    assert "accepted: within budget: validation r2 change" in res.output and "test r2 " in res.output


def test_taylor_pruning_of_a_regression_run_scores_with_its_loss(diabetes_run, tmp_path, fast):
    """Taylor scoring took the cross-entropy of the real-valued target: 'expected target dtype
    to be Long', after the source was measured."""
    res = prune_run(diabetes_run, tmp_path / "t", method="taylor", target="macs=0.3", finetune_epochs=0,
                    budget=Budget(max_drop_pt=100), measure=fast)
    _records_r2(res)
    assert res.summary["compression"]["candidate_target_met"] and res.after["macs"] < res.before["macs"]
