"""The `cotsearch` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from cotsearch.errors import CheckpointError, CotsearchError, ModelFileError
from cotsearch.files import check_writable, opens_with, require_file, require_folder
from cotsearch.signals import StopSignals

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
        from cotsearch.export.header import is_model_file

        check_writable(output, "-o", is_model_file, "a cotsearch model file")
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
    config = _validated(TrainConfig, dict(epochs=epochs, batch_size=batch_size, lr=lr, opt=opt, seed=seed,
                                          device=device, augment=augment, mixup=mixup, cutmix=cutmix,
                                          channels_last=channels_last))
    if output is not None:
        check_writable(output, "-o")
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


@app.command()
def tune(
    space_file: Annotated[Path, typer.Argument(metavar="SPACE", help="a search-space file, e.g. spaces/cot_stages.yaml")],
    trials: Annotated[Optional[int], typer.Option(min=1, help="trials to train")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="epochs per trial")] = None,
    train_limit: Annotated[Optional[int], typer.Option(min=1, help="training images per trial (stratified subset)")] = None,
    data: Annotated[Optional[str], typer.Option(help="the trials' data set (see `cotsearch train --data`)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="run directory (default: runs/<space>-<date>)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue the search in this run directory")] = None,
    address: AddressOption = None,
    cpus_per_trial: CpusPerTrialOption = None,
    gpus_per_trial: GpusPerTrialOption = None,
    max_concurrent: Annotated[Optional[int], typer.Option(min=1, help="trials running at once (default: as resources allow)")] = None,
    sampler: Annotated[Optional[str], typer.Option(help="tpe, nsga2 or random")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0)] = None,
    device: Annotated[Optional[str], typer.Option(help="the trials' device: auto, cpu or cuda")] = None,
    trial_timeout: Annotated[Optional[float], typer.Option(min=1, help="fail a trial still running after this many seconds")] = None,
    references: Annotated[Optional[bool], typer.Option(help="train the space's reference presets too")] = None,
    confirm: Annotated[Optional[bool], typer.Option(help="train the top trials and the references again with fresh "
                                                         "seeds before choosing (default: the space's search.confirm)")] = None,
    confirm_top: Annotated[Optional[int], typer.Option(min=1, help="trials to confirm (search.confirm.top)")] = None,
    confirm_seeds: Annotated[Optional[int], typer.Option(min=2, help="fresh seeds each (search.confirm.seeds)")] = None,
    latency_isolated: LatencyIsolatedOption = None,
):
    """Search a space of backbones with Optuna on Ray Tune, under the space's budgets; confirm the
    best trials with fresh seeds and state the winner against the references with intervals."""
    search = dict(trials=trials, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                  max_concurrent_trials=max_concurrent, sampler=sampler, seed=seed, trial_timeout_s=trial_timeout,
                  latency_isolated=latency_isolated)
    if references is False:
        search["references"] = []
    if confirm is False:
        search["confirm"] = None
    elif confirm or confirm_top or confirm_seeds:
        from cotsearch.search.space import Confirm, load_space

        given = load_space(str(space_file)).search.confirm or Confirm()
        search["confirm"] = {**given.model_dump(), **{k: v for k, v in (("top", confirm_top), ("seeds", confirm_seeds))
                                                     if v is not None}}
    space = _space_with(space_file, search, dict(epochs=epochs, train_limit=train_limit, data=data, device=device))
    run_dir = _run_dir(space.name, out, resume)
    _check_before_ray(space, run_dir, resume is not None)
    from cotsearch.search.runner import SearchInterrupted, run_search  # Ray: only once the space is valid

    try:
        outcome = run_search(space, run_dir, resume=resume is not None, address=address, console=err_console)
    except SearchInterrupted as e:
        raise SearchInterrupted(f"{e}; resume with: cotsearch tune {space_file} --resume {run_dir}") from None
    if outcome.best_test_top1 is not None:
        console.print(f"best model: {run_dir / 'best' / 'model.safetensors'}  test top-1 {outcome.best_test_top1:.2%}")


def _space_with(space_file: Path, search: dict, recipe: dict):
    """A space file with the search settings and recipe fields the options give (None: the file's)."""
    from cotsearch.search.space import SearchSpace, load_space

    space = load_space(str(space_file))
    search = {k: v for k, v in search.items() if v is not None}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    return _validated(SearchSpace, space.values_with(search, recipe))


def _check_before_ray(space, run_dir: Path, resume: bool) -> None:
    """The mistakes found without torch or Ray (a missing data set, a run directory that
    cannot be used), reported in a fraction of a second instead of after Ray has started."""
    from cotsearch.search.rundir import check_run_dir

    space.data_shape()
    check_run_dir(space, run_dir, resume)


def _run_dir(name: str, out: Path | None, resume: Path | None) -> Path:
    from datetime import datetime

    if resume is not None and out is not None and resume != out:
        raise CotsearchError("give --resume RUN_DIR or --out DIR, not both")
    return resume or out or Path("runs") / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"


@app.command()
def sweep(
    space_file: Annotated[Path, typer.Argument(metavar="SPACE", help="a search-space file, e.g. spaces/cot_placement.yaml")],
    archs: Annotated[Optional[int], typer.Option(min=1, help="train this many random feasible specs of the space")] = None,
    all_specs: Annotated[bool, typer.Option("--all", help="train every feasible spec (a space of choices only)")] = False,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per spec (row s trains with the recipe's seed + s)")] = 1,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="epochs per row")] = None,
    train_limit: Annotated[Optional[int], typer.Option(min=1, help="training images per row (stratified subset)")] = None,
    val_size: Annotated[Optional[int], typer.Option(min=1, help="validation images per row (a reference recipe judged "
                                                               "by its test top-1 needs few)")] = None,
    data: Annotated[Optional[str], typer.Option(help="the data set (see `cotsearch train --data`)")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output directory (default: runs/sweep-<space>-<date>)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue the sweep in this directory (finished rows are kept)")] = None,
    address: AddressOption = None,
    cpus_per_trial: CpusPerTrialOption = None,
    gpus_per_trial: GpusPerTrialOption = None,
    max_concurrent: Annotated[Optional[int], typer.Option(min=1, help="rows training at once (default: as resources allow)")] = None,
    device: Annotated[Optional[str], typer.Option(help="the rows' device: auto, cpu or cuda")] = None,
    proxies: Annotated[bool, typer.Option(help="score every spec with the zero-cost proxies first")] = True,
    latency_isolated: LatencyIsolatedOption = None,
):
    """Train many specs of a space, each with several seeds: sweep.csv (a tabular benchmark) and edf.png."""
    from cotsearch.search.runner import SearchInterrupted
    from cotsearch.search.sweep_runner import run_sweep

    if (archs is None) == (not all_specs):
        raise CotsearchError("give --archs N or --all, one of them")
    space = _space_with(space_file, dict(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                                         max_concurrent_trials=max_concurrent, latency_isolated=latency_isolated),
                        dict(epochs=epochs, train_limit=train_limit, val_size=val_size, data=data, device=device))
    out_dir = _run_dir(f"sweep-{space.name}", out, resume)
    _check_before_ray(space, out_dir, resume is not None)
    try:
        table = run_sweep(space, out_dir, archs, seeds, resume=resume is not None, address=address, proxies=proxies,
                          console=err_console)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP
        raise SearchInterrupted(f"interrupted: the finished rows are kept in {out_dir}; resume with the same command "
                                f"and --resume {out_dir} instead of --out") from None
    console.print(f"wrote {table} and {table.parent / 'edf.png'}")


@app.command()
def proxies(
    spec_or_space: Annotated[str, typer.Argument(metavar="SPEC_OR_SPACE", help="a preset, a spec file or a search-space file")],
    sample: Annotated[int, typer.Option(min=1, help="for a space: score this many random feasible specs of it")] = 4,
    data: Annotated[Optional[str], typer.Option(help="the data set (default: the space's, else fashion-mnist)")] = None,
    batch_size: Annotated[int, typer.Option(min=4, help="images in the mini-batch (ZiCo splits it in two)")] = 64,
    seed: Annotated[int, typer.Option(min=0, help="initial weights, batch and sample")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object per spec")] = False,
):
    """Zero-cost proxies of untrained specs from one mini-batch, with params and MACs."""
    from cotsearch.arch.load import load_spec
    from cotsearch.arch.yaml_io import read_yaml
    from cotsearch.search.space import PROXY_NAMES, TrialRecipe, load_space

    path = Path(spec_or_space)
    written = read_yaml(path) if path.is_file() else None
    space = load_space(str(path)) if isinstance(written, dict) and "params" in written else None
    base = None if space else load_spec(spec_or_space)  # a bad spec is reported before torch is imported
    recipe = space.train if space else TrialRecipe()
    import optuna

    from cotsearch.data.load import load_data
    from cotsearch.search.proxies import proxy_batch, score_spec
    from cotsearch.search.runner import describe_choices
    from cotsearch.search.sweep import sample_specs

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    splits = load_data(data or recipe.data, train_limit=recipe.train_limit, val_size=recipe.val_size,
                       input_size=recipe.input_size)
    if space is None:
        specs = {spec_or_space: splits.shape.apply(base)}
    else:
        specs = {describe_choices(space.decode(c.sampled)): splits.shape.apply(c.spec)
                 for c in sample_specs(space, sample, seed)}
    x, y = proxy_batch(splits, batch_size, seed)
    table = Table(title=f"zero-cost proxies ({splits.name}, batch {len(y)}, seed {seed}; higher is better)")
    for col in ("spec", *PROXY_NAMES, "seconds"):
        table.add_column(col, justify="left" if col == "spec" else "right", no_wrap=True)
    for label, spec in specs.items():
        scores, seconds = score_spec(spec, x, y, seed=seed, device=device)
        if as_json:
            print(json.dumps({"spec": label, "spec_hash": spec.spec_hash(), "scores": scores, "seconds": seconds}))
        table.add_row(label, *(f"{scores[n]:.4g}" for n in PROXY_NAMES), f"{sum(seconds.values()):.1f}")
    if not as_json:
        Console(width=max(console.width, 160)).print(table)


@app.command()
def analyze(
    search_dir: Annotated[Path, typer.Argument(help="a sweep of a space with the search's own recipe")],
    reference_dir: Annotated[Path, typer.Argument(help="a sweep of the same space with a longer reference recipe")],
    out: Annotated[Optional[Path], typer.Option(help="where analysis.md and its plots go (default: SEARCH_DIR's parent)")] = None,
    runs: Annotated[int, typer.Option(min=1, help="seeds of each simulated search")] = 200,
    budget: Annotated[Optional[int], typer.Option(min=1, help="trained trials per simulated search (default: the space's)")] = None,
    named: Annotated[Optional[list[str]], typer.Option(help="NAME (a preset) or LABEL=V1,V2,... (a value per parameter, "
                                                           "in order) to rank; repeatable")] = None,
    prescreen: Annotated[Optional[list[str]], typer.Option(help="proxy for TPE with pre-screening; repeatable "
                                                                "(default: each of them, params and MACs too)")] = None,
    pool: Annotated[int, typer.Option(min=2, help="pre-screening: random draws scored")] = 200,
    keep: Annotated[float, typer.Option(help="pre-screening: fraction of the pool's specs admitted")] = 0.25,
    reading: Annotated[Optional[list[str]], typer.Option(help="what a simulated search reads: val_top1 (the recipe's "
                                                              "validation split) or test_top1 (the test split, standing "
                                                              "in for a larger validation split); repeatable "
                                                              "(default: val_top1)")] = None,
    confirm_top: Annotated[Optional[int], typer.Option(min=1, help="confirmation: candidates read again "
                                                                   "(default: the space's search.confirm.top)")] = None,
    confirm_seeds: Annotated[Optional[int], typer.Option(min=2, help="confirmation: fresh readings of each, counted in "
                                                                     "the budget (default: search.confirm.seeds)")] = None,
):
    """Does the search work? Proxies, recipes, the per-epoch signal and simulated searches (with
    and without confirmation) on two sweeps: analysis.md."""
    import shlex

    from cotsearch.search.analysis import SIGNAL_HEADER, run_analysis, signal_rows, signal_verdict
    from cotsearch.search.space import PROXY_NAMES, Confirm, Prescreen

    _validated(Prescreen, {"proxy": "macs", "pool": pool, "keep": keep})
    _validated(Confirm, {k: v for k, v in (("top", confirm_top), ("seeds", confirm_seeds)) if v is not None})
    for proxy in prescreen or []:
        if proxy not in PROXY_NAMES:
            raise CotsearchError(f"--prescreen {proxy}: not a proxy; expected one of {', '.join(PROXY_NAMES)}")
    command = shlex.join(["cotsearch", *sys.argv[1:]])
    found = run_analysis(search_dir, reference_dir, out or search_dir.resolve().parent, runs, budget, named, prescreen,
                         pool, keep, command, reading, confirm_top, confirm_seeds)
    table = Table(*SIGNAL_HEADER, title="from which epoch the search recipe's ranking carries signal")
    for row in signal_rows(found.signal, found.val_images):
        table.add_row(*row)
    console.print(table, signal_verdict(found.signal))
    for name, outcomes in found.outcomes.items():
        table = Table("strategy", "trainings", "reference top-1", "95% CI", "regret (points)", "in the top 5%",
                      title=f"simulated searches reading {name}")
        for outcome in outcomes:
            s = outcome.summary(found.truth)
            table.add_row(outcome.name, " + ".join(map(str, outcome.trainings)), f"{s['mean']:.2%}", f"±{s['ci']:.2%}",
                          f"{100 * s['regret']:.2f}", f"{s['top']:.0%}")
        console.print(table)
    console.print(f"wrote {found.report}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `cotsearch tune`")],
    output: Annotated[Path, typer.Option("-o", "--output", help="model file (.safetensors), or .yaml for the spec only")],
    trial: Annotated[Optional[str], typer.Option(help="trial number, or a confirmation run (confirm-N-sSEED, "
                                                      "ref-NAME-sSEED); default: the chosen trial")] = None,
):
    """Export a trial's spec and trained weights from a search."""
    from cotsearch.search.records import export_trial

    if output.suffix not in (".safetensors", ".yaml", ".yml"):
        raise CotsearchError(f"-o {output}: expected a .safetensors model file or a .yaml spec "
                             "(for ONNX, export the model file with `cotsearch export-onnx`)")

    record = export_trial(run_dir, trial, output)
    what = f"trial {record.trial} ({record.state}, val top-1 {record.val_top1:.2%})" if record and record.val_top1 is not None else f"trial {trial}"
    console.print(f"wrote {output}: {what}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `cotsearch tune`, finished or still running")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="the HTML file (default: RUN_DIR/report.html); its PNGs go beside it")] = None,
):
    """Write a search's report: one self-contained HTML file (plots embedded) and its PNGs."""
    if output is not None:  # a report of ours is replaced: its title says so (as search/report.py writes it)
        check_writable(output, "-o", lambda page: opens_with(page, b"<title>cotsearch report: ", 200),
                       "a cotsearch report")
    import optuna

    from cotsearch.search.report import write_report

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console.print(f"wrote {write_report(run_dir, output)}")


