"""``dlopt models``: the model zoo with parameters and MACs for a default input."""

from __future__ import annotations

from dlopt.cli._app import command

# MNIST has 10 classes; the sequence models default to MNIST-1D's (40,) signal, also 10 classes
_NUM_CLASSES = 10


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


@command("models")
def models() -> None:
    """List the zoo models: parameters and forward MACs for a default input, description."""
    from rich.console import Console
    from rich.table import Table

    from dlopt.models import create_model, list_models, model_entry, summary

    table = Table(title="dlopt models (10 classes)")
    for col, justify in (("name", "left"), ("input", "left"), ("params", "right"),
                         ("MACs", "right"), ("description", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for name in list_models():
        info = model_entry(name).info
        shape = info["default_input"]
        stats = summary(create_model(name, input_shape=shape, num_classes=_NUM_CLASSES), shape)
        table.add_row(name, "x".join(map(str, shape)), _human(stats.params),
                      _human(stats.macs), info["description"])
    Console().print(table)
