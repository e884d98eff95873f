"""`cotsearch tune`: a Ray Tune search driven by Optuna, from a space file to a run
directory holding the study, every trial's record and weights, the best model, a Pareto
plot and the reference presets' results.

The run directory is Ray's storage path (RunConfig.storage_path) and holds the Optuna
study (study.db), so `--resume RUN_DIR` continues a search after a crash or Ctrl-C: finished
trials are kept and counted, trials that were running are marked interrupted and run anew.
On a multi-node cluster the run directory must be on storage every node can write (NFS or
similar): trials write their weights there.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from rich.console import Console
from rich.table import Table

from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_text
from cotsearch.process.ctrl_c import CtrlC
from cotsearch.search.confirm import (
    Confirmation,
    candidates,
    planned_runs,
    read_runs,
    reference_means,
    run_record,
    summarize,
    write_noise,
    write_runs,
)
from cotsearch.search.progress import SearchProgress
from cotsearch.search.records import TrialRecord, best_record, copy_best, records, worker_failure, write_trials_csv
from cotsearch.search.rundir import prepare_run_dir
from cotsearch.search.searcher import StudySearcher, fail_interrupted, finished_trials, search_study
from cotsearch.search.space import SearchSpace


@dataclass
class SearchOutcome:
    run_dir: Path
    best_trial: int | None
    best_val_top1: float | None
    best_test_top1: float | None
    best_macs: int | None
    finished: int
    infeasible: int
    confirmation: Confirmation | None = None


def _without_notices(record: logging.LogRecord) -> bool:
    """Drop Ray's notice that token authentication, its default, is on: nothing for a user
    of cotsearch to do about it (setting RAY_AUTH_MODE would have to precede `import ray`)."""
    return not record.getMessage().startswith("Token authentication is enabled for this Ray cluster")


def _init_ray(address: str | None) -> bool:
    """Join the cluster at `address` (or RAY_ADDRESS), or start a local one. True if started here."""
    address = address or os.environ.get("RAY_ADDRESS")
    logging.getLogger("ray").setLevel(logging.WARNING)
    for handler in logging.getLogger("ray").handlers:
        handler.addFilter(_without_notices)
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            # "local": a Ray of its own, even where another one runs on this machine
            ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False,
                     num_cpus=os.cpu_count())
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise CotsearchError(f"--address {address}: cannot join the Ray cluster ({str(e).splitlines()[0]})") from None
    return True


def _run_confirmation(space: SearchSpace, run_dir: Path, study: optuna.Study, trainable, progress: SearchProgress,
                      ctrl_c: CtrlC) -> list[dict]:
    """Train the confirmation's runs still to train (cotsearch.search.confirm), as Ray trials."""
    runs = read_runs(run_dir)
    done = {r["number"] for r in runs if not r.get("error")}  # a run that failed is tried again
    todo = [c for c in planned_runs(space, records(study)) if c["number"] not in done]
    if not todo:
        return runs
    seeds = space.search.reference_seeds(space.train.seed)
    confirmed = sorted({c["name"] for c in todo if c["kind"] == "candidate"}, key=int)
    what = ([f"the top {len(confirmed)} trials ({', '.join(confirmed)})"] if confirmed else []) + \
        ([f"the references {', '.join(space.search.references)}"] if space.search.references else [])
    progress.console.print(f"confirming: training {' and '.join(what)} with seeds {', '.join(map(str, seeds))} "
                           "(same recipe)", soft_wrap=True)
    tuner = _tuner(space, run_dir, trainable, "ray-confirm", [progress, ctrl_c, RunRecorder(run_dir)],
                   param_space={"row": tune.grid_search(todo)},
                   trial_dirname_creator=lambda t: t.config["row"]["number"])
    with progress.start("confirmation", len(todo)):
        tuner.fit()
    return read_runs(run_dir)


