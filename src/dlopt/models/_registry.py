"""The model registry: ``@register_model``, ``create_model``, option introspection and checks.

Every factory takes ``input_shape`` and ``num_classes`` plus keyword options with defaults.
Options are discovered from the factory signature (like scikit-learn ``get_params``) and
checked against the value rules below, so config errors answer before a model is built.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Callable, Iterable

from torch import nn

from dlopt.config import close_names
from dlopt.errors import ModelError
from dlopt.models.layers import ACTIVATIONS, INITS, NORMS, POOLS
from dlopt.registry import Entry, Registry

__all__ = [
    "MODELS",
    "register_model",
    "create_model",
    "check_model_options",
    "list_models",
    "model_options",
    "model_entry",
    "arch_options",
    "one_of",
    "positive_int",
]

MODELS: Registry[nn.Module] = Registry("model", ModelError)

# arguments every factory takes from the dataset, not from the user's options
_DATA_ARGS = ("input_shape", "num_classes")

# A rule returns None when the value is fine, else the text for "allowed: ...".
Rule = Callable[[Any], "str | None"]


def _choice(registry: Registry[Any]) -> Rule:
    return lambda v: None if isinstance(v, str) and v in registry else ", ".join(registry.names())


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def positive_int(v: Any) -> str | None:
    """Rule: an integer > 0 (bools rejected)."""
    return None if _is_int(v) and v > 0 else "an integer > 0"


def _positive_number(v: Any) -> str | None:
    return None if _is_number(v) and v > 0 else "a number > 0"


def _rate(v: Any) -> str | None:
    return None if _is_number(v) and 0 <= v < 1 else "a number in [0, 1)"


def _optional_widths(v: Any) -> str | None:
    ok = v is None or (
        isinstance(v, (list, tuple)) and len(v) > 0 and all(_is_int(c) and c > 0 for c in v)
    )
    return None if ok else "null or a non-empty list of integers > 0"


def _optional_positive_int(v: Any) -> str | None:
    return None if v is None or (_is_int(v) and v > 0) else "null or an integer > 0"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def one_of(*values: Any) -> Rule:
    """Rule: the value must be one of ``values``."""
    return lambda v: None if v in values else ", ".join(map(str, values))


# Generic value rules by option name; a model adds its own with register_model(checks=...).
_RULES: dict[str, Rule] = {
    "activation": _choice(ACTIVATIONS),
    "norm": _choice(NORMS),
    "init": _choice(INITS),
    "pool": _choice(POOLS),
    "dropout": _rate,
    "width": _positive_number,
    "depth": positive_int,
    "heads": positive_int,
    "embed_dim": positive_int,
    "hidden_size": positive_int,
    "num_layers": positive_int,
    "kernel_size": positive_int,
    "mlp_ratio": _positive_number,
    "patch_size": _optional_positive_int,
    "channels": _optional_widths,
    "hidden": _optional_widths,
    "bidirectional": _bool,
}


def register_model(
    name: str | None = None,
    *,
    description: str = "",
    default_input: tuple[int, ...] = (1, 28, 28),
    checks: dict[str, Rule] | None = None,
    **info: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a model factory ``f(*, input_shape, num_classes, **options)``.

    ``description`` shows in ``dlopt models`` (default: the docstring's first line),
    ``default_input`` is the input used there, ``checks`` adds per-option value rules.
    """

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        params = inspect.signature(factory).parameters
        missing = [a for a in _DATA_ARGS if a not in params]
        if missing:
            raise TypeError(f"model factory {factory.__name__} lacks {', '.join(missing)}")
        doc = (inspect.getdoc(factory) or "").splitlines()
        return MODELS.register(
            name,
            description=description or (doc[0] if doc else ""),
            default_input=tuple(default_input),
            checks=dict(checks or {}),
            **info,
        )(factory)

    return deco


def _ensure_zoo() -> None:
    # the zoo modules register themselves on import; models/__init__ imports them, but a
    # caller may have imported only this module
    import dlopt.models  # noqa: F401


def model_entry(name: str) -> Entry[nn.Module]:
    """The registry entry of model ``name`` (factory + info); unknown names list valid ones."""
    _ensure_zoo()
    return MODELS.get(name)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _ensure_zoo()
    return MODELS.names()


def model_options(name: str) -> dict[str, Any]:
    """The keyword options of model ``name`` with their defaults (data arguments excluded)."""
    entry = model_entry(name)
    return {k: p.default for k, p in entry.params().items() if k not in _DATA_ARGS}


def check_model_options(name: str, options: dict[str, Any]) -> None:
    """Raise ModelError for an unknown model, an unknown option or an obviously bad value.

    Cheap: no model is built. Shape-dependent problems (e.g. an input too small for the
    layers) surface in :func:`create_model`.
    """
    entry = model_entry(name)
    valid = model_options(name)
    for key, value in options.items():
        if key in _DATA_ARGS:
            raise ModelError(
                f"model option {key!r} for {name!r} comes from the dataset; remove it"
            )
        if key not in valid:
            guess = close_names(key, sorted(valid))
            raise ModelError(f"unknown option {key!r} for model {name!r}; valid: {', '.join(sorted(valid))}"
                             + (f"; did you mean {guess[0]!r}?" if guess else ""))
        rule = entry.info["checks"].get(key) or _RULES.get(key)
        allowed = rule(value) if rule else None
        if allowed is not None:
            raise ModelError(
                f"model {name!r} option {key!r} = {value!r} is invalid; allowed: {allowed}"
            )


def _check_data_args(name: str, input_shape: Iterable[int], num_classes: int) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or not all(_is_int(d) and d > 0 for d in shape):
        raise ModelError(
            f"model {name!r}: input_shape {shape!r} is invalid; allowed: a tuple of integers > 0"
        )
    if not (_is_int(num_classes) and num_classes > 0):
        raise ModelError(
            f"model {name!r}: num_classes {num_classes!r} is invalid; allowed: an integer > 0"
        )
    return tuple(int(d) for d in shape)


def create_model(
    name: str, *, input_shape: Iterable[int], num_classes: int, **options: Any
) -> nn.Module:
    """Build zoo model ``name`` for inputs ``(N, *input_shape)`` and ``num_classes`` logits.

    ``num_classes`` is the head width (1 for regression). Options are checked first.
    """
    check_model_options(name, options)
    shape = _check_data_args(name, input_shape, num_classes)
    return MODELS.create(name, input_shape=shape, num_classes=int(num_classes), **options)


def arch_options(model: nn.Module) -> dict[str, Any]:
    """Width options that rebuild ``model`` as it is now (``channels``/``hidden``).

    After structured pruning a zoo model's widths differ from its config; store this dict in
    ``arch.json``, then ``create_model(name, **config_options, **arch_options)`` rebuilds a
    model that loads the pruned state_dict. Empty for models without width overrides.
    """
    method = getattr(model, "arch_options", None)
    return dict(method()) if callable(method) else {}
