"""``dlopt tune`` (hyperparameter search) and ``dlopt lr-find`` (learning-rate range test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from dlopt.cli._app import command, fail, optuna_logging, setup_logging
from dlopt.tune import RESUME_HINT


@command("tune", resume_hint=RESUME_HINT)
def tune(
    config: Path = typer.Argument(..., help="training config with a search: section"),
    study: Optional[str] = typer.Option(None, "--study", help="study name (default: config name)"),
    storage: Optional[str] = typer.Option(
        None, "--storage",
        help="memory | sqlite:///FILE.db | journal:PATH | postgresql://... | another "
             "SQLAlchemy URL (default: journal file runs/<study>/study.log)"),
    trials: Optional[int] = typer.Option(
        None, "--trials", help="study total of COMPLETE + PRUNED trials (failed ones are retried)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="stop starting trials after S seconds"),
    study_dir: Optional[Path] = typer.Option(None, "--study-dir", help="outputs (default runs/<study>)"),
    workers: int = typer.Option(1, "--workers", min=1, help="worker processes on this machine"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: train.epochs=2"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run or resume a study: sample configs, train, stop bad trials early, keep the best."""
    setup_logging(verbose)
    from dlopt.tune import tune as run_tune

    optuna_logging(verbose)
    cfg = _load_tune_config(config, overrides)
    try:
        result = run_tune(cfg, study=study, study_dir=study_dir, storage=storage, trials=trials,
                          timeout=timeout, workers=workers, on_trial=_print_trial)
    except KeyboardInterrupt:
        # as SIGTERM says it: the stopped trial is failed and queued for the rerun
        kept = (storage or cfg.search.storage) != "memory"
        fail("interrupted" + ("; rerun the same command to continue" if kept else ""), 130)
    _print_result(result)


_NO_SEARCH = ("{path} has no search: section: dlopt tune needs one naming the config keys to "
              "tune, e.g. search: {{space: {{train.optim.lr: {{type: float, low: 1.0e-4, high: "
              "0.1, log: true}}}}}} (see examples/tune-mnist.yaml)")


def _load_tune_config(path: Path, overrides: list[str]) -> Any:
    """The config as TuneConfig; without a search: section, one line saying what one looks
    like (the schema alone says only ``search: Field required``)."""
    from pydantic import BaseModel, ConfigDict

    from dlopt.config import TuneConfig, load_config
    from dlopt.errors import ConfigError

    class _Search(BaseModel):  # reads only whether there is a search section
        model_config = ConfigDict(extra="ignore")
        search: Any = None

    if load_config(path, overrides, schema=_Search).search is None:
        raise ConfigError(_NO_SEARCH.format(path=path))
    return load_config(path, overrides, schema=TuneConfig)


def _print_trial(rec: Any) -> None:
    values = " ".join(f"{k}={v:.4g}" for k, v in rec.values.items())
    params = " ".join(f"{k}={_fmt(v)}" for k, v in rec.params.items())
    retry = f" (retry of {rec.retry_of})" if rec.retry_of is not None else ""
    note = f"  [{rec.note}]" if rec.note and rec.state != "COMPLETE" else ""
    typer.echo(f"trial {rec.number:4d} {rec.state:8s} {values}  {rec.epochs} ep "
               f"{rec.seconds:.1f}s{retry}  {params}{note}")


def _print_result(result: Any) -> None:
    c = result.counts
    done = c.get("COMPLETE", 0) + c.get("PRUNED", 0)
    typer.echo(f"study {result.study_name}: {done} trials ({c.get('COMPLETE', 0)} complete, "
               f"{c.get('PRUNED', 0)} pruned, {c.get('FAIL', 0)} failed); "
               f"{len(result.ran)} run by this worker")
    best = result.best
    if best:
        values = ", ".join(f"{k}={v:.4g}" for k, v in best["values"].items())
        typer.echo(f"best trial {best['trial']}: {values}")
        for k, v in best["params"].items():
            typer.echo(f"  {k} = {_fmt(v)}")
        if "pareto" in best:
            typer.echo(f"pareto front: trials {', '.join(str(r['trial']) for r in best['pareto'])}")
    if best is None:
        typer.echo(f"no best trial: none of the study's trials is COMPLETE ({c.get('PRUNED', 0)} "
                   f"pruned, {c.get('FAIL', 0)} failed; trials.csv notes say why): "
                   f"no best_params.json, no best_config.yaml")
    elif not best.get("feasible", True):
        typer.echo("no trial meets the constraints: no best_config.yaml")
    names = sorted({p.name if p.parent == result.study_dir else f"{p.parent.name}/" for p in result.outputs})
    typer.echo(f"outputs: {result.study_dir} ({', '.join(names)})")
    again = "in memory: gone when this process ends" if result.storage == "memory" else \
        "rerun the same command to continue"
    typer.echo(f"storage: {result.storage} ({again})")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@command("lr-find")
def lr_find(
    config: Path = typer.Argument(..., help="training config (a search: section is ignored)"),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="default runs/<name>-lr-find"),
    min_lr: float = typer.Option(1e-7, "--min-lr"),
    max_lr: float = typer.Option(10.0, "--max-lr"),
    steps: int = typer.Option(100, "--steps", help="training steps of the exponential ramp"),
    overrides: list[str] = typer.Option([], "--set", help="override a key: train.batch_size=64"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Learning-rate range test: ramp the lr up, smooth the loss, suggest a rate, save a plot."""
    setup_logging(verbose)
    from dlopt.config import load_config
    from dlopt.tune import lr_find as run_lr_find

    cfg = load_config(config, overrides, ignore=("search",))  # a bad search: section is not lr-find's
    out = run_dir or Path("runs") / f"{cfg.name}-lr-find"
    res = run_lr_find(cfg, run_dir=out, min_lr=min_lr, max_lr=max_lr, steps=steps)
    end = "diverged" if res.diverged else "reached --max-lr"
    typer.echo(f"{len(res.lrs)} steps ({end} at lr {res.diverged_lr or res.lrs[-1]:.2e}); lowest smoothed loss "
               f"at lr {res.min_loss_lr:.2e}")
    typer.echo(f"suggested lr: {res.suggestion:.2e}")
    typer.echo(f"plot: {res.plot}")