class RunRecorder(tune.Callback):
    """Writes each confirmation run to confirm.json as it ends, so that a stopped search keeps
    the runs that finished."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.record(trial, trial.last_result or {})

    def on_trial_error(self, iteration, trials, trial, **info):
        self.record(trial, {"error": worker_failure(self.run_dir, trial.config["row"]["number"])})

    def record(self, trial, metrics: dict) -> None:
        number = trial.config["row"]["number"]  # its record replaces an earlier, failed one
        write_runs(self.run_dir, [*(r for r in read_runs(self.run_dir) if r["number"] != number),
                                  run_record(trial.config["row"], metrics)])


def _tuner(space: SearchSpace, run_dir: Path, trainable, name: str, callbacks: list, **tune_config) -> tune.Tuner:
    """A Tuner for one phase of the search, with the same storage, output and failure handling:
    a trial's worker or node that dies is run again up to `max_retries` times.
    `reuse_actors`: a trial starts on the worker of one that ended (torch imported, data
    loaded) instead of a new one, seconds sooner; train_trial keeps nothing else between trials."""
    param_space = tune_config.pop("param_space", None)
    return tune.Tuner(trainable, param_space=param_space,
                      tune_config=tune.TuneConfig(reuse_actors=True, **tune_config),
                      run_config=tune.RunConfig(storage_path=str(run_dir.resolve()), name=name, verbose=0,
                                                callbacks=callbacks,
                                                failure_config=tune.FailureConfig(max_failures=space.search.max_retries)))


class SearchInterrupted(CotsearchError):
    """Ctrl-C, SIGTERM or SIGHUP (cotsearch.process.signals): the search stopped, its running trials
    recorded as interrupted."""


def _alive_nodes() -> list[dict]:
    """The resources of each alive node of the cluster."""
    return [node["Resources"] for node in ray.nodes() if node["Alive"]]


def _trials_per_node(space: SearchSpace, nodes: list[dict]) -> list[int]:
    """How many trials each of these nodes can run at once."""
    cpus, gpus = space.search.cpus_per_trial, space.search.gpus_per_trial

    def fits(available: float, needed: float) -> float:  # 1.0 / 0.1 is 10 trials, though 1.0 // 0.1 == 9.0
        return int(available / needed + 1e-9) if needed else float("inf")

    return [int(min(fits(n.get("CPU", 0), cpus), fits(n.get("GPU", 0), gpus))) for n in nodes]


def check_resources(space: SearchSpace) -> None:
    """A trial needing more CPUs or GPUs than any node has would wait forever: say so now."""
    nodes = _alive_nodes()
    if not any(_trials_per_node(space, nodes)):
        cpus, gpus = space.search.cpus_per_trial, space.search.gpus_per_trial
        largest = max(nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)), default={})
        raise CotsearchError(f"--cpus-per-trial {cpus:g} --gpus-per-trial {gpus:g}: no node of the Ray cluster has that "
                             f"much (the largest has {largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs)")


@contextmanager
def ray_session(space: SearchSpace, run_dir: Path, resume: bool, address: str | None):
    """What a search and a sweep both do around their trials: join Ray (or start it here),
    check that a node can run a trial, and prepare and lock the run directory; yields the
    space to run (resuming: the saved one) and undoes it all in reverse."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Ray tables; our own progress lines
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C stops the run (see ctrl_c.py)
    # a trial validates only where its scheduler compares trials and at its end (see
    # SearchSettings.validation_epochs), yet reports every epoch so that its progress shows;
    # Tune's check that each result holds the metric would refuse those reports
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started_ray = _init_ray(address)
    try:
        check_resources(space)
        space, lock = prepare_run_dir(space, run_dir, resume)
        try:
            yield space
        finally:
            lock.close()
    finally:
        if started_ray:
            ray.shutdown()


def run_trial(config: dict, space_json: str, run_dir: str) -> None:
    """Ray Tune's trainable: one trial, in a worker. The trial's code (torch, timm) is
    imported here and not at the top, so the driver, which never trains, starts in 1.7 s
    instead of 4.3 s and holds 0.6 GB less until it needs torch: to test the best model at
    the end, or to score samples with a zero-cost proxy (search.prescreen)."""
    from cotsearch.search.trial import train_trial

    node = f"{socket.gethostname()}:{ray.get_runtime_context().get_node_id()[:8]}"
    train_trial(config, SearchSpace.model_validate_json(space_json), run_dir, tune.report, node)


def trial_trainable(space: SearchSpace, run_dir: Path):
    """The trial code as Ray Tune's trainable, with each trial's resources."""
    return tune.with_resources(
        tune.with_parameters(run_trial, space_json=space.model_dump_json(by_alias=True), run_dir=str(run_dir.resolve())),
        {"cpu": space.search.cpus_per_trial, "gpu": space.search.gpus_per_trial},
    )


