"""Pruning on real runs: structured (torch-pruning) and unstructured, guard, reload from disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlopt.compress import Budget, prune_run, prune_structured
from dlopt.config import load_config
from dlopt.errors import ConfigError


def _outputs_match_onnx(run_dir):
    """The model rebuilt from config + arch.json + safetensors gives the saved ONNX outputs."""
    from dlopt.data import load_data
    from dlopt.deploy import OnnxModel
    from dlopt.train import load

    loaded = load(run_dir)
    x = load_data(loaded.config.data).test.x[:64]
    with torch.inference_mode():
        ours = loaded.model(x).numpy()
    saved = OnnxModel.load(run_dir / "model.onnx").run(x.numpy())
    np.testing.assert_allclose(ours, saved, atol=1e-4)
    return loaded


def test_structured_prune_removes_channels_and_reloads(lenet_run, tmp_path, fast):
    res = prune_run(lenet_run, tmp_path / "p", method="l1", target="sparsity=0.3", round_to=1,
                    finetune_epochs=1, lr=1e-3, budget=Budget(max_drop_pt=100), measure=fast)
    assert res.accepted, res.reason
    arch = json.loads((res.run_dir / "arch.json").read_text())
    assert arch["channels"] != [6, 16] or arch["hidden"] != [120, 84]
    assert res.after["params"] < 0.75 * res.before["params"]
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["accepted"] is True and summary["compression"]["target_met"]
    assert (res.run_dir / "metrics.jsonl").is_file() and not (res.run_dir / ".candidate").exists()
    loaded = _outputs_match_onnx(res.run_dir)
    assert sum(p.numel() for p in loaded.model.parameters()) == res.after["params"]
    # the written config re-runs as is: the fine-tuning's starting weights are kept in the run
    cfg = load_config(res.run_dir / "config.yaml")
    assert Path(cfg.train.transfer.init_from) == (res.run_dir / "init.safetensors").resolve()
    assert Path(cfg.train.transfer.init_from).is_file()


def test_unstructured_global_keeps_sparsity_through_finetuning(lenet_run, tmp_path, fast):
    res = prune_run(lenet_run, tmp_path / "u", method="global", target="sparsity=0.6", finetune_epochs=1,
                    budget=Budget(max_drop_pt=100), measure=fast)
    assert res.after["sparsity"] >= 0.59
    assert res.after["compressed_bytes"] < res.before["compressed_bytes"]
    assert res.after["params"] == res.before["params"]  # dense shapes: same params, same MACs
    assert "not dense latency" in res.summary["compression"]["note"]
    # no lr given: fine-tuned at the source run's own learning rate (rewinding)
    source_lr = load_config(Path(lenet_run) / "config.yaml").train.optim.lr
    assert res.summary["compression"]["options"]["lr"] == source_lr
    assert load_config(res.run_dir / "config.yaml").train.optim.lr == source_lr
    _outputs_match_onnx(res.run_dir)


def test_guard_rejects_over_aggressive_step_and_keeps_input(lenet_run, tmp_path, fast):
    res = prune_run(lenet_run, tmp_path / "r", method="local", target="sparsity=0.98", finetune_epochs=0,
                    measure=fast)
    assert not res.accepted and "dropped" in res.reason
    out = res.run_dir
    # the best model so far (the input) is what the output directory holds
    assert (out / "model.safetensors").read_bytes() == (lenet_run / "model.safetensors").read_bytes()
    assert (out / "rejected" / "model.safetensors").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accepted"] is False and "dropped" in summary["reason"]


@pytest.mark.parametrize("kwargs,needle", [
    ({"method": "magic"}, "valid: bn, global, l1, l2, local, taylor"),
    ({"method": "global", "target": "macs=0.5"}, "only sparsity"),
    ({"target": "macs=1.2"}, "(0, 1)"),
    ({"steps": 0}, "--steps"),
    ({"lr": 0.0}, "--lr=0.0 is invalid"),
])
def test_bad_arguments_are_one_line(lenet_run, tmp_path, kwargs, needle):
    with pytest.raises(ConfigError) as err:
        prune_run(lenet_run, tmp_path / "x", **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name,options,method", [
    ("resnet", {}, "taylor"), ("resnet", {}, "bn"), ("convnet", {}, "l2"),
    ("mlp", {"width": 64, "depth": 2}, "l1"), ("msresnet", {"scales": [1, 2], "depth": 1}, "l1"),
])
def test_structured_methods_rebuild_from_widths(name, options, method):
    from dlopt.compress.prune import rebuild
    from dlopt.models import create_model, summary

    torch.manual_seed(0)
    model = create_model(name, input_shape=(1, 28, 28), num_classes=10, **options)
    x = torch.rand(8, 1, 28, 28)
    if method == "taylor":
        torch.nn.functional.cross_entropy(model(x), torch.arange(8) % 10).backward()
    before = summary(model, (1, 28, 28))
    prune_structured(model, x[:2], method=method, ratio=0.5, round_to=8)
    fresh = rebuild(model.eval(), name, options, input_shape=(1, 28, 28), num_classes=10)
    assert summary(fresh, (1, 28, 28)).macs < before.macs
    with torch.inference_mode():
        torch.testing.assert_close(fresh(x), model(x))


def test_iterative_unstructured_reaches_cumulative_target(lenet_run, tmp_path, fast):
    res = prune_run(lenet_run, tmp_path / "it", method="global", target="sparsity=0.5", steps=2,
                    finetune_epochs=0, budget=Budget(max_drop_pt=100), measure=fast)
    c = res.summary["compression"]
    assert res.accepted and c["steps_kept"] == 2 and c["target_met"]
    assert res.after["sparsity"] == pytest.approx(0.5, abs=0.01)


def test_rounding_keeps_the_nearest_multiple_in_every_stage():
    """Widths are the multiple of round_to nearest to (1 - ratio) x width, stage by stage, and
    shrink monotonically with the ratio (torch-pruning's own rounding left a stage whole when it
    rounded to 0 and cut the next one to 8 channels instead)."""
    from dlopt.compress.prune import _RATIOS
    from dlopt.models import arch_options, create_model

    def widths(ratio: float, round_to: int = 8, width: float = 2.0) -> list[int]:
        torch.manual_seed(0)
        model = create_model("resnet", input_shape=(1, 28, 28), num_classes=10, depth=8, width=width)
        prune_structured(model, torch.rand(2, 1, 28, 28), method="l1", ratio=ratio, round_to=round_to)
        return arch_options(model)["channels"]

    assert widths(0.8) == [8, 8, 8, 16, 16, 24, 24]  # stages 32/64/128 x 0.2 = 6.4/12.8/25.6
    assert widths(0.3, round_to=16) == [16, 16, 16, 48, 48, 96, 96]  # 22.4/44.8/89.6
    # past torch-pruning's 0.95 cap (stages 128/256/512 x 0.05 = 6.4/12.8/25.6): multiples still
    assert widths(0.99, width=8.0) == [8, 8, 8, 16, 16, 32, 32]
    previous = [32, 32, 32, 64, 64, 128, 128]
    for ratio in _RATIOS:
        now = widths(ratio)
        assert all(w % 8 == 0 and 8 <= w <= p for w, p in zip(now, previous)), (ratio, now, previous)
        previous = now


def test_rounding_leaves_a_layer_narrower_than_round_to_alone():
    from dlopt.models import arch_options, create_model

    model = create_model("lenet5", input_shape=(1, 28, 28), num_classes=10)
    prune_structured(model, torch.rand(2, 1, 28, 28), method="l1", ratio=0.5, round_to=8)
    arch = arch_options(model)
    assert arch["channels"] == [6, 8] and arch["hidden"] == [64, 40]  # 6 < 8 kept; 16/120/84 halved, rounded


def test_taylor_prune_run_removes_channels(lenet_run, tmp_path, fast):
    """Taylor scores need the gradients on every pruned copy (deepcopy drops .grad: was an
    AttributeError traceback from torch-pruning on every model)."""
    res = prune_run(lenet_run, tmp_path / "t", method="taylor", target="macs=0.3", finetune_epochs=0,
                    budget=Budget(max_drop_pt=100), measure=fast)
    assert res.after["macs"] < 0.8 * res.before["macs"]


def test_structured_prune_refuses_a_model_without_widths_up_front(gru_run, tmp_path, fast):
    from dlopt.errors import ModelError

    out = tmp_path / "g"
    with pytest.raises(ModelError) as err:
        prune_run(gru_run, out, method="l1", measure=fast)
    msg = str(err.value)
    assert "'gru' has no width options" in msg and "cnn1d" in msg and "global|local" in msg and "\n" not in msg
    # refused before measuring: nothing in the output directory, so a retry needs no --overwrite
    assert not out.exists()  # made by the step: removed


def test_structured_prune_refuses_a_linear_model(tmp_path, fast):
    """An mlp of depth 0 has only its output layer: was refused after measuring, with 'option
    hidden = [] is invalid', an option the user never set."""
    import dlopt
    from dlopt.errors import ModelError
    from dlopt.train import recipe_config

    cfg = recipe_config(data={"name": "iris"}, model={"name": "mlp", "depth": 0}, epochs=1, progress=False)
    run = dlopt.fit(config=cfg, run_dir=tmp_path / "iris").run_dir
    with pytest.raises(ModelError, match="nothing to remove structurally"):
        prune_run(run, tmp_path / "p", method="l1", measure=fast)
    assert not (tmp_path / "p").exists()


