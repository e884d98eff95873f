"""The `cotsearch` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

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


def _kinds_summary(kinds: list[str]) -> str:
    if len(set(kinds)) == 1:
        return f"{kinds[0]} x{len(kinds)}"
    letters = {"cot": "C", "conv": "c", "se_conv": "S"}
    legend = " ".join(f"{letters[k]}={k}" for k in sorted(set(kinds)))
    return f"{''.join(letters[k] for k in kinds)} ({legend})"


@app.command()
def build(
    spec: SpecArg,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write the model file (.safetensors)")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="input size for the resolutions shown (default: the spec's)")] = None,
):
    """Validate a spec, build its model and show its stages; optionally save the model file."""
    from cotsearch.model import build_model
    from cotsearch.model_file import save_model
    from cotsearch.spec_io import load_spec

    backbone = load_spec(spec)
    size = input_size or backbone.input_size
    if size < 1:
        raise CotsearchError(f"--input-size must be a positive number of pixels, got {size}")
    model = build_model(backbone)
    table = Table(title=f"{backbone.name or spec}  ({backbone.in_chans}x{size}x{size} input, {backbone.num_classes} classes)")
    for col in ("stage", "blocks", "middle layers", "width", "out chs", "stride", "output"):
        table.add_column(col, justify="right" if col not in ("stage", "middle layers") else "left")
    res = -(-size // backbone.stem.stride)
    table.add_row("stem", "-", backbone.stem.type, "-", str(backbone.stem.out_chs), str(backbone.stem.stride), f"{res}x{res}")
    for i, stage in enumerate(backbone.stages):
        res = -(-res // stage.stride)
        table.add_row(f"layer{i + 1}", str(stage.depth), _kinds_summary(stage.block_kinds), str(stage.width),
                      str(stage.planes * backbone.expansion), str(stage.stride), f"{res}x{res}")
    console.print(table)
    params = sum(p.numel() for p in model.parameters())
    console.print(f"params: {params:,}   spec hash: {backbone.spec_hash()}")
    if output is not None:
        save_model(model, output)
        console.print(f"wrote {output}")


@app.command()
def presets():
    """List the shipped presets with their parameter counts."""
    from cotsearch.model import build_model
    from cotsearch.spec_io import list_presets

    table = Table("preset", "input", "stages (depths)", "params")
    for name in list_presets():
        model = build_model(name)
        spec = model.spec
        table.add_row(name, f"{spec.in_chans}x{spec.input_size}", str([s.depth for s in spec.stages]),
                      f"{sum(p.numel() for p in model.parameters()):,}")
    console.print(table)


@app.command()
def schema():
    """Print the JSON Schema of a spec (for editors' YAML completion and checking)."""
    from cotsearch.spec import BackboneSpec

    print(json.dumps(BackboneSpec.model_json_schema(), indent=2))


@app.command()
def convert(
    checkpoint: Annotated[Path, typer.Argument(help="an official CoTNet checkpoint (.pth / .pth.tar)")],
    preset: Annotated[str, typer.Option(help="the preset it was trained as, e.g. cotnet50")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the model file to write (.safetensors)")],
    ema: Annotated[bool, typer.Option(help="prefer the checkpoint's state_dict_ema")] = False,
):
    """Convert an official JDAI-CV/CoTNet checkpoint into a cotsearch model file."""
    from cotsearch.convert import convert_checkpoint
    from cotsearch.model_file import save_model
    from cotsearch.spec_io import list_presets

    if preset not in list_presets():
        raise CotsearchError(f"--preset {preset}: unknown preset; presets: {', '.join(list_presets())}")
    model = convert_checkpoint(checkpoint, preset, use_ema=ema)
    save_model(model, output, extra={"source": str(checkpoint)})
    console.print(f"wrote {output}: {preset}, {model.num_classes} classes, "
                  f"{sum(p.numel() for p in model.parameters()):,} params")


def main() -> None:
    """Entry point: user mistakes print one line and exit 2, never a traceback."""
    try:
        app()
    except CotsearchError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
