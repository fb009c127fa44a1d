"""The stage registry with every built-in stage registered (import this, not the parts)."""

from __future__ import annotations

from dlopt.pipeline import _stages_compress, _stages_deploy, _stages_train  # noqa: F401  register
from dlopt.pipeline._context import STAGES

__all__ = ["STAGES"]
