"""What a run of a user's own nn.Module on in-memory data records: config.yaml names the
module's class and in-memory data (and ``dlopt train`` refuses to rebuild either), the summary
says which rows its test metrics come from, a resume on other data is refused, and a model
dlopt cannot drive (tuple/dict output, two inputs) is one clear line."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import yaml
from torch import nn
from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.errors import ConfigError, ModelError
from dlopt.train import fit, load

from train_helpers import one_error_line

QUICK = dict(epochs=1, batch_size=32, progress=False, threads=1)
CLASS = f"{__name__}.Mlp"


class Mlp(nn.Module):
    """8 features -> 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class _TupleOut(Mlp):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return super().forward(x), x


class _DictOut(Mlp):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": super().forward(x), "features": x}


class _TwoInputs(Mlp):
    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return super().forward(x * mask)


def _blobs(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (rng.normal(size=(n, 8)) + 2.0 * np.eye(8)[y]).astype(np.float32), y


def test_config_yaml_names_the_module_and_in_memory_data_and_dlopt_train_refuses_it(tmp_path) -> None:
    x, y = _blobs()
    res = fit(Mlp(), (x, y), run_dir=tmp_path / "r", **QUICK)
    saved = yaml.safe_load((res.run_dir / "config.yaml").read_text())
    assert saved["model"] == {"name": "custom", "class": CLASS}
    assert saved["data"]["name"] == "in-memory"
    # it used to say lenet5 / mnist, and `dlopt train` trained LeNet-5 on MNIST from it
    out = CliRunner().invoke(app, ["train", str(res.run_dir / "config.yaml"), "--run-dir", str(tmp_path / "b")])
    line = one_error_line(out, 2)
    assert f"a user nn.Module ({CLASS}) on in-memory data" in line and "dlopt.fit(Mlp(...), (x, y)" in line
    assert not (tmp_path / "b").exists()
    # the record still loads (with the module) and retrains from Python, as the line says
    with torch.no_grad():
        expected = (res.model(torch.from_numpy(x)).argmax(1).numpy() == y).mean()
    assert load(res.run_dir, model=Mlp()).evaluate((x, y))["accuracy"] == pytest.approx(expected)
    from dlopt import load_config

    rerun = fit(Mlp(), (x, y), config=load_config(res.run_dir / "config.yaml"), run_dir=tmp_path / "rerun")
    assert rerun.summary["test"] == res.summary["test"]


def test_a_zoo_model_on_in_memory_data_and_a_module_on_a_named_set(tmp_path) -> None:
    x, y = _blobs()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    zoo = fit({"name": "mlp", "hidden": [16]}, (x, y), run_dir=tmp_path / "zoo", **QUICK)
    saved = yaml.safe_load((zoo.run_dir / "config.yaml").read_text())
    assert saved["model"]["name"] == "mlp" and saved["data"]["name"] == "in-memory"
    named = fit(Mlp(), f"npz:{tmp_path / 'd.npz'}", run_dir=tmp_path / "named", **QUICK)
    saved = yaml.safe_load((named.run_dir / "config.yaml").read_text())
    assert saved["model"]["name"] == "custom" and saved["data"]["name"] == f"npz:{tmp_path / 'd.npz'}"
    out = CliRunner().invoke(app, ["train", str(named.run_dir / "config.yaml"), "--run-dir", str(tmp_path / "x")])
    line = one_error_line(out, 2)
    assert "in-memory" not in line and "dlopt.fit(Mlp(...), config=dlopt.load_config(" in line


def test_loading_a_custom_run_without_its_module_says_how(tmp_path) -> None:
    res = fit(Mlp(), _blobs(), run_dir=tmp_path / "r", **QUICK)
    with pytest.raises(ModelError, match=r"custom nn.Module.*dlopt\.load\('.*r', model=Mlp\(\.\.\.\)\)"):
        load(res.run_dir)
    line = one_error_line(CliRunner().invoke(app, ["eval", str(res.run_dir)]), 2)
    assert "model=Mlp(...)" in line


def test_summary_says_which_rows_the_test_metrics_come_from(tmp_path, caplog) -> None:
    x, y = _blobs()
    with caplog.at_level(logging.WARNING, logger="dlopt.train.api"):
        res = fit(Mlp(), (x, y), run_dir=tmp_path / "val", **QUICK)
    assert res.summary["test_split"] == "validation" and res.summary["n_test"] == res.summary["n_val"]
    assert any("no test split" in r.getMessage() and "validation" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dlopt.train.api"):
        res = fit(Mlp(), (x, y), run_dir=tmp_path / "train", val_fraction=0.0, **QUICK)
    assert res.summary["test_split"] == "train" and res.summary["n_test"] == res.summary["n_train"]
    assert any("training" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dlopt.train.api"):
        res = fit(Mlp(), {"train": (x[:90], y[:90]), "test": (x[90:], y[90:])}, run_dir=tmp_path / "test", **QUICK)
    assert res.summary["test_split"] == "test"
    assert not any("no test split" in r.getMessage() for r in caplog.records)
    with caplog.at_level(logging.WARNING, logger="dlopt.train.api"):
        fit(Mlp(), (x, y), run_dir=tmp_path / "cv", cv=2, **QUICK)
    assert any("rows each fold trains or validates on" in r.getMessage() for r in caplog.records)


def test_resume_on_other_in_memory_data_is_refused(tmp_path) -> None:
    x, y = _blobs()
    first = fit(Mlp(), (x, y), run_dir=tmp_path / "r", **QUICK)
    assert first.summary["data_fingerprint"]["rows"] == len(x)
    for other in ((x[:60], y[:60]), (x + 1.0, y)):  # fewer rows; same shapes, other values
        with pytest.raises(ConfigError, match=r"resume .* on other data: .*120 rows.*; pass the run's data"):
            fit(Mlp(), other, run_dir=tmp_path / "r", resume=True, **{**QUICK, "epochs": 2})
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["train"]["epochs"] == 1
    again = fit(Mlp(), (x, y), run_dir=tmp_path / "r", resume=True, **{**QUICK, "epochs": 2})
    assert again.summary["epochs"] == 2


def test_a_run_saved_before_the_record_still_resumes(tmp_path) -> None:
    x, y = _blobs()
    run = fit(Mlp(), (x, y), run_dir=tmp_path / "r", **QUICK).run_dir
    old = yaml.safe_load((run / "config.yaml").read_text())
    old["model"], old["data"]["name"] = {"name": "lenet5"}, "mnist"  # what such runs saved
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    again = fit(Mlp(), (x, y), run_dir=run, resume=True, **{**QUICK, "epochs": 2})
    assert again.summary["epochs"] == 2
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["name"] == "custom" and saved["data"]["name"] == "in-memory"


@pytest.mark.parametrize(("module", "said"), [
    (_TupleOut, r"returned a tuple of 2, not one tensor.*wrap the model"),
    (_DictOut, r"returned a dict \(keys 'logits', 'features'\), not one tensor.*wrap the model"),
    (_TwoInputs, r"forward takes 2 inputs \(x, mask\).*one input tensor"),
])
def test_a_model_dlopt_cannot_drive_is_one_line(tmp_path, module, said) -> None:
    with pytest.raises(ModelError, match=said):
        fit(module(), _blobs(), run_dir=tmp_path / "r", **QUICK)
    assert not (tmp_path / "r").exists()
