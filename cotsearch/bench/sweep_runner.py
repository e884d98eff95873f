"""Runs a sweep's rows (cotsearch.bench.sweep) as Ray Tune trials, exactly as `tune` runs a
search's: the same trial code, resources, cluster support and failure handling."""

from __future__ import annotations

import time
from pathlib import Path

from ray import tune
from rich.console import Console

from cotsearch.bench.sweep import (
    EDF,
    FINISHED,
    enumerate_specs,
    make_row,
    plot_edf,
    read_rows,
    row_configs,
    sample_specs,
    score_proxies,
    write_row,
    write_table,
)
from cotsearch.files import save_figure
from cotsearch.process.ctrl_c import CtrlC
from cotsearch.search.records import worker_failure
from cotsearch.search.runner import ray_session, trial_trainable
from cotsearch.search.space import SearchSpace


class RowWriter(tune.Callback):
    """Writes each (spec, seed) row to rows/ as its trial ends, with its learning curve."""

    def __init__(self, out: Path, proxies: dict[str, dict], console: Console, total: int):
        self.out, self.proxies, self.console, self.total = out, proxies, console, total
        self.curves: dict[str, dict[int, float]] = {}
        self.started, self.done = time.time(), 0

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "console"}  # Ray pickles the Tuner's state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.console = Console(stderr=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "epoch" in result and not result.get("failed") and not result.get("infeasible"):
            self.curves.setdefault(trial.trial_id, {})[result["epoch"]] = result["val_top1"]

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.on_trial_result(iteration, trials, trial, trial.last_result or {})
        self.write(trial, trial.last_result or {})

    def on_trial_error(self, iteration, trials, trial, **info):
        self.write(trial, {"failed": True})

    def write(self, trial, last: dict) -> None:
        config = trial.config["row"]
        number = config["number"]
        failure = None
        if last.get("failed") and not last.get("error"):  # the worker died without reporting
            failure = worker_failure(self.out, number)
        row = make_row(config, last, self.curves.pop(trial.trial_id, {}), self.proxies, failure)
        write_row(self.out, number, row)
        self.done += 1
        what = row["error"] if row["state"] != "complete" else \
            f"val top-1 {row['val_top1']:.2%}, test top-1 {row['test_top1']:.2%}"
        self.console.print(f"[{time.time() - self.started:6.0f}s] {self.done}/{self.total} row {number} {row['state']}: "
                           f"{what}", highlight=False, soft_wrap=True)


def run_sweep(space: SearchSpace, out: Path, archs: int | None, seeds: int, resume: bool = False,
              address: str | None = None, proxies: bool = True, console: Console | None = None) -> Path:
    """Train every row still to train (archs None: every feasible spec); returns sweep.csv."""
    console = console or Console(stderr=True)
    candidates = enumerate_specs(space) if archs is None else sample_specs(space, archs, space.search.seed)
    with ray_session(space, out, resume, address) as space:
        scores = score_proxies(space, candidates, out, console) if proxies else {}
        configs = row_configs(candidates, seeds, space.train.seed)
        done = {n for n, row in read_rows(out).items() if row["state"] in FINISHED}
        todo = [c for c in configs if c["number"] not in done]
        console.print(f"sweep {space.name}: {len(candidates)} specs x {seeds} seeds; {len(configs) - len(todo)} "
                      f"rows finished, {len(todo)} to train in {out}", highlight=False, soft_wrap=True)
        if todo:
            ctrl_c = CtrlC()
            with ctrl_c.handling():
                _train(space, out, todo, [RowWriter(out, scores, console, len(todo)), ctrl_c])
                ctrl_c.raise_if_pressed()
    rows = list(read_rows(out).values())
    save_figure(plot_edf(rows, list(space.params)), out / EDF)
    return write_table(out, rows)


def _train(space: SearchSpace, out: Path, todo: list[dict], callbacks: list) -> None:
    attempt = len(list(out.glob("ray-sweep-*"))) + 1
    tuner = tune.Tuner(
        trial_trainable(space, out), param_space={"row": tune.grid_search(todo)},
        tune_config=tune.TuneConfig(max_concurrent_trials=space.search.max_concurrent_trials, reuse_actors=True,
                                    trial_dirname_creator=lambda trial: trial.config["row"]["number"]),
        run_config=tune.RunConfig(storage_path=str(out.resolve()), name=f"ray-sweep-{attempt}", verbose=0,
                                  callbacks=callbacks,
                                  failure_config=tune.FailureConfig(max_failures=space.search.max_retries)))
    tuner.fit()

