"""`cotsearch tune`, `sweep`, `proxies`, `analyze`: searching and benchmarking a space."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from cotsearch.cli.app import (
    AddressOption,
    CpusPerTrialOption,
    GpusPerTrialOption,
    LatencyIsolatedOption,
    app,
    console,
    err_console,
    validated,
)
from cotsearch.errors import CotsearchError, SearchInterrupted


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
    from cotsearch.search.space import Confirm, load_space

    written = load_space(str(space_file))
    if references is False:
        search["references"] = []
    if confirm is False:
        search["confirm"] = None
    elif confirm or confirm_top or confirm_seeds:
        given = written.search.confirm or Confirm()
        search["confirm"] = {**given.model_dump(), **{k: v for k, v in (("top", confirm_top), ("seeds", confirm_seeds))
                                                     if v is not None}}
    space = _space_with(written, search, dict(epochs=epochs, train_limit=train_limit, data=data, device=device))
    run_dir = _run_dir(space.name, out, resume)
    _check_before_ray(space, run_dir, resume is not None)
    from cotsearch.search.runner import run_search  # Ray: only once the space is valid

    try:
        outcome = run_search(space, run_dir, resume=resume is not None, address=address, console=err_console)
    except SearchInterrupted as e:
        raise SearchInterrupted(f"{e}; resume with: cotsearch tune {space_file} --resume {run_dir}") from None
    from cotsearch.report.report import write_report

    err_console.print(f"report: {write_report(run_dir)}", soft_wrap=True)
    if outcome.best_test_top1 is not None:
        console.print(f"best model: {run_dir / 'best' / 'model.safetensors'}  test top-1 {outcome.best_test_top1:.2%}")



def _space_with(space, search: dict, recipe: dict):
    """A space as its file wrote it, with the search settings and recipe fields the options give
    (None: the file's)."""
    from cotsearch.search.space import SearchSpace

    search = {k: v for k, v in search.items() if v is not None}
    recipe = {k: v for k, v in recipe.items() if v is not None}
    return validated(SearchSpace, space.values_with(search, recipe))


def _check_before_ray(space, run_dir: Path, resume: bool) -> None:
    """The mistakes found without torch or Ray (a missing data set, a run directory that
    cannot be used), reported in a fraction of a second instead of after Ray has started."""
    from cotsearch.search.rundir import check_run_dir
    from cotsearch.search.scaled_presets import reference_specs

    space.data_shape()
    reference_specs(space)  # a preset that cannot be scaled to the budget, or two names for one network
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
    scaled_preset: Annotated[Optional[list[str]], typer.Option(
        help="also train this preset scaled by width to the space's budget, with the same seeds: the hand-made "
             "choice a search must beat (repeatable)")] = None,
):
    """Train many specs of a space, each with several seeds: sweep.csv (a tabular benchmark) and edf.png."""
    import optuna

    from cotsearch.bench.sweep_runner import run_sweep

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line for the specs' draw
    if (archs is None) == (not all_specs):
        raise CotsearchError("give --archs N or --all, one of them")
    from cotsearch.search.space import load_space

    search = dict(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial, max_concurrent_trials=max_concurrent,
                  latency_isolated=latency_isolated)
    space = _space_with(load_space(str(space_file)), search,
                        dict(epochs=epochs, train_limit=train_limit, val_size=val_size, data=data, device=device))
    out_dir = _run_dir(f"sweep-{space.name}", out, resume)
    _check_before_ray(space, out_dir, resume is not None)
    try:
        table = run_sweep(space, out_dir, archs, seeds, resume=resume is not None, address=address, proxies=proxies,
                          console=err_console, scaled_presets=scaled_preset)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP
        from cotsearch.bench.sweep import TABLE

        listed = f" ({out_dir / TABLE} lists them)" if (out_dir / TABLE).exists() else ""
        raise SearchInterrupted(f"interrupted: the finished rows are kept in {out_dir}{listed}; resume with the same "
                                f"command and --resume {out_dir} instead of --out") from None
    console.print(f"wrote {table} and {table.parent / 'edf.png'}" if table else f"no rows in {out_dir}: nothing written")



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

    from cotsearch.bench.sweep import sample_specs
    from cotsearch.data.load import load_data
    from cotsearch.search.proxies import proxy_batch, score_spec
    from cotsearch.search.records import describe_choices

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



