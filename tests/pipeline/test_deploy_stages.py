"""Deployment stages read the data as training read it: serve_check over an image folder
whose training skipped a corrupt file (``data.bad_samples: skip``) skips it too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dlopt.pipeline import parse_pipeline, run_pipeline


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label, scale in (("dark", 120), ("light", 255)):
        (root / label).mkdir(parents=True)
        for i in range(24):
            Image.fromarray((rng.random((8, 8)) * scale).astype(np.uint8)).save(root / label / f"{i}.png")
    (root / "dark" / "broken.png").write_bytes(b"not a png")
    return root


def test_serve_check_skips_the_bad_samples_training_skipped(tmp_path):
    folder = _image_folder(tmp_path / "imgs")
    doc = {"name": "imgs", "runs_dir": str(tmp_path / "runs"),
           "base": {"data": {"name": f"imagefolder:{folder}", "bad_samples": "skip"},
                    "model": {"name": "mlp", "width": 8, "depth": 1},
                    "train": {"epochs": 1, "batch_size": 16, "progress": False}},
           "stages": [{"name": "train"}, {"name": "export", "input": "train"},
                      {"name": "serve_check", "input": "export", "samples": 4}]}
    result = run_pipeline(*parse_pipeline(doc), report=False)
    check = result.records[-1].metrics
    assert check["passed"] and check["equal"] == check["samples"] == 4