def run_search(space: SearchSpace, run_dir: Path, resume: bool = False, address: str | None = None,
               console: Console | None = None) -> SearchOutcome:
    console = console or Console(stderr=True)
    space.data_shape()  # a missing data set is reported now, before anything is written
    with ray_session(space, run_dir, resume, address) as space:
        return _search(space, run_dir, resume, console)


def _search(space: SearchSpace, run_dir: Path, resume: bool, console: Console) -> SearchOutcome:
    study = search_study(space, run_dir)
    if resume:
        interrupted = fail_interrupted(study)
        console.print(f"resuming {run_dir}: {finished_trials(study)} trials finished, "
                      f"{interrupted} interrupted (run again first)")
    trainable = trial_trainable(space, run_dir)
    progress, ctrl_c = SearchProgress(study, run_dir, console), CtrlC()
    try:
        with ctrl_c.handling():
            _run_trials(space, run_dir, study, trainable, progress, ctrl_c)
            runs = _run_confirmation(space, run_dir, study, trainable, progress, ctrl_c)
            ctrl_c.raise_if_pressed()  # pressed during Tune's last step, and swallowed there
    except KeyboardInterrupt:
        interrupted = fail_interrupted(study)
        write_trials_csv(study, run_dir / "trials.csv")
        raise SearchInterrupted(f"interrupted: {finished_trials(study)} of {space.search.trials} trials finished, "
                                f"{interrupted} stopped while running (they run again first when the search is "
                                "resumed)") from None
    return finish(space, run_dir, study, runs, console)


def _run_trials(space: SearchSpace, run_dir: Path, study: optuna.Study, trainable, progress: SearchProgress,
                ctrl_c: CtrlC) -> None:
    """The searched trials still to run, on Ray Tune with ASHA (or FIFO)."""
    remaining = space.search.trials - finished_trials(study)
    if remaining <= 0:
        return
    scheduler = (ASHAScheduler(time_attr="epoch", metric="val_top1", mode="max", max_t=space.train.epochs,
                               grace_period=min(space.search.grace_period, space.train.epochs),
                               reduction_factor=space.search.reduction_factor)
                 if space.search.scheduler == "asha" else FIFOScheduler())
    attempt = len(list(run_dir.glob("ray-search-*"))) + 1
    progress.console.print(f"search {space.name}: {remaining} trials to train in {run_dir} "
                           f"({space.search.cpus_per_trial} CPU, {space.search.gpus_per_trial} GPU per trial)")
    searcher = StudySearcher(space, study, str(run_dir.resolve()))
    tuner = _tuner(space, run_dir, trainable, f"ray-search-{attempt}", [progress, ctrl_c], search_alg=searcher,
                   scheduler=scheduler, num_samples=remaining, max_concurrent_trials=space.search.max_concurrent_trials,
                   trial_dirname_creator=lambda trial: f"trial-{trial.config.get('number')}")
    # with max_concurrent_trials, Tune starts that many together by itself
    at_once = None if space.search.max_concurrent_trials else min(sum(_trials_per_node(space, _alive_nodes())), remaining)
    try:
        with progress.start("search", space.search.trials, done=space.search.trials - remaining), \
                _workers_started_together(at_once):
            tuner.fit()
    except Exception as e:  # Ray may wrap an error of ours (e.g. every sample over budget)
        raise _our_error(e) or e
    searcher.drop_waiting()


@contextmanager
def _workers_started_together(trials: int | None):
    """With a custom searcher such as ours and no max_concurrent_trials, Ray Tune starts one
    trial's worker at a time, each once the previous one is ready (seconds: it imports torch),
    unless told how many may start together; tell it `trials`, as many as the cluster runs at
    once (None: leave Tune's own). The cost: up to that many samples are drawn ahead of free
    slots, instead of one. TUNE_MAX_PENDING_TRIALS_PG is Tune's documented setting, read when
    the search starts; a value the user set wins."""
    if trials is None or "TUNE_MAX_PENDING_TRIALS_PG" in os.environ:
        yield
        return
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max(1, trials))
    try:
        yield
    finally:
        del os.environ["TUNE_MAX_PENDING_TRIALS_PG"]


