"""``dlopt datasets``: built-in datasets plus IDX sets found in the data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dlopt.cli._app import command


def _count(n: int) -> str:
    """60000 -> '60k', 1797 -> '1797', 0 -> '-'."""
    if not n:
        return "-"
    return f"{n // 1000}k" if n >= 10_000 and n % 1000 == 0 else str(n)


@command("datasets")
def datasets(
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", help="folder of IDX sets (default: $DLOPT_DATA_DIR)"
    ),
) -> None:
    """List datasets: task, input shape, classes, train/test sizes and where they come from."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from dlopt.data import FORMATS, list_datasets

    table = Table(title="dlopt datasets", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
    for col, justify in (("name", "left"), ("task", "left"), ("input", "left"),
                         ("classes", "right"), ("train/test", "right")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    table.add_column("source", overflow="fold")
    for row in list_datasets(data_dir):
        table.add_row(row.name, row.task, "x".join(map(str, row.input_shape)),
                      str(row.num_classes) if row.num_classes else "-",
                      f"{_count(row.n_train)}/{_count(row.n_test)}", row.source)
    console = Console()
    console.print(table)
    for e in FORMATS:
        console.print(f"  {e.name}:PATH  {e.info['help']}", highlight=False)