@app.command()
def dashboard(
    run_dir: Annotated[Path, typer.Argument(help="a run directory of `cotsearch tune`, finished or still running")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="the port on 127.0.0.1")] = 8080,
):
    """Browse a search's study in optuna-dashboard, on 127.0.0.1 only (Ctrl-C stops it)."""
    from cotsearch.search.records import open_study, study_storage

    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise CotsearchError('optuna-dashboard is not installed: pip install -e ".[dashboard]"') from None
    open_study(run_dir, must_exist=True)
    err_console.print(f"optuna-dashboard for {run_dir}: http://127.0.0.1:{port}/dashboard/ (Ctrl-C stops it)")
    try:
        run_server(study_storage(run_dir), host="127.0.0.1", port=port)
    except OSError as e:
        raise CotsearchError(f"--port {port}: cannot serve on 127.0.0.1 ({e.strerror})") from None


@app.command("export-onnx")
def export_onnx(
    model_file: Annotated[Path, typer.Argument(help="a cotsearch model file (.safetensors)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the ONNX file to write")],
    batch_size: Annotated[int, typer.Option(min=1, help="batch size of the example input (and of the check)")] = 1,
    input_size: Annotated[Optional[int], typer.Option(min=8, help="square input size (default: the spec's)")] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch/--static-batch",
                                                help="accept any batch size, or exactly --batch-size")] = True,
    fold_bn: Annotated[bool, typer.Option(help="fold batch norms into the convs before exporting")] = True,
    check: Annotated[bool, typer.Option(help="compare onnxruntime's logits with PyTorch's (rtol 1e-4)")] = True,
    latency: Annotated[bool, typer.Option(help="also time onnxruntime and PyTorch on this machine's CPU")] = False,
):
    """Export a model file to ONNX (standard ops only), checked against onnxruntime."""
    # The two common mistakes, reported before torch is imported (seconds) by the checks the
    # library makes for its own callers.
    require_file(model_file, "model file", ModelFileError)
    require_folder(output)
    # PyTorch's exporter writes ir_version (protobuf field 1), then producer_name "pytorch" (field 2).
    check_writable(output, "-o", lambda onnx: opens_with(onnx, b"\x12\x07pytorch", 16),
                   "an ONNX file from PyTorch's exporter")
    import torch

    from cotsearch.cost.latency import resolve_device, time_callable
    from cotsearch.export.model_file import load_model
    from cotsearch.export.onnx import check_onnx, example_input, onnx_session
    from cotsearch.export.onnx import export_onnx as export

    model = load_model(model_file).eval()
    with console.status(f"exporting {model_file} to ONNX"):
        export(model, output, batch_size, input_size, dynamic_batch, fold_bn)
    console.print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB, batch {'dynamic' if dynamic_batch else batch_size})")
    x = example_input(model, batch_size, input_size)
    if not (check or latency):
        return
    session = onnx_session(output, torch.get_num_threads())
    if check:
        result = check_onnx(model, session, x)
        if not result.matches:
            raise CotsearchError(f"{output}: onnxruntime differs from PyTorch: max relative difference "
                                 f"{result.max_rel_diff:.2g} (allowed 1e-4)")
        console.print(f"onnxruntime matches PyTorch: max abs difference {result.max_abs_diff:.2g}, "
                      f"max relative {result.max_rel_diff:.2g}")
    if latency:
        cpu, feed = resolve_device("cpu"), {"image": x.numpy()}
        with torch.inference_mode():
            ort_s = time_callable(lambda: session.run(None, feed), cpu, what="onnxruntime")[0]
            torch_s = time_callable(lambda: model(x), cpu, what="PyTorch")[0]
        console.print(f"latency, batch {batch_size}, {torch.get_num_threads()} threads: onnxruntime "
                      f"{ort_s * 1e3:.2f} ms, PyTorch eager {torch_s * 1e3:.2f} ms ({ort_s / torch_s:.2f}x)")


