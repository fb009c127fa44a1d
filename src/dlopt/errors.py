"""Error types shared by every room of dlopt.

The CLI turns a :class:`DloptError` into one line on stderr and its ``exit_code``:
2 for bad input (config, arguments, data), 1 when a run itself fails.
"""

from __future__ import annotations

__all__ = ["first_line", "DloptError", "ConfigError", "DataError", "ModelError", "RunError",
           "NonFiniteError"]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when it has no text (an
    EOFError from an empty file): what a one-line error quotes of a library's failure."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DloptError(Exception):
    """Base class: a message meant for the user, no traceback."""

    exit_code = 2


class ConfigError(DloptError):
    """A config key, value or file is invalid."""


class DataError(DloptError):
    """A dataset, file or sample is invalid."""


class ModelError(DloptError):
    """A model name or option is invalid, or a model cannot be handled."""


class RunError(DloptError):
    """The run itself failed (not the user's input)."""

    exit_code = 1


class NonFiniteError(RunError):
    """Training produced NaN/Inf; the message names the step and tensor."""
