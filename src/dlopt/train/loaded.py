"""``load(run_or_checkpoint)``: a trained model back, with its preprocessing, ready to predict.

A run directory gives its deployable ``model.safetensors`` (falling back to
``checkpoints/last`` for an unfinished run); a checkpoint directory gives its weights (the
EMA weights when the run used EMA). The architecture is rebuilt from ``config.yaml`` (plus
``arch.json`` for pruned models); a run trained on a custom ``nn.Module`` needs ``model=``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlopt.config import RunConfig, parse_config
from dlopt.data import DatasetInfo, Split
from dlopt.errors import ConfigError, DataError, ModelError, first_line
from dlopt.train import checkpoint as io
from dlopt.train import rundir
from dlopt.train.device import select_device
from dlopt.train.inputs import check_labels
from dlopt.train.inputs_raw import check_finite, check_raw_finite, columns_by_name
from dlopt.train.losses import create_loss
from dlopt.train.metrics import compute_metrics, predict_outputs, scores_from_outputs
from dlopt.train.techniques.precision import autocast_context, resolve_precision

__all__ = ["LoadedModel", "load", "evaluate", "predict", "delivered_onnx", "trained_custom_model"]

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A trained model (eval mode) with its config, dataset info and preprocessing."""

    model: nn.Module
    config: RunConfig
    info: DatasetInfo
    preprocessor: Any
    run_dir: Path | None
    device: torch.device
    class_weights: list[float] | None = None  # the balanced loss weights of the training labels

    @property
    def imputes(self) -> bool:
        """True when the saved preprocessing fills missing raw values (``Preprocessor.imputes``)."""
        return self.preprocessor is not None and self.preprocessor.imputes

    def prepare(self, x_raw: Any) -> torch.Tensor:
        """Raw inputs -> model inputs ``(N, *input_shape)`` via the saved preprocessing."""
        x = np.asarray(x_raw)
        check_raw_finite(x, "input", missing=self.imputes)
        if self.preprocessor is not None:
            try:
                x = self.preprocessor.transform(x)
            except (ValueError, TypeError) as exc:  # e.g. text in a numeric column
                raise DataError(f"preprocessing failed on input of shape {x.shape} ({first_line(exc)})") from None
        x = check_finite(np.asarray(x, dtype=np.float32))
        shape = tuple(self.info.input_shape)
        per = int(np.prod(shape))
        if x.size % per != 0:
            raise DataError(f"input of shape {x.shape} does not fit the model input {shape}")
        return torch.from_numpy(np.ascontiguousarray(x.reshape(-1, *shape)))

    def predict(self, x_raw: Any, *, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray | None]:
        """``(pred, proba)``: class ids and probabilities for classification, values and None
        for regression. ``x_raw`` is one sample or a batch, as the dataset stores it."""
        x = self.prepare(x_raw)
        batches = ((x[i:i + batch_size].to(self.device), torch.zeros(0)) for i in range(0, len(x), batch_size))
        outputs, _ = predict_outputs(self.model, batches)
        scores = scores_from_outputs(outputs, self.info.task).cpu().numpy()
        if self.info.task == "regression":
            return scores, None
        return scores.argmax(1), scores

    def evaluate(self, data: Any = None, *, batch_size: int | None = None,
                 onnx: str | Path | None = None) -> dict[str, float]:
        """Metrics on ``data``: None -> this run's raw test split through the saved
        preprocessing (= the summary's test metrics; refused for a run fit on in-memory data,
        whose config names no dataset it saw); a dataset name -> that set's
        test split; ``(x_raw, y)`` -> raw arrays (the saved preprocessing is applied); a
        ``Split`` -> already preprocessed tensors. ``batch_size`` defaults to the run's
        ``train.eval_batch_size``. ``onnx``: score that file of this model (e.g. the run's
        ``model.int8.onnx``) on ONNX Runtime instead of the PyTorch model; same metrics."""
        split = self._split(data)
        if split.input_shape != tuple(self.info.input_shape):
            what = f"dataset {data!r}" if isinstance(data, str) else "evaluation data"
            raise DataError(f"{what} has inputs of shape {split.input_shape}; "
                            f"the model takes {tuple(self.info.input_shape)}")
        check_labels(split, self.info.out_features, task=self.info.task, what="evaluation")
        size = batch_size or self.config.train.eval_batch_size
        if onnx is None:
            outputs, targets = predict_outputs(self.model, split.batches(size, self.device),
                                               forward_context=self._forward_context())
        else:
            outputs, targets = _onnx_outputs(onnx, split, size), split.y
        return compute_metrics(outputs, targets, task=self.info.task, loss_fn=self._loss(outputs.device))

    def _forward_context(self) -> Any:
        """The autocast training's validation and test pass ran under (``train.precision`` on
        this device), so the scores are the summary's, not the fp32 model's."""
        precision = resolve_precision(self.config.train.precision, self.device)
        return autocast_context(self.device, precision)

    def _loss(self, device: torch.device) -> Any:
        """The loss training minimised and reported (class weights from its training labels)."""
        c = self.config.train.loss
        weight = None if self.class_weights is None else torch.tensor(self.class_weights, device=device)
        if weight is None and c.class_weights == "balanced" and self.info.task == "classification":
            log.warning("%s saved no class weights (trained before they were kept); the loss is unweighted",
                        self.run_dir)
        return create_loss(c.name, task=self.info.task, label_smoothing=c.label_smoothing,
                           huber_delta=c.huber_delta, weight=weight)

    def _split(self, data: Any) -> Split:
        if isinstance(data, Split):
            return data
        if data is None:
            return self._own_test_split()
        if isinstance(data, str):
            return self._test_split(self.config.data.model_copy(update={"name": data}))
        if isinstance(data, (tuple, list)) and len(data) == 2:
            return self._raw_split(data[0], data[1])
        raise DataError(f"evaluate: data must be None, a dataset name, (x, y) or a Split; got {type(data).__name__}")

    def _raw_split(self, x_raw: Any, y_raw: Any) -> Split:
        y = torch.tensor(np.asarray(y_raw))  # a copy: torch warns on a read-only array
        y = y.float() if self.info.task == "regression" else y.long()
        return Split(self.prepare(x_raw), y.reshape(-1))

    def _own_test_split(self) -> Split:
        self._check_trained_on_config_data()
        return self._test_split(self.config.data)

    def _test_split(self, data_cfg: Any) -> Split:
        """``data_cfg``'s raw test split through the run's SAVED preprocessing. Refitting it (as
        ``load_data`` would) fits on other rows than the model's: a cross-validation fold would
        be scored on other inputs than its summary, another dataset on its own statistics."""
        if self.preprocessor is None:  # no saved preprocessing: the data's own is all there is
            from dlopt.data import load_data

            return load_data(data_cfg).test
        from dlopt.data import splits_of

        rs = splits_of(data_cfg)
        x = _features_of_run(rs.test[0], rs.raw.feature_names, self.preprocessor.feature_names, data_cfg.name)
        y = rs.test[1]
        want = self.preprocessor.raw_shape
        if want is not None and tuple(x.shape[1:]) != tuple(want):
            raise DataError(f"dataset {data_cfg.name!r} has raw inputs of shape {tuple(x.shape[1:])}; "
                            f"the run takes {tuple(want)}")
        return self._raw_split(x, y)

    def _check_trained_on_config_data(self) -> None:
        """A run fitted on in-memory data saves the default ``data.name``; its test split is
        not that dataset's, so evaluating it there would be silently wrong."""
        if self.info.name != self.config.data.name:
            raise DataError(f"{self.run_dir} was trained on in-memory data ({self.info.name!r}), not on "
                            f"data.name={self.config.data.name!r}; pass the data: evaluate((x, y)) "
                            f"or dlopt eval RUN --data NAME")


