"""``dlopt compare`` of a training run and its quantized output: the INT8 run's row is typed by
its step and sized by the file it delivers (``model.int8.onnx``), not by the FP32 weights."""

from __future__ import annotations

from typer.testing import CliRunner

from dlopt.cli import app
from dlopt.report._tables import format_cell


def _rows(table: str) -> dict[str, dict[str, str]]:
    """Run label -> {column header: cell} of a Markdown comparison table."""
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in table.splitlines() if ln.startswith("| ")]
    header = cells[0]
    return {r[0]: dict(zip(header, r)) for r in cells[1:]}


def test_compare_shows_what_a_quantized_run_delivers(tmp_path):
    import dlopt
    from dlopt.compress import Budget, MeasureSettings, quantize_run

    dlopt.fit(config={"name": "run", "data": {"name": "mnist", "subset": 300, "test_subset": 100},
                      "model": {"name": "lenet5", "width": 0.5},
                      "train": {"epochs": 1, "batch_size": 48, "progress": False, "threads": 1}},
              run_dir=tmp_path / "run")
    q = quantize_run(tmp_path / "run", tmp_path / "q", method="static", calib_samples=64, conv_kernel="direct",
                     budget=Budget(max_drop_pt=100.0), measure=MeasureSettings(latency=False, exporter="legacy"))
    assert q.accepted, q.reason
    res = CliRunner().invoke(app, ["compare", str(tmp_path / "run"), str(q.run_dir), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    rows = _rows((tmp_path / "cmp" / "compare.md").read_text())
    row, trained = rows["q"], rows["run"]
    assert row["type"] == "quantize"
    assert row["size on disk"] == format_cell("size_bytes", (q.run_dir / "model.int8.onnx").stat().st_size)
    assert row["size on disk"] != format_cell("size_bytes", (q.run_dir / "model.safetensors").stat().st_size)
    assert row["time (stage wall; run dir: train)"] == "–" and "epoch" not in row["note"] and row["note"].startswith("accepted")
    assert row["accuracy"] == format_cell("accuracy", q.summary["test"]["accuracy"])
    assert trained["type"] == "train" and trained["note"] == "1 epoch"
