"""Small value types shared by every compression step: targets, the budget, measurement
settings and the result a verb returns. No torch here, so argument errors answer fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlopt.errors import ConfigError

__all__ = ["Target", "parse_target", "Budget", "MeasureSettings", "CompressResult", "check_fraction",
           "check_latency_measured", "REJECTED"]

REJECTED = "rejected"  # OUT/rejected: where a candidate the guard refused is kept for inspection

# target kind -> what its value means (for the error message and docs)
_TARGET_KINDS = {
    "sparsity": "fraction of weights set to zero / parameters removed, in (0, 1)",
    "macs": "fraction of MACs removed, in (0, 1)",
    "latency_ms": "ONNX Runtime p50 latency in ms at the measure batch, > 0",
}


def check_fraction(name: str, value: float) -> float:
    """``value`` must lie in the open interval (0, 1)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name}={value!r} is invalid; allowed: a number in (0, 1)")
    return float(value)


@dataclass(frozen=True)
class Target:
    """What a pruning step aims for: ``kind`` (sparsity | macs | latency_ms) and ``value``."""

    kind: str
    value: float

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}"


def parse_target(text: str | Target) -> Target:
    """``"macs=0.5"`` -> Target; ratios must be in (0, 1), a latency > 0."""
    if isinstance(text, Target):
        return text
    kind, sep, raw = str(text).partition("=")
    kind = kind.strip()
    if not sep or kind not in _TARGET_KINDS:
        raise ConfigError(f"--target {text!r} is invalid; allowed: {', '.join(k + '=VALUE' for k in _TARGET_KINDS)}")
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"--target {text!r}: {raw!r} is not a number") from None
    if kind == "latency_ms":
        if not value > 0:
            raise ConfigError(f"--target {text!r} is invalid; allowed: latency_ms > 0")
    else:
        check_fraction(f"--target {kind}", value)
    return Target(kind, value)


@dataclass(frozen=True)
class Budget:
    """The guard: a step may lose at most ``max_drop_pt`` points (0.01) of the guard metric
    (accuracy; R2 for regression) on the validation split against its input; ``latency_ms``
    (optional) is a p50 ceiling at the measure batch."""

    max_drop_pt: float = 0.5
    latency_ms: float | None = None

    def __post_init__(self) -> None:
        if not self.max_drop_pt >= 0:
            raise ConfigError(f"--max-drop-pt={self.max_drop_pt!r} is invalid; allowed: a number >= 0")
        if self.latency_ms is not None and not self.latency_ms > 0:
            raise ConfigError(f"--latency-ms={self.latency_ms!r} is invalid; allowed: a number > 0")


@dataclass(frozen=True)
class MeasureSettings:
    """How each step is measured: ONNX Runtime latency (fresh worker process, ``threads``)
    at ``batch_sizes``; ``latency=False`` skips timing (tests); ``latency_batch`` is the
    batch a ``latency_ms`` target or budget refers to."""

    latency: bool = True
    batch_sizes: tuple[int, ...] = (1, 64)
    latency_batch: int = 64
    threads: int = 1
    min_runs: int = 20
    min_seconds: float = 0.5
    exporter: str = "dynamo"


def check_latency_measured(budget: Budget, measure: MeasureSettings) -> None:
    """A latency budget or target needs ONNX Runtime timing: without it the guard can only
    reject, after the whole step has run."""
    if budget.latency_ms is not None and not measure.latency:
        raise ConfigError(f"a latency budget or target ({budget.latency_ms:g} ms) needs ONNX Runtime timing; "
                          f"allowed: drop --no-latency (MeasureSettings(latency=True)) or the latency budget")


@dataclass
class CompressResult:
    """What a verb returns. ``run_dir`` always holds the best model so far: the candidate when
    ``accepted``, else the step's input (the candidate then sits in ``run_dir/rejected``)."""

    run_dir: Path
    accepted: bool
    reason: str
    summary: dict[str, Any] = field(default_factory=dict)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)

    @property
    def candidate_dir(self) -> Path:
        """Where the measured candidate (``after``) is: ``run_dir`` when accepted, else
        ``run_dir/rejected``."""
        return Path(self.run_dir) if self.accepted else Path(self.run_dir) / REJECTED
