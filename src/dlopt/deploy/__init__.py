"""Deployment: ONNX export with a parity check, an honest benchmark, a hardened HTTP server.

    report = export_onnx(model, sample, "model.onnx", metadata={"class_names": names})
    pred, proba = predict_onnx("model.onnx", x_raw)
    result = benchmark(contestants, x, y, batch_sizes=(1, 8, 64))

Heavy libraries (torch, onnxruntime, fastapi) load on first use of a name. Every name in
``__all__`` is stable API used by other rooms (compress, tune, pipeline); see docs/deploy.md.
"""

from __future__ import annotations

from dlopt._lazy import lazy_exports

# public name -> private module that defines it (imported on first use)
_LAZY = {
    "export_onnx": "dlopt.deploy._export",
    "ExportReport": "dlopt.deploy._export",
    "ParityError": "dlopt.deploy._export",
    "EXPORTERS": "dlopt.deploy._export",
    "ModelMetadata": "dlopt.deploy._metadata",
    "OnnxModel": "dlopt.deploy._runtime",
    "check_external_data": "dlopt.deploy._runtime",
    "predict_onnx": "dlopt.deploy._runtime",
    "Contestant": "dlopt.deploy._bench",
    "benchmark": "dlopt.deploy._bench",
    "benchmark_checked": "dlopt.deploy._bench",
    "bench_table": "dlopt.deploy._bench",
    "zoo_source": "dlopt.deploy._bench",
    "sample_rows": "dlopt.deploy._bench",
    "capture_environment": "dlopt.deploy._env",
    "quantize_static_onnx": "dlopt.deploy._quantize",
    "shift_weight_zero_points": "dlopt.deploy._quantize",
    "quiet_quantization_notes": "dlopt.deploy._quantize",
    "CALIBRATIONS": "dlopt.deploy._quantize",
    "check_calibration": "dlopt.deploy._quantize",
    "ServeSettings": "dlopt.deploy._serve",
    "create_app": "dlopt.deploy._serve",
    "serve": "dlopt.deploy._serve",
    "export_run": "dlopt.deploy._run",
    "run_metadata": "dlopt.deploy._run",
    "bench_run": "dlopt.deploy._run",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