def test_bn_method_refuses_a_model_without_batchnorm(lenet_run, tmp_path, fast):
    """BN-scale importance on a model without BatchNorm removed nothing and was 'accepted'."""
    with pytest.raises(ConfigError) as err:
        prune_run(lenet_run, tmp_path / "b", method="bn", finetune_epochs=0, measure=fast)
    assert "no BatchNorm layer" in str(err.value) and "l1, l2, taylor" in str(err.value)


def test_structured_prune_of_attention_fuse_is_quiet():
    """torch-pruning warned 'Unwrapped parameters detected' once per grid point (18 per prune)
    for msresnet's attention fuse, whose widths stay anyway."""
    import warnings

    from dlopt.models import create_model

    torch.manual_seed(0)
    model = create_model("msresnet", input_shape=(1, 12, 12), num_classes=3, scales=[1, 2], depth=1,
                         fuse="attention")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prune_structured(model, torch.rand(2, 1, 12, 12), method="l1", ratio=0.5, round_to=8)


def test_unstructured_prunes_recurrent_weights(gru_run, tmp_path, fast):
    """A GRU's recurrent matrices are most of its weights: only its linear head was pruned,
    so sparsity=0.5 left 98 % of the weights dense."""
    from dlopt.train import load

    res = prune_run(gru_run, tmp_path / "u", method="global", target="sparsity=0.5", finetune_epochs=1,
                    budget=Budget(max_drop_pt=100), measure=fast)
    weights = {n: p for n, p in load(res.run_dir).model.named_parameters() if "weight" in n}
    zeros = sum(int((p == 0).sum()) for p in weights.values()) / sum(p.numel() for p in weights.values())
    assert zeros == pytest.approx(0.5, abs=0.01) == res.after["sparsity"]
    assert (weights["rnn.weight_hh_l0"] == 0).float().mean() > 0.2  # kept zero through fine-tuning


def test_target_met_is_false_when_the_guard_rejects_a_finished_candidate(lenet_run, tmp_path):
    """Every step passed the accuracy check, then the latency budget rejected the result: the
    output holds the input model, yet target_met read true."""
    from dlopt.compress import MeasureSettings

    measure = MeasureSettings(batch_sizes=(1,), latency_batch=1, min_runs=3, min_seconds=0.0, exporter="legacy")
    res = prune_run(lenet_run, tmp_path / "p", method="l1", target="macs=0.5", finetune_epochs=0,
                    budget=Budget(max_drop_pt=100, latency_ms=1e-6), measure=measure)
    c = res.summary["compression"]
    assert not res.accepted and "misses the budget" in res.reason and c["steps_kept"] == 1
    assert c["candidate_target_met"] and not c["target_met"]