def finish(space: SearchSpace, run_dir: Path, study: optuna.Study, runs: list[dict], console: Console) -> SearchOutcome:
    """Write trials.csv, noise.json and best/; test the chosen model; print the top trials, the
    confirmation and its verdicts. (The report, a layer above, is the command's to write.)"""
    rows = write_trials_csv(study, run_dir / "trials.csv")
    planned = {c["number"] for c in planned_runs(space, rows)}
    runs = [r for r in runs if r["number"] in planned]  # runs of settings a resumed search changed are left out
    write_runs(run_dir, runs)
    confirmation = summarize(rows, runs, candidates(space, rows))
    write_noise(run_dir, confirmation)
    by_number = {str(r.trial): r for r in rows}
    # confirmed: the best mean over fresh seeds (ties: the cheaper); else the best single reading
    best = by_number[confirmation.chosen.name] if confirmation.chosen else best_record(study)
    test_top1 = None
    if best is not None and (copy_best(run_dir, best) / "model.safetensors").exists():
        with console.status(f"testing the chosen model (trial {best.trial}) on the test set"):
            test_top1 = _test_best(space, run_dir / "best", confirmation)
    out = Console()
    out = out if out.is_terminal else Console(width=240)  # in a file, one line per trial
    out.print(_top_trials_table(space, rows, reference_means(runs)))
    if confirmation.specs:
        out.print(_confirmation_table(confirmation))
    counts = {s: sum(r.state == s for r in rows) for s in ("complete", "stopped", "failed", "infeasible", "interrupted")}
    console.print(f"trials: {counts}; records in {run_dir / 'trials.csv'}", soft_wrap=True)
    console.print(f"noise: {confirmation.sentence()}", soft_wrap=True)
    if best is None:
        console.print("no trial finished training: no best model", soft_wrap=True)
    else:
        budget = space.budgets.max_macs
        chosen = confirmation.chosen
        if chosen and confirmation.noise.known:
            reading = (f"confirmed val top-1 {chosen.mean.mean:.2%} ± {chosen.mean.half:.2%} (95% CI, {len(chosen.runs)} "
                       f"fresh seeds; its search reading {best.val_top1:.2%})")
        elif chosen:
            reading = (f"confirmed val top-1 {chosen.mean.mean:.2%} over {len(chosen.runs)} fresh seeds, no interval "
                       f"(the noise could not be measured); its search reading {best.val_top1:.2%}")
        else:
            reading = f"val top-1 {best.val_top1:.2%} (one reading, not confirmed)"
        console.print(f"best: trial {best.trial}, {reading}, test top-1 "
                      f"{'-' if test_top1 is None else f'{test_top1:.2%}'}, {best.macs / 1e6:.2f} M MACs"
                      f"{f' (budget {budget / 1e6:.1f} M)' if budget else ''} -> {run_dir / 'best'}", soft_wrap=True)
        for c in (c for c in confirmation.comparisons if chosen and c.candidate == chosen.name):
            console.print(f"verdict: trial {c.candidate} {c.verdict} {c.reference} ({c.difference.points()}, 95% CI, "
                          "same seeds)", soft_wrap=True)
        if chosen and confirmation.comparisons:
            console.print(f"(the verdicts hold for this recipe, {space.train.epochs} epochs on "
                          f"{space.train.train_limit or 'all'} images: a longer training can order specs otherwise, "
                          "as README 'Does the search work?' measured)", soft_wrap=True)
        if not chosen:
            why = ("`search.confirm` is off" if space.search.confirm is None
                   else "every confirmation run of the candidates failed (confirm.json says why)")
            console.print(f"verdict: none ({why}); a single reading cannot say whether the best trial beats the "
                          "references", soft_wrap=True)
        elif not space.search.references:
            console.print("verdict: none (the space names no reference presets to compare with)", soft_wrap=True)
        elif not confirmation.comparisons:
            console.print("verdict: none (no reference run and candidate run share a seed, or the noise could not "
                          "be measured; confirm.json says which runs failed)", soft_wrap=True)
    return SearchOutcome(run_dir, best and best.trial, best and best.val_top1, test_top1, best and best.macs,
                         finished_trials(study), counts["infeasible"], confirmation)


