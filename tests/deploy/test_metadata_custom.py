"""What an export of a run of a user's nn.Module records: the module's class (not the config's
zoo default), and the named dataset it trained on, or none for in-memory data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dlopt.deploy import OnnxModel, export_onnx, run_metadata
from dlopt.train import fit, load

QUICK = dict(epochs=1, batch_size=32, progress=False, threads=1)


class Net(nn.Module):
    """6 features -> 2 classes."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _data(n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.arange(n) % 2
    return (rng.normal(size=(n, 6)) + y[:, None]).astype(np.float32), y


def test_export_of_a_module_on_in_memory_data_names_its_class_and_no_dataset(tmp_path) -> None:
    x, y = _data()
    run = fit(Net(), (x, y), run_dir=tmp_path / "r", **QUICK).run_dir
    loaded = load(run, model=Net())
    path = tmp_path / "net.onnx"
    export_onnx(loaded.model, torch.from_numpy(x[:2]), path, metadata=run_metadata(loaded), check_inputs=x)
    meta = OnnxModel.load(path).metadata
    assert meta.model == {"name": "custom", "class": f"{__name__}.Net"}  # was lenet5
    assert meta.dataset == {}  # was mnist's data config


def test_metadata_of_a_module_on_a_named_dataset_names_that_dataset(tmp_path) -> None:
    x, y = _data()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    name = f"npz:{tmp_path / 'd.npz'}"
    run = fit(Net(), name, run_dir=tmp_path / "r", **QUICK).run_dir
    meta = run_metadata(load(run, model=Net()))
    assert meta["model"] == {"name": "custom", "class": f"{__name__}.Net"}
    assert meta["dataset"]["name"] == name


def test_a_zoo_run_keeps_its_model_and_options(tmp_path) -> None:
    run = fit({"name": "mlp", "width": 8, "depth": 1}, {"name": "digits", "subset": 200}, run_dir=tmp_path / "r",
              **QUICK).run_dir
    meta = run_metadata(load(run))
    assert meta["model"] == {"name": "mlp", "options": {"width": 8, "depth": 1}}
    assert meta["dataset"]["name"] == "digits" and meta["dataset"]["subset"] == 200
