"""`cotsearch tune`: a Ray Tune search driven by Optuna, from a space file to a run
directory holding the study, every trial's record and weights, the best model, a Pareto
plot and the reference presets' results: the searched trials here, then the confirmation
(confirm_phase.py) and the end (finish.py), in a Ray session (session.py).

The run directory is Ray's storage path (RunConfig.storage_path) and holds the Optuna
study (study.db), so `--resume RUN_DIR` continues a search after a crash or Ctrl-C: finished
trials are kept and counted, trials that were running are marked interrupted and run anew.
On a multi-node cluster the run directory must be on storage every node can write (NFS or
similar): trials write their weights there.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from rich.console import Console

from cotsearch.errors import SearchInterrupted, user_error
from cotsearch.process.ctrl_c import CtrlC
from cotsearch.search.confirm_phase import run_confirmation
from cotsearch.search.finish import SearchOutcome, finish
from cotsearch.search.progress import SearchProgress
from cotsearch.search.records import finished, records, write_trials_csv
from cotsearch.search.searcher import StudySearcher, fail_interrupted, search_study
from cotsearch.search.session import alive_nodes, make_tuner, ray_session, trials_per_node
from cotsearch.search.space import SearchSpace


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
        console.print(f"resuming {run_dir}: {finished(records(study))} trials finished, "
                      f"{interrupted} interrupted (run again first)")
    progress, ctrl_c = SearchProgress(study, run_dir, console), CtrlC()
    try:
        with ctrl_c.handling():
            _run_trials(space, run_dir, study, progress, ctrl_c)
            rows = records(study)  # the search's, read once: the confirmation and the end use them
            runs = run_confirmation(space, run_dir, rows, progress, ctrl_c)
            ctrl_c.raise_if_pressed()  # pressed during Tune's last step, and swallowed there
    except KeyboardInterrupt:
        interrupted = fail_interrupted(study)
        rows = records(study)
        write_trials_csv(rows, run_dir / "trials.csv")
        raise SearchInterrupted(f"interrupted: {finished(rows)} of {space.search.trials} trials finished, "
                                f"{interrupted} stopped while running (they run again first when the search is "
                                "resumed)") from None
    return finish(space, run_dir, rows, runs, console)


def _run_trials(space: SearchSpace, run_dir: Path, study: optuna.Study, progress: SearchProgress,
                ctrl_c: CtrlC) -> None:
    """The searched trials still to run, on Ray Tune with ASHA (or FIFO)."""
    remaining = space.search.trials - finished(records(study))
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
    if searcher.screen:  # before Tune, which would show nothing while the pool is scored
        searcher.screen.prepare(lambda line: progress.console.print(line, highlight=False, soft_wrap=True))
    tuner = make_tuner(space, run_dir, f"ray-search-{attempt}", [progress, ctrl_c], search_alg=searcher,
                       scheduler=scheduler, num_samples=remaining, dirname=lambda config: f"trial-{config.id}")
    # with max_concurrent_trials, Tune starts that many together by itself
    at_once = None if space.search.max_concurrent_trials else min(sum(trials_per_node(space, alive_nodes())), remaining)
    try:
        with progress.start("search", space.search.trials, done=space.search.trials - remaining), \
                _workers_started_together(at_once):
            tuner.fit()
    except Exception as e:  # Ray may wrap an error of ours (e.g. every sample over budget)
        raise user_error(e) or e
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

