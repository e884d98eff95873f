"""The confirmation phase of a search: its runs (cotsearch.search.confirm) trained as Ray Tune
trials, each recorded in confirm.json as it ends."""

from __future__ import annotations

from pathlib import Path

from ray import tune

from cotsearch.process.ctrl_c import CtrlC
from cotsearch.search.confirm import planned_runs, read_runs, run_record, write_runs
from cotsearch.search.progress import SearchProgress
from cotsearch.search.records import TrialRecord, worker_failure
from cotsearch.search.scaled_presets import described
from cotsearch.search.session import grid_tuner
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialConfig, TrialKind, TrialResult


def run_confirmation(space: SearchSpace, run_dir: Path, rows: list[TrialRecord], progress: SearchProgress,
                     ctrl_c: CtrlC) -> list[dict]:
    """Train the confirmation's runs still to train (those of its plan for these trials' records)."""
    runs = read_runs(run_dir)
    done = {r["number"] for r in runs if not r.get("error")}  # a run that failed is tried again
    todo = [c for c in planned_runs(space, rows) if str(c.id) not in done]
    if not todo:
        return runs
    seeds = space.search.reference_seeds(space.train.seed)
    confirmed = sorted({c.id.key for c in todo if c.id.kind == TrialKind.CONFIRM})
    what = ([f"the top {len(confirmed)} trials ({', '.join(map(str, confirmed))})"] if confirmed else []) + \
        ([f"the references {', '.join(described(space, name) for name in space.search.references)}"]
         if space.search.references else [])
    progress.console.print(f"confirming: training {' and '.join(what)} with seeds {', '.join(map(str, seeds))} "
                           "(same recipe)", soft_wrap=True)
    tuner = grid_tuner(space, run_dir, todo, "ray-confirm", [progress, ctrl_c, RunRecorder(run_dir)])
    with progress.start("confirmation", len(todo)):
        tuner.fit()
    return read_runs(run_dir)


class RunRecorder(tune.Callback):
    """Writes each confirmation run to confirm.json as it ends, so that a stopped search keeps
    the runs that finished."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir

    def on_trial_complete(self, iteration, trials, trial, **info):
        config = TrialConfig.from_ray(trial.config)
        self.record(config, TrialResult.of(trial.last_result).checked(config))

    def on_trial_error(self, iteration, trials, trial, **info):
        config = TrialConfig.from_ray(trial.config)
        self.record(config, TrialResult(error=worker_failure(self.run_dir, config.id)))

    def record(self, config: TrialConfig, result: TrialResult) -> None:
        number = str(config.id)  # its record replaces an earlier, failed one
        write_runs(self.run_dir, [*(r for r in read_runs(self.run_dir) if r["number"] != number),
                                  run_record(config, result)])
