"""bench/hpo_replay.py on a tiny lattice: a real build in two parts (resumable), a replay of
the bench's methods through real optuna studies, the output's keys and arithmetic (and the
oracle bound's), and bad
arguments or an unfinished lattice as one line with exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = str(ROOT / "bench" / "hpo_replay.py")
TINY = ["--points", "2,2,2"]


def _bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, BENCH, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def lattice(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("lattice")
    parts = [tmp / "part0.jsonl", tmp / "part1.jsonl"]
    for k, path in enumerate(parts):
        run = _bench("build", "--out", str(path), "--epochs", "2", "--subset", "300", "--part", f"{k}/2", *TINY)
        assert run.returncode == 0, run.stderr[-2000:]
        assert json.loads(run.stdout)["trained"] == 4
    again = _bench("build", "--out", str(parts[0]), "--epochs", "2", "--subset", "300", "--part", "0/2", *TINY)
    assert json.loads(again.stdout)["trained"] == 0  # resumed: nothing left in this part
    return parts


def test_build_covers_the_lattice_once(lattice: list[Path]) -> None:
    rows = [json.loads(r) for p in lattice for r in p.read_text().splitlines()]
    assert sorted(tuple(r["idx"]) for r in rows) == [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    assert all(len(r["curve"]) == 2 and all(0 <= v <= 1 for v in r["curve"]) for r in rows)
    assert {r["seed"] for r in rows} == {0}


def test_lattices_of_two_training_seeds_replay_together(lattice: list[Path], tmp_path: Path) -> None:
    other = tmp_path / "seed1.jsonl"
    run = _bench("build", "--out", str(other), "--epochs", "2", "--subset", "300", "--seed", "1", *TINY)
    assert run.returncode == 0 and json.loads(run.stdout)["trained"] == 8, run.stderr[-2000:]
    curves = {tuple(r["idx"]): r["curve"] for p in lattice for r in map(json.loads, p.read_text().splitlines())}
    rows = [json.loads(r) for r in other.read_text().splitlines()]
    assert {r["seed"] for r in rows} == {1}
    assert any(r["curve"] != curves[tuple(r["idx"])] for r in rows)  # another training seed
    both = _bench("replay", *map(str, lattice), str(other), *TINY, "--seeds", "2", "--trials", "3", "--epochs", "2")
    assert both.returncode == 0, both.stderr[-2000:]
    assert json.loads(both.stdout)["reference"]["2"]["training_seeds"] == [0, 1]


def test_replay_reports_every_method_and_budget(lattice: list[Path]) -> None:
    run = _bench("replay", *map(str, lattice), *TINY, "--seeds", "2", "--trials", "4", "--epochs", "1,2",
                 "--methods", "tpe_median")  # the bench's three always run
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout)
    budgets, reference = out["budgets"], out["reference"]
    assert set(budgets) == set(reference) == {"1", "2"}
    for epochs, ref in reference.items():  # the bound: one random trial, then a point that hits
        assert 1 <= ref["oracle_after_first"]["median_epochs"] <= 2 * int(epochs)
        assert ref["lattice_points"] == 8 and 1 <= ref["lattice_points_reaching_target"] <= 8
    for epochs, methods in budgets.items():
        assert set(methods) == {"grid", "tpe_asha", "random", "tpe_median"}
        for m in methods.values():
            assert 1 <= m["median_epochs"] <= 4 * int(epochs) and 0 <= m["not_reached"] <= 2
            assert m["ratio_grid_over"] == pytest.approx(methods["grid"]["median_epochs"] / m["median_epochs"], abs=1e-3)


@pytest.mark.parametrize(("args", "message"), [
    (["build", "--out", "x.jsonl", "--part", "2/2"], "--part is K/N with 0 <= K < N"),
    (["replay", "x.jsonl", "--points", "2,2"], "--points has one integer >= 2 per axis"),
    (["build", "--out", "x.jsonl", "--epochs", "0"], "--epochs must be >= 1, got 0"),
    (["replay", "x.jsonl", "--epochs", "2,0"], "--epochs is a comma list of integers >= 1"),
    (["replay", "x.jsonl", "--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["replay", "x.jsonl", "--methods", "bogus"], "--methods: unknown ['bogus']"),
    (["replay", "no-such-lattice.jsonl"], "cannot read lattice no-such-lattice.jsonl"),
    (["build", "--out", "x.jsonl", "--dataset", "nope"], "--dataset 'nope': unknown dataset 'nope'; valid:"),
])
def test_bad_arguments_are_one_line_exit_2(args: list[str], message: str) -> None:
    run = _bench(*args, timeout=120)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert message in run.stderr


def test_an_unfinished_or_too_short_lattice_is_refused(lattice: list[Path]) -> None:
    half = _bench("replay", str(lattice[0]), *TINY, "--seeds", "1")
    assert half.returncode == 2
    assert "the lattice of training seed 0 has 4 points, 4 missing (build it to the end)" in half.stderr
    long = _bench("replay", *map(str, lattice), *TINY, "--epochs", "3")
    assert long.returncode == 2 and "the lattice's curves have 2 epochs" in long.stderr
    assert "Traceback" not in half.stderr + long.stderr