def _validated(model_cls, values: dict):
    """Options checked by a Pydantic model, with its errors as one line naming the option."""
    from pydantic import ValidationError

    from cotsearch.arch.yaml_io import format_validation_error

    try:
        return model_cls.model_validate(values)
    except ValidationError as e:
        raise CotsearchError(format_validation_error(e, "options", model_cls).replace("options: ", "--", 1)) from None


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


@app.command()
def convert(
    checkpoint: Annotated[Path, typer.Argument(help="an official CoTNet checkpoint (.pth / .pth.tar)")],
    preset: Annotated[str, typer.Option(help="the preset it was trained as, e.g. cotnet50")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the model file to write (.safetensors)")],
    ema: Annotated[bool, typer.Option(help="prefer the checkpoint's state_dict_ema")] = False,
):
    """Convert an official JDAI-CV/CoTNet checkpoint into a cotsearch model file."""
    from cotsearch.arch.load import list_presets

    if preset not in list_presets():
        raise CotsearchError(f"--preset {preset}: unknown preset; presets: {', '.join(list_presets())}")
    require_file(checkpoint, "checkpoint file", CheckpointError)  # before torch is imported, as the preset is
    from cotsearch.export.header import is_model_file

    check_writable(output, "-o", is_model_file, "a cotsearch model file")
    from cotsearch.export.convert import convert_checkpoint
    from cotsearch.export.model_file import save_model
    from cotsearch.nn.model import num_params

    model = convert_checkpoint(checkpoint, preset, use_ema=ema)
    save_model(model, output, extra={"source": str(checkpoint)})
    console.print(f"wrote {output}: {preset}, {model.num_classes} classes, "
                  f"{num_params(model):,} params")


def main() -> None:
    """Entry point: user mistakes print one line and exit 2, never a traceback; Ctrl-C, SIGTERM
    and SIGHUP stop every command alike, which exits with the signal's code (cotsearch.signals)."""
    stop = StopSignals()
    try:
        with stop.handling():
            code = app(standalone_mode=False)
            sys.stdout.flush()  # here, where a closed pipe is caught below, not at exit
    except CotsearchError as e:
        _fail(str(e), stop.exit_code if stop.pressed.is_set() else 2)  # a stopped command: its signal's code
    except typer.TyperException as e:  # click's usage errors: a bad option, a missing argument
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        if type(e).__name__ == "NoArgsIsHelpError":
            print(message)
            sys.exit(0)
        command = getattr(getattr(e, "ctx", None), "command_path", "cotsearch")
        _fail(f"{message} (see '{command} --help')", getattr(e, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        _fail("interrupted", stop.exit_code)
    except BrokenPipeError:  # `cotsearch presets | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    if stop.pressed.is_set():  # typer returns 130 for a KeyboardInterrupt, whichever signal raised it
        _fail("interrupted", stop.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err_console.print(f"error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