def _features_of_run(x: np.ndarray, names: list[str], columns: list[str], source: str) -> np.ndarray:
    """The table ``x`` (columns ``names``) with the run's feature ``columns`` picked by name, as
    ``dlopt predict`` picks a header's: a CSV of other column order is no other data. Unnamed
    on either side (an npz table, a run saved before names were kept): by position."""
    if not names or not columns or names == columns:
        return x
    return x[:, columns_by_name(names, columns, f"dataset {source}")]


def _read_config(d: Path, meta: dict[str, Any] | None) -> RunConfig:
    if meta and "config" in meta:
        return parse_config(meta["config"])
    if (d / rundir.CONFIG).is_file():
        from dlopt.config import load_config

        return load_config(d / rundir.CONFIG)
    raise ConfigError(f"{d}: no {rundir.CONFIG} found next to the weights")


def _read_info(d: Path, meta: dict[str, Any] | None) -> DatasetInfo:
    raw = (meta or {}).get("info")
    if raw is None and (d / rundir.SUMMARY).is_file():
        raw = json.loads((d / rundir.SUMMARY).read_text()).get("data_info")
    if raw is None:
        raise ConfigError(f"{d}: no dataset info (summary.json data_info or checkpoint manifest)")
    raw = dict(raw)
    raw["input_shape"] = tuple(raw["input_shape"])
    return DatasetInfo(**raw)


