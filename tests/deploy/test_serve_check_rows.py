"""The pipeline's serve_check stage sends the run's held-out test rows, also for a CSV set
without a test split of its own (which training carves from the file), never training rows."""

from __future__ import annotations

import numpy as np
import torch

from dlopt.config import DataConfig
from dlopt.data import Preprocessor, splits_of
from dlopt.deploy import export_onnx
from dlopt.pipeline._stages_deploy import _raw_samples


def test_serve_check_takes_the_runs_test_rows_of_a_csv_set(tmp_path):
    rows = "".join(f"{i},{i % 7},{i % 2}\n" for i in range(80))  # every row distinct
    (tmp_path / "train.csv").write_text("a,b,y\n" + rows)
    cfg = DataConfig.model_validate({"name": f"csv:{tmp_path / 'train.csv'}", "target": "y"})
    split = splits_of(cfg)
    pre = Preprocessor.build().fit(split.train[0])
    path = tmp_path / "model.onnx"
    export_onnx(torch.nn.Linear(2, 2), torch.zeros(2, 2), path, exporter="legacy",
                metadata={"dataset": cfg.model_dump(mode="json"), "preprocess": pre})
    x, y = _raw_samples(path, 10)
    np.testing.assert_array_equal(x, split.test[0][:10])
    np.testing.assert_array_equal(y, split.test[1][:10])
    assert not {tuple(r) for r in x} & {tuple(r) for r in split.train[0]}
