"""What every command module shares: the Typer app, the consoles, option types used by more
than one command, and the check of options by a Pydantic model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from cotsearch.errors import CotsearchError

app = typer.Typer(
    help="Configure, cost, train and search CoTNet-family vision backbones.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

SpecArg = Annotated[str, typer.Argument(help="a preset name (see `cotsearch presets`) or a spec YAML file")]


def human(n: float) -> str:
    """1234567 -> '1.23M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}" if n / scale < 100 else f"{n / scale:.0f}{unit}"
    return str(n)


def validated(model_cls, values: dict):
    """Options checked by a Pydantic model, with its errors as one line naming the option."""
    from pydantic import ValidationError

    from cotsearch.arch.yaml_io import format_validation_error

    try:
        return model_cls.model_validate(values)
    except ValidationError as e:
        raise CotsearchError(format_validation_error(e, "options", model_cls).replace("options: ", "--", 1)) from None


# Options that `tune` and `sweep` share.
AddressOption = Annotated[Optional[str], typer.Option("--address", help="join this Ray cluster (default: RAY_ADDRESS, "
                                                                         "else a local Ray)")]
CpusPerTrialOption = Annotated[Optional[float], typer.Option("--cpus-per-trial", min=0.01)]
GpusPerTrialOption = Annotated[Optional[float], typer.Option("--gpus-per-trial", min=0)]
LatencyIsolatedOption = Annotated[Optional[bool], typer.Option(
    "--latency-isolated/--latency-shared",
    help="measure each trial's latency with its node to itself (the trials training there pause at the end of "
         "their current step), or beside them, marked so in the records (default: the space's "
         "search.latency_isolated, false)")]


def check_model_output(path: Path) -> None:
    """An -o for a model file, checked before any work: writable, and not a file cotsearch did
    not write (its own model file is replaced)."""
    from cotsearch.export.header import is_model_file
    from cotsearch.files import check_writable

    check_writable(path, "-o", is_model_file, "a cotsearch model file")