def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or taskset's share, where
    the system tells it), else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@app.command()
def analyze(
    search_dir: Annotated[Path, typer.Argument(help="a sweep of a space with the search's own recipe")],
    reference_dir: Annotated[Path, typer.Argument(help="a sweep of the same space with a longer reference recipe")],
    out: Annotated[Optional[Path], typer.Option(help="where analysis.md and its plots go (default: SEARCH_DIR's parent)")] = None,
    runs: Annotated[int, typer.Option(min=1, help="seeds of each simulated search")] = 200,
    budget: Annotated[Optional[list[int]], typer.Option(min=1, help="trainings per simulated search; repeatable, e.g. "
                                                                    "--budget 16 --budget 32 --budget 64 (default: the "
                                                                    "space's trials)")] = None,
    named: Annotated[Optional[list[str]], typer.Option(help="NAME (a preset) or LABEL=V1,V2,... (a value per parameter, "
                                                           "in order) to rank; repeatable")] = None,
    prescreen: Annotated[Optional[list[str]], typer.Option(help="proxy for TPE with pre-screening, simulated alone and "
                                                                "with confirmation; repeatable (default: each of them, "
                                                                "params and MACs too, alone; the space's own "
                                                                "search.prescreen is simulated either way)")] = None,
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
    jobs: Annotated[Optional[int], typer.Option(min=1, help="processes the simulated searches run in (default: the "
                                                            "CPUs this process may use; the numbers are the same for "
                                                            "any)")] = None,
):
    """Does the search work? Proxies, recipes, the per-epoch signal and simulated searches (with
    and without confirmation) on two sweeps: analysis.md."""
    import shlex

    from cotsearch.bench.analysis import SIGNAL_HEADER, run_analysis, signal_rows, signal_verdict
    from cotsearch.search.space import PROXY_NAMES, Confirm, Prescreen

    validated(Prescreen, {"proxy": "macs", "pool": pool, "keep": keep})
    validated(Confirm, {k: v for k, v in (("top", confirm_top), ("seeds", confirm_seeds)) if v is not None})
    for proxy in prescreen or []:
        if proxy not in PROXY_NAMES:
            raise CotsearchError(f"--prescreen {proxy}: not a proxy; expected one of {', '.join(PROXY_NAMES)}")
    command = shlex.join(["cotsearch", *sys.argv[1:]])
    processes = jobs or usable_cpus()
    started = time.time()

    def progress(done: int, total: int, job) -> None:  # a line per simulation, as `sweep` prints one per row
        if job is None:
            used = min(processes, total)
            line = f"analyze: {total} simulations of {runs} seeded searches each, in {used} process{'es' * (used > 1)}"
        else:
            line = f"[{time.time() - started:7.0f}s] {done}/{total} {job}"
        err_console.print(line, highlight=False, soft_wrap=True)

    found = run_analysis(search_dir, reference_dir, out or search_dir.resolve().parent, runs, budget, named, prescreen,
                         pool, keep, command, reading, confirm_top, confirm_seeds, processes, progress)
    table = Table(*SIGNAL_HEADER, title="from which epoch the search recipe's ranking carries signal")
    for row in signal_rows(found.signal, found.val_images):
        table.add_row(*row)
    console.print(table, signal_verdict(found.signal))
    for trainings, by_reading in found.by_budget.items():
        for name, outcomes in by_reading.items():
            table = Table("strategy", "trainings", "reference top-1", "95% CI", "regret (points)", "in the top 5%",
                          title=f"simulated searches of {trainings} trainings reading {name}")
            for outcome in outcomes:
                s = outcome.summary(found.truth)
                table.add_row(outcome.name, " + ".join(map(str, outcome.trainings)), f"{s['mean']:.2%}",
                              f"±{s['ci']:.2%}", f"{100 * s['regret']:.2f}", f"{s['top']:.0%}")
            console.print(table)
    for trainings, persons in found.persons.items():
        for p in persons:
            console.print(f"{trainings} trainings, {p.strategy} against {p.preset}: {p.difference.points()} of reference "
                          f"top-1 ({p.verdict})", highlight=False)
    console.print(f"wrote {found.report}")