def _top_trials_table(space: SearchSpace, rows: list[TrialRecord], references: list[dict]) -> Table:
    table = Table(title=f"top trials of {space.name} (one validation reading each, ± its binomial standard error; "
                        "the test set is only used for the chosen one)")
    for col in ("trial", "state", "val top-1", "MACs", "params", "latency ms", "choices"):
        table.add_column(col, justify="left" if col in ("state", "choices") else "right", no_wrap=col != "choices")
    trained = sorted((r for r in rows if r.trained), key=lambda r: -(r.val_top1 or 0))
    for r in trained[:8]:
        state = r.state if r.state == "complete" else f"stopped after {r.epochs} epochs"
        se = f" ± {r.val_top1_se:.2%}" if r.val_top1_se is not None else ""
        table.add_row(str(r.trial), state, f"{r.val_top1:.2%}{se}", f"{(r.macs or 0) / 1e6:.1f}M",
                      f"{(r.params or 0) / 1e6:.2f}M", "-" if r.latency_ms is None else f"{r.latency_ms:.2f}",
                      describe_choices(space.decode(r.sampled)))
    for ref in references:
        if ref.get("val_top1") is not None:
            table.add_row(f"ref {ref['name']}", f"reference, mean of {ref['runs']}", f"{ref['val_top1']:.2%}",
                          f"{(ref['macs'] or 0) / 1e6:.1f}M", f"{(ref['params'] or 0) / 1e6:.2f}M",
                          "-" if ref.get("latency_ms") is None else f"{ref['latency_ms']:.2f}", "")
    return table


def _confirmation_table(confirmation: Confirmation) -> Table:
    """Each confirmed spec's mean over fresh seeds with its 95% interval, and each candidate
    against each reference (same seeds)."""
    references = [s for s in confirmation.specs if s.kind == "reference"]
    table = Table(title="confirmation: trained again with fresh seeds (95% intervals from the pooled seed noise)")
    for col in ("spec", "MACs", "search reading", "confirmed val top-1", *[f"vs {r.name}" for r in references]):
        table.add_column(col, justify="left" if col == "spec" else "right")
    for s in confirmation.specs:
        chosen = " (chosen)" if confirmation.chosen is s else ""
        cells = []
        for ref in references:
            c = next((c for c in confirmation.comparisons if c.candidate == s.name and c.reference == ref.name
                      and s.kind == "candidate"), None)
            cells.append(f"{c.verdict}: {c.difference.points()}" if c else "")
        table.add_row(f"{s.label}{chosen}", f"{s.macs / 1e6:.1f}M",
                      "-" if s.search_reading is None else f"{s.search_reading:.2%}",
                      f"{s.mean.mean:.2%} ± {s.mean.half:.2%} ({len(s.runs)} seeds)", *cells)
    return table


def _our_error(error: BaseException) -> CotsearchError | None:
    """The CotsearchError in an exception's chain, if any: it is the user's to fix."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CotsearchError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def describe_choices(values: dict) -> str:
    """stages.1.blocks=[cot, conv] -> s1=cot+conv: short enough for a table cell."""
    parts = []
    for key, value in values.items():
        key = key.replace("stages.", "s").replace(".blocks", "")
        value = "+".join(value) if isinstance(value, list) else value
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _test_best(space: SearchSpace, best_dir: Path, confirmation: Confirmation) -> float:
    """The best model's top-1 on the test set: reported once, never used to choose."""
    from cotsearch.cost.latency import resolve_device
    from cotsearch.data.load import load_data
    from cotsearch.export.model_file import load_model
    from cotsearch.train.loop import evaluate

    recipe = space.train
    data = load_data(recipe.data, val_size=recipe.val_size, input_size=recipe.input_size)
    config = recipe.train_config()
    device = resolve_device(config.device)
    model = load_model(best_dir / "model.safetensors", device)
    _, top1 = evaluate(model, data.test, config, device)
    result = {"test_top1": top1, "test_images": len(data.test), "spec_hash": model.spec.spec_hash(),
              "input_size": model.spec.input_size,
              "confirmed": None if confirmation.chosen is None else {
                  "val_top1_mean": confirmation.chosen.mean.mean,
                  "ci95": [confirmation.chosen.mean.low, confirmation.chosen.mean.high]
                  if confirmation.noise.known else None,
                  "seeds": sorted(confirmation.chosen.runs)}}
    atomic_write_text(best_dir / "result.json", json.dumps(result, indent=2))
    return top1
