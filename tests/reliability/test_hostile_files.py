"""Hostile and broken files: pickles that run code, pickled modules, broken safetensors,
ONNX external data outside the model folder, bad samples in datasets."""

from __future__ import annotations

import pytest

import rel_files


def test_no_source_line_can_unpickle() -> None:
    assert rel_files.unsafe_load_calls() == []


def test_the_scan_finds_unsafe_calls(tmp_path) -> None:
    (tmp_path / "bad.py").write_text("import torch, numpy as np\n"
                                     "torch.load(f)\nnp.load(f, allow_pickle=True)\n"
                                     "torch.load(f, weights_only=False)\ntorch.load(f, weights_only=True)\n")
    found = rel_files.unsafe_load_calls(tmp_path)
    assert [line.split()[0].rsplit(":", 1)[1] for line in found] == ["2", "3", "4"]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the hostile pickles
def test_malicious_files_are_refused_naming_the_file_and_run_nothing() -> None:
    r = rel_files.malicious_files()
    assert r["passed"], r["failures"]
    assert r["canaries_created"] == 0 and r["cases"] >= 50 and r["onnx_external_data_cases"] == 6


def test_bad_samples_fail_before_step_1_or_are_skipped_and_counted() -> None:
    r = rel_files.bad_data()
    assert r["passed"], r["failures"]
    assert r["skipped_counted"] == r["bad_files"] == 6