def _named_as_config(info: DatasetInfo, recorded: str) -> DatasetInfo:
    """``info`` with the config's absolute data name where it names the same file: runs saved
    before their dataset info did so kept the relative ``csv:``/``npz:`` name they were given,
    and would read as trained on in-memory data."""
    if info.name == recorded or not _same_file(recorded, info.name):
        return info
    return replace(info, name=recorded)


def _same_file(recorded: str, saved: str) -> bool:
    """Whether ``saved`` (a ``<format>:<path>``, maybe relative to a working directory not
    known now) names the file of ``recorded`` (its absolute form): a relative path must be its
    last parts."""
    from dlopt.data._registry import split_format

    a, b = split_format(recorded), split_format(saved)
    if a is None or b is None or a[0] != b[0] or not os.path.isabs(a[1]):
        return False
    path = os.path.normpath(Path(b[1]).expanduser())
    if os.path.isabs(path):
        return path == os.path.normpath(a[1])
    parts = tuple(part for part in Path(path).parts if part != "..")
    return bool(parts) and Path(a[1]).parts[-len(parts):] == parts


def _weights_and_meta(path: Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any] | None]:
    """(run dir, weights, checkpoint meta or None)."""
    if path.is_dir() and (path / rundir.WEIGHTS).is_file() and not (path / io.MANIFEST).is_file():
        return path, io.load_weights((path / rundir.WEIGHTS).read_bytes(), name=str(path / rundir.WEIGHTS)), None
    ckpt = io.read_checkpoint(path)
    weights = ckpt.model_weights  # evaluate what the run evaluated
    run_dir = ckpt.path.parent.parent if ckpt.path.parent.name == rundir.CHECKPOINTS else ckpt.path
    return run_dir, weights, ckpt.meta


