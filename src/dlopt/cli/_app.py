"""The Typer app and the error boundary every command goes through.

Commands parse arguments, build a config, make one library call and print. Heavy libraries
are imported inside commands so ``dlopt --help`` and error paths answer fast.
"""

from __future__ import annotations

import functools
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer
from typer.core import TyperGroup

from dlopt.errors import DloptError

F = TypeVar("F", bound=Callable[..., Any])


class _OneLineErrors(TyperGroup):
    """Usage errors (missing argument, unknown option or command, bad value) as one line, like
    every other error of dlopt's, instead of Typer's boxed usage panel."""

    def main(self, args: Any = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        given = sys.argv[1:] if args is None else args
        if not standalone_mode or not given:  # bare `dlopt`: Typer prints the help
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as exc:  # Typer's (vendored) click errors
            sys.exit(_usage_line(exc))
        except typer.Abort:  # Ctrl-C or end of input at a prompt
            typer.echo("error: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_line(exc: Any) -> int:
    message = exc.format_message().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:  # a usage error: name the command and where its help is
        message = f"{ctx.command_path}: {message} (see '{ctx.command_path} --help')"
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return int(getattr(exc, "exit_code", 2))


app = typer.Typer(
    cls=_OneLineErrors,
    name="dlopt",
    help="Train, tune, compress, export and serve deep-learning models, every step measured.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    """Print one error line to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def command(name: str | None = None, *, resume_hint: str | None = None, **kw: Any) -> Callable[[F], F]:
    """Register a CLI command whose :class:`DloptError` becomes one line and its exit code.
    ``resume_hint``: how this verb continues a run stopped by SIGTERM, in place of
    ``dlopt train``'s "continue with --resume"."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                fn(*args, **kwargs)  # its return value would be taken for an exit code
            except DloptError as exc:
                fail(_hinted(str(exc), resume_hint), exc.exit_code)
            except KeyboardInterrupt:
                fail("interrupted", 130)
            except MemoryError:
                fail("out of memory", 1)

        app.command(name, **kw)(wrapper)
        return fn

    return deco


def _hinted(message: str, resume_hint: str | None) -> str:
    if resume_hint is None:  # most verbs: no torch import on the error path
        return message
    from dlopt.train.callbacks.signals import with_resume_hint

    return with_resume_hint(message, resume_hint)


def writable_file(path: Path, option: str) -> Path:
    """Check before any work that ``path`` can be written as a file (its folder exists and
    takes files; it is not a directory or a special file): a late failure would lose the work."""
    from dlopt.errors import ConfigError

    if path.exists() and not path.is_file():
        raise ConfigError(f"{option} {path}: not a file path (a directory or a special file)")
    try:
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot write in {path.parent}: {exc.strerror or exc}") from None
    return path


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def optuna_logging(verbose: bool = False) -> None:
    """optuna's log lines through dlopt's format: its own handler prints "[I date] A new study
    created ..." between dlopt's lines (``dlopt tune``, and ``dlopt run`` with a tune stage)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
