"""`cotsearch build`, `profile`, `train`, `presets`, `schema`: one network at a time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cotsearch.cli.app import (
    SpecArg,
    app,
    check_model_output,
    console,
    err_console,
    human,
    validated,
)
from cotsearch.errors import CotsearchError


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
    input_size: Annotated[Optional[int], typer.Option(min=8, help="input size for the resolutions shown (default: the spec's)")] = None,
):
    """Validate a spec, build its model and show its stages; optionally save the model file."""
    from cotsearch.arch.load import load_spec
    from cotsearch.cost.analytic import estimate_cost

    backbone = load_spec(spec)  # a bad spec is reported before torch is imported
    if output is not None:
        check_model_output(output)
    from cotsearch.cost.latency import resolve_device
    from cotsearch.cost.memory import check_fits
    from cotsearch.export.model_file import save_model
    from cotsearch.nn.model import build_model, num_params

    size = input_size or backbone.input_size
    check_fits(backbone.name or spec, estimate_cost(backbone, size), 1, resolve_device("cpu"), training=False)
    model = build_model(backbone)
    table = Table(title=f"{backbone.name or spec}  ({backbone.in_chans}x{size}x{size} input, {backbone.num_classes} classes)")
    for col in ("stage", "blocks", "middle layers", "width", "out chs", "stride", "output"):
        table.add_column(col, justify="right" if col not in ("stage", "middle layers") else "left")
    sizes = backbone.feature_sizes(size)
    table.add_row("stem", "-", backbone.stem.type, "-", str(backbone.stem.out_chs), str(backbone.stem.stride),
                  f"{sizes[0]}x{sizes[0]}")
    for i, (stage, res) in enumerate(zip(backbone.stages, sizes[1:])):
        table.add_row(f"layer{i + 1}", str(stage.depth), _kinds_summary(stage.block_kinds), str(stage.width),
                      str(stage.planes * backbone.expansion), str(stage.stride), f"{res}x{res}")
    console.print(table)
    console.print(f"params: {num_params(model):,}   spec hash: {backbone.spec_hash()}")
    if output is not None:
        save_model(model, output)
        console.print(f"wrote {output}")



@app.command()
def profile(
    spec: SpecArg,
    input_size: Annotated[Optional[int], typer.Option(min=8, help="square input size (default: the spec's)")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
    batch_size: Annotated[int, typer.Option(min=1, help="batch size for the latency")] = 1,
    latency: Annotated[bool, typer.Option(help="measure latency (--no-latency: costs only)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of the table")] = False,
    analytic: Annotated[bool, typer.Option("--analytic", help="the cost model only: no model built, no torch")] = False,
):
    """Params, MACs (analytic and measured), activations and latency, per stage and total."""
    from cotsearch.arch.load import load_spec

    backbone = load_spec(spec)
    if analytic:
        from cotsearch.cost.analytic import analytic_profile

        result = analytic_profile(backbone, input_size)
        latency = False
    else:
        from cotsearch.cost.profile import profile_spec

        result = profile_spec(backbone, input_size, device, batch_size, measure_latency=latency)
    if as_json:
        print(json.dumps(result))
        return
    h, w = result["input_size"]
    where = f", {result['device']}, batch {batch_size}" if latency else ""
    table = Table(title=f"{result['name'] or spec}  ({h}x{w}{where})")
    for col in ("part", "output", "params", "MACs", "MACs conv", "measured", "acts", "ms"):
        table.add_column(col, justify="left" if col == "part" else "right")
    rows = result["stages"] + [dict(result, name="total", out_shape=None)]
    for part in rows:
        shape = "x".join(map(str, part["out_shape"])) if part["out_shape"] else ""
        table.add_row(part["name"], shape, human(part["params"]), human(part["macs"]), human(part["macs_conv"]),
                      "-" if part["measured_macs_conv"] is None else human(part["measured_macs_conv"]), human(part["acts"]),
                      "-" if part["latency_ms"] is None else f"{part['latency_ms']:.2f}",
                      style="bold" if part["name"] == "total" else None)
    console.print(table)
    console.print("MACs: the paper's (official ptflops-style) count. MACs conv: conv + linear + aggregation "
                  "multiply-adds; measured: the same from torch.utils.flop_counter. ms: median latency, each part alone.")



@app.command()
def train(
    spec: SpecArg,
    data: Annotated[str, typer.Option(help="fashion-mnist[:DIR], mnist:DIR, cifar10:DIR, cifar100:DIR or folder:DIR")] = "fashion-mnist",
    epochs: Annotated[int, typer.Option(min=1)] = 3,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    lr: Annotated[Optional[float], typer.Option(min=0, help="peak learning rate (default: 4e-3 adamw, 0.1 sgd)")] = None,
    opt: Annotated[str, typer.Option(help="adamw or sgd (Nesterov)")] = "adamw",
    train_limit: Annotated[Optional[int], typer.Option(min=1, help="train on a stratified subset of N images")] = None,
    val_size: Annotated[Optional[int], typer.Option(min=1, help="images held out of training for validation (default 5000)")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N")] = "auto",
    augment: Annotated[bool, typer.Option(help="random shifts / flips (or timm's train transforms)")] = False,
    mixup: Annotated[float, typer.Option(min=0, help="mixup alpha (0: off)")] = 0.0,
    cutmix: Annotated[float, typer.Option(min=0, help="cutmix alpha (0: off)")] = 0.0,
    channels_last: Annotated[bool, typer.Option(help="channels_last memory format (faster convolutions)")] = True,
    input_size: Annotated[int, typer.Option(min=8, help="image size for folder data")] = 224,
    checkpoint: Annotated[Optional[Path], typer.Option(help="save after every epoch; resume from it if it exists")] = None,
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="write the trained model file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary as the last line")] = False,
):
    """Train a spec on a data set; report validation top-1 per epoch and the final test top-1."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from cotsearch.arch.load import load_spec
    from cotsearch.cost.analytic import estimate_cost
    from cotsearch.train.config import TrainConfig

    base = load_spec(spec)  # a bad spec or option is reported before torch is imported
    config = validated(TrainConfig, dict(epochs=epochs, batch_size=batch_size, lr=lr, opt=opt, seed=seed,
                                          device=device, augment=augment, mixup=mixup, cutmix=cutmix,
                                          channels_last=channels_last))
    if output is not None:
        check_model_output(output)
    from cotsearch.cost.latency import resolve_device
    from cotsearch.cost.memory import check_fits
    from cotsearch.data.load import load_data
    from cotsearch.export.model_file import save_model
    from cotsearch.nn.model import num_params
    from cotsearch.train.loop import init_model
    from cotsearch.train.loop import train as run_training

    splits = load_data(data, train_limit=train_limit, val_size=val_size, input_size=input_size)
    backbone = splits.shape.apply(base)  # the data's channels, classes and image size
    check_fits(backbone.name or spec, estimate_cost(backbone), config.batch_size, resolve_device(config.device),
               training=True)
    model = init_model(backbone, seed=config.seed)
    err_console.print(f"{backbone.name or spec}: {num_params(model):,} params; {splits.describe()}")
    progress = Progress(TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(), console=err_console)
    task = progress.add_task("train", total=None, epoch=1, loss=float("nan"))

    def on_step(step: int, steps: int, loss: float) -> None:
        progress.update(task, completed=step, total=steps, loss=loss)

    def on_epoch(m) -> None:
        progress.console.print(f"epoch {m.epoch}/{config.epochs}: train loss {m.train_loss:.3f}, val top-1 "
                               f"{m.val_top1:.2%}, {m.train_images_per_s:,.0f} img/s, {m.seconds:.0f} s")
        if m.epoch < config.epochs:
            progress.reset(task, epoch=m.epoch + 1, loss=float("nan"))
        else:
            progress.update(task, visible=False)

    try:
        with progress:
            result = run_training(model, splits, config, on_epoch=on_epoch, on_step=on_step, checkpoint=checkpoint)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP: the last finished epoch's checkpoint is kept
        kept = (f"; {checkpoint} holds the last finished epoch: the same command resumes from it"
                if checkpoint is not None and checkpoint.exists() else "")
        raise CotsearchError(f"interrupted{kept}") from None
    if result.resumed_from_epoch:
        err_console.print(f"resumed from {checkpoint} after epoch {result.resumed_from_epoch}")
    console.print(f"test top-1: {result.test_top1:.2%}  ({len(splits.test)} images; "
                  f"{result.train_images_per_s:,.0f} train images/s)")
    if output is not None:
        save_model(model, output, extra={**splits.metadata(), "test_top1": result.test_top1,
                                         "train_config": config.model_dump()})
        console.print(f"wrote {output}")
    if as_json:
        print(json.dumps({"spec": backbone.name or spec, "data": splits.name, **result.to_dict()}))



@app.command()
def presets():
    """List the shipped presets with their parameter counts and MACs."""
    from cotsearch.arch.load import list_presets, load_spec
    from cotsearch.cost.analytic import estimate_cost

    table = Table("preset", "input", "stages (depths)", "params", "MACs")
    for name in list_presets():
        spec = load_spec(name)
        cost = estimate_cost(spec)
        table.add_row(name, f"{spec.in_chans}x{spec.input_size}", str([s.depth for s in spec.stages]),
                      f"{cost.params:,}", human(cost.macs))
    console.print(table)



@app.command()
def schema():
    """Print the JSON Schema of a spec (for editors' YAML completion and checking)."""
    from cotsearch.arch.spec import BackboneSpec

    print(json.dumps(BackboneSpec.model_json_schema(), indent=2))