def load(path: str | Path, *, model: nn.Module | None = None, device: str = "cpu") -> LoadedModel:
    """Load a run directory or checkpoint (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"run or checkpoint not found: {p}")
    folds = sorted(p.glob("fold-*/")) if p.is_dir() and not (p / rundir.WEIGHTS).exists() else []
    if folds:  # a cross-validation run keeps one model per fold, none of its own
        raise ConfigError(f"{p} is a cross-validation run; load one of its folds: "
                          f"{', '.join(str(f) for f in folds[:3])}{', ...' if len(folds) > 3 else ''}")
    _check_not_onnx_only(p)
    run_dir, weights, meta = _weights_and_meta(p)
    cfg = _read_config(run_dir, meta)
    info = _named_as_config(_read_info(run_dir, meta), cfg.data.name)
    if model is None:
        if trained_custom_model(run_dir, meta=meta):
            cls = str(cfg.model.options().get("class", "MyModule")).rsplit(".", 1)[-1]
            raise ModelError(f"{p} was trained on a custom nn.Module; pass it as load(..., model=...), in Python: "
                             f"dlopt.load({str(p)!r}, model={cls}(...))")
        from dlopt.models import create_model

        arch = json.loads((run_dir / "arch.json").read_text()) if (run_dir / "arch.json").is_file() else {}
        model = create_model(cfg.model.name, input_shape=info.input_shape, num_classes=info.out_features,
                             **{**cfg.model.options(), **arch})
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise ModelError(f"weights in {p} do not fit the model: {str(exc).splitlines()[1].strip()}") from None
    dev = select_device(device)
    model.to(dev).eval()
    pre = None
    if (run_dir / "preprocess.json").is_file():
        from dlopt.data import Preprocessor

        pre = Preprocessor.load(run_dir)
    weights_of_loss = (meta or {}).get("class_weights") or _summary_value(run_dir, "class_weights")
    return LoadedModel(model=model, config=cfg, info=info, preprocessor=pre, run_dir=run_dir, device=dev,
                       class_weights=weights_of_loss)


def _check_not_onnx_only(p: Path) -> None:
    """A file, or a ``dlopt quantize FILE.onnx`` output (ONNX files only), holds no weights to
    rebuild a model from: say so, not "checkpoint not found"."""
    if p.is_file():
        onnx = p.suffix.lower() == ".onnx"
        hint = (f"; an ONNX file is scored by dlopt bench {p} (accuracy on the test split its metadata names), "
                f"in Python by dlopt.load(RUN).evaluate(onnx={str(p)!r})") if onnx else ""
        raise ConfigError(f"{p} is a file; allowed: a run or checkpoint directory{hint}")
    if not p.is_dir() or any((p / f).exists() for f in (rundir.WEIGHTS, io.MANIFEST, rundir.CHECKPOINTS)):
        return
    files = sorted(f.name for f in p.glob("*.onnx"))
    if files:
        raise ConfigError(f"{p} holds ONNX files only ({', '.join(files)}), no trained weights; allowed: a run "
                          f"or checkpoint directory; its ONNX files go to dlopt bench|predict|serve, e.g. "
                          f"dlopt bench {delivered_onnx(p) or p / files[0]}")


def _summary_value(run_dir: Path, key: str) -> Any:
    f = run_dir / rundir.SUMMARY
    return rundir.read_json(f).get(key) if f.is_file() else None


def trained_custom_model(run_dir: str | Path | None, *, meta: dict[str, Any] | None = None) -> bool:
    """True when the run trained a user's ``nn.Module``, as its checkpoint ``meta`` or its
    ``summary.json`` records (``config.yaml`` named the zoo default before it named modules)."""
    if (meta or {}).get("custom_model"):
        return True
    return run_dir is not None and bool(_summary_value(Path(run_dir), "custom_model"))


def delivered_onnx(path: str | Path) -> Path | None:
    """The INT8 ONNX file a run directory delivers (``dlopt quantize`` accepted it), else None:
    the run's model is then its PyTorch weights. A rejected candidate (``rejected/``) is not."""
    from dlopt.compress._rundir import INT8_ONNX

    f = Path(path) / INT8_ONNX
    return f if f.is_file() else None


def _onnx_outputs(path: str | Path, split: Split, batch_size: int) -> torch.Tensor:
    """Raw outputs of an ONNX file on ONNX Runtime (torch's thread count), in ``split``'s order."""
    from dlopt.deploy import OnnxModel

    runner = OnnxModel.load(path, threads=torch.get_num_threads())
    batches = (x.numpy() for x, _ in split.batches(batch_size, torch.device("cpu")))
    return torch.from_numpy(runner.run_batches(batches)).float()


def evaluate(path: str | Path, data: Any = None, *, device: str = "cpu") -> dict[str, float]:
    """Metrics of a saved run/checkpoint on ``data`` (default: its test split): of the model
    the run delivers, its ``model.int8.onnx`` on ONNX Runtime when it holds one."""
    return load(path, device=device).evaluate(data, onnx=delivered_onnx(path))


def predict(path: str | Path, x_raw: Any, *, device: str = "cpu") -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions of a saved run/checkpoint for raw inputs (saved preprocessing applied)."""
    return load(path, device=device).predict(x_raw)
