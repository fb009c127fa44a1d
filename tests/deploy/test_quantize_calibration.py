"""Static INT8 calibration with real ONNX Runtime: histogram calibrators on any row count,
and only the calibrators meant for INT8."""

from __future__ import annotations

import numpy as np
import pytest

from dlopt.errors import ConfigError


def _activation_scales(path) -> dict[str, np.ndarray]:
    """Every float scale initializer of a QDQ file, by name (weights' and activations')."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer
            if t.name.endswith("_scale") and t.data_type == onnx.TensorProto.FLOAT}


@pytest.mark.parametrize("rows", [409, 500])
@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_takes_any_row_count(lenet, mnist, tmp_path, method, rows):
    from dlopt.deploy import OnnxModel, quantize_static_onnx

    x = mnist.train.x[:rows].numpy()
    int8 = quantize_static_onnx(lenet[1], tmp_path / "a.onnx", x, calibrate_method=method)
    # one batch of every row is the reference: the default batches must see the same rows
    whole = quantize_static_onnx(lenet[1], tmp_path / "b.onnx", x, calibrate_method=method, batch=rows)
    got, want = _activation_scales(int8), _activation_scales(whole)
    assert got.keys() == want.keys() and len(got) > 5
    for name, scale in want.items():
        np.testing.assert_allclose(got[name], scale, rtol=1e-3, err_msg=name)
    test = mnist.test.x[:64].numpy()
    agree = OnnxModel.load(int8).run(test).argmax(1) == OnnxModel.load(lenet[1]).run(test).argmax(1)
    assert agree.mean() > 0.9


@pytest.mark.parametrize("method", ["distribution", "median"])
def test_calibrators_not_for_int8_are_refused(lenet, mnist, tmp_path, method):
    from dlopt.deploy import quantize_static_onnx

    with pytest.raises(ConfigError) as err:
        quantize_static_onnx(lenet[1], tmp_path / "q.onnx", mnist.train.x[:32].numpy(), calibrate_method=method)
    msg = str(err.value)
    assert "allowed: minmax, entropy, percentile" in msg and "\n" not in msg
    assert not (tmp_path / "q.onnx").exists()


def test_calibrator_progress_is_not_printed(lenet, mnist, tmp_path, capsys):
    from dlopt.deploy import quantize_static_onnx
    from dlopt.deploy._quantize import quiet_quantization_notes

    for method in ("entropy", "percentile"):
        quantize_static_onnx(lenet[1], tmp_path / f"{method}.onnx", mnist.train.x[:64].numpy(),
                             calibrate_method=method)
    assert capsys.readouterr().out == ""
    with quiet_quantization_notes():
        print("a line of the caller's")  # only ORT's progress lines are dropped
    assert capsys.readouterr().out == "a line of the caller's\n"
