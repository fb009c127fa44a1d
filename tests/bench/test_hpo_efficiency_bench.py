"""bench/hpo_efficiency.py on a tiny run: real studies for every method (run as two slices and
merged, as the docs run it), the output contract's keys and their arithmetic, and bad
arguments or slices as one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = str(ROOT / "bench" / "hpo_efficiency.py")
TINY = ["--seeds", "1", "--trials", "3", "--epochs", "2", "--subset", "600"]


def _bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = []
    for methods in ("grid", "random,tpe_asha"):
        run = _bench(*TINY, "--methods", methods)
        assert run.returncode == 0, run.stderr[-2000:]
        path = tmp_path_factory.mktemp("hpo") / f"{methods.replace(',', '-')}.json"
        path.write_text(run.stdout)
        out.append(path)
    return out


def test_merged_slices_give_the_contract(slices: list[Path]) -> None:
    first = json.loads(slices[0].read_text())
    assert "grid_epochs" not in first and first["incomplete_seeds"] == [0]  # one method only
    run = _bench("--merge", *map(str, slices))
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    row = doc["per_seed"][0]
    assert row["target"] == pytest.approx(0.99 * row["best_val_accuracy"])
    for method in ("grid", "random", "tpe_asha"):
        m = row[method]
        assert m["trials"] == 3 and 1 <= m["epochs"] <= m["total_epochs"] <= 6
        assert doc[f"{method}_epochs"] == m["epochs"]  # one seed: the median is its value
    assert doc["ratio_grid_over_tpe_asha"] == pytest.approx(doc["grid_epochs"] / doc["tpe_asha_epochs"], abs=1e-3)
    assert doc["settings"]["epochs_per_trial"] == 2 and doc["env"]["merged_from"] == 2


def test_slices_run_with_other_settings_are_refused(slices: list[Path], tmp_path: Path) -> None:
    other = json.loads(slices[1].read_text())
    other["settings"]["epochs_per_trial"] = 3
    (tmp_path / "other.json").write_text(json.dumps(other))
    run = _bench("--merge", str(slices[0]), str(tmp_path / "other.json"))
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert "were run with different settings" in run.stderr and len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--methods", "grid,bogus"], "unknown ['bogus']; allowed: grid, random, tpe_asha"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--merge", "no-such-file.json"], "--merge: cannot read no-such-file.json"),
    (["--dataset", "nope"], "--dataset 'nope': unknown dataset 'nope'; valid:"),
])
def test_bad_arguments_are_one_line_exit_2(args: list[str], message: str) -> None:
    run = _bench(*args, timeout=120)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert message in run.stderr
