"""Config schemas, YAML loading, overrides and their one-line errors."""

from __future__ import annotations

import pytest
import yaml

from dlopt.config import RunConfig, apply_overrides, dump_config, load_config
from dlopt.errors import ConfigError


def test_defaults_roundtrip_yaml(tmp_path):
    cfg = load_config()
    path = tmp_path / "c.yaml"
    dump_config(cfg, path)
    again = load_config(path)
    assert again == cfg
    assert dump_config(again) == path.read_text()


def test_overrides_apply_and_parse_types():
    cfg = load_config(overrides=["train.optim.lr=0.01", "train.epochs=5", "model.name=mlp", "train.compile=true"])
    assert cfg.train.optim.lr == 0.01
    assert cfg.train.epochs == 5
    assert cfg.model.name == "mlp"
    assert cfg.train.compile is True


def test_overrides_do_not_mutate_input():
    raw = {"train": {"epochs": 1}}
    out = apply_overrides(raw, ["train.epochs=4"])
    assert raw == {"train": {"epochs": 1}} and out["train"]["epochs"] == 4


def test_overrides_reach_search_space_axes_named_by_dotted_keys():
    from dlopt.config import apply_overrides

    data = {"search": {"space": {"train.optim.lr": {"type": "float", "low": 1e-4, "high": 0.1}}}}
    out = apply_overrides(data, ["search.space.train.optim.lr.low=0.001", "train.optim.lr=0.01"])
    assert out["search"]["space"]["train.optim.lr"] == {"type": "float", "low": 0.001, "high": 0.1}
    assert out["train"]["optim"]["lr"] == 0.01  # no dotted key there: plain sections
    assert data["search"]["space"]["train.optim.lr"]["low"] == 1e-4  # the input is not changed


def test_the_bad_override_line_gives_an_example_that_works():
    with pytest.raises(ConfigError) as info:
        load_config(overrides=["novalue"])
    example = str(info.value).rsplit("e.g. ", 1)[1]
    assert load_config(overrides=[example]).train.optim.lr == 0.01


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.epochz=3", "unknown key 'train.epochz'"),
        ("train.epochs=abc", "train.epochs='abc'"),
        ("train.optim.lr=-1", "train.optim.lr=-1"),
        ("train.precision=fp8", "'fp32', 'bf16', 'fp16' or 'auto'"),
        ("train.retain_host_memory=maybe", "train.retain_host_memory='maybe': Input should be a valid boolean"),
        ("data.val_fraction=1.5", "data.val_fraction=1.5"),
        ("train.optim.name=sgdx", "unknown optimizer 'sgdx'"),
        ("train.schedule.name=zigzag", "unknown schedule 'zigzag'"),
        ("data.name=nope", "nope"),
        ("model.name=nope", "nope"),
        ("train=3", "train"),
        ("novalue", "bad override"),
        ("train.schedule.milestones=[-1, 0]", "train.schedule.milestones.0=-1: Input should be greater than 0"),
        ("train.optim.lr=inf", "train.optim.lr='inf': Input should be a finite number"),
        ("train.loss.label_smoothing=nan", "Input should be a finite number"),
    ],
)
def test_bad_values_give_one_line(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    msg = str(info.value)
    assert needle in msg
    assert "\n" not in msg


def test_unknown_key_lists_allowed():
    with pytest.raises(ConfigError, match=r"allowed: .*batch_size.*epochs"):
        load_config(overrides=["train.epochz=3"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="mapping"):
        load_config(notmap)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)


def test_schema_is_run_config():
    assert isinstance(load_config(), RunConfig)
