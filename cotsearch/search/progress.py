"""What a running search shows: on a terminal, a live bar per phase (the searched trials,
the reference presets) with the counts, the best so far, the elapsed time and an estimate
of the time left; elsewhere (CI, a log file), one plain line per event. Every trial's start,
epoch and end is an event, so neither form falls silent for longer than an epoch."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import optuna
from ray import tune
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cotsearch.search.records import open_study, records, write_trials_csv
from cotsearch.search.trial_types import TrialConfig, TrialResult, TrialState


def trial_name(trial) -> str:
    """A Ray trial's id: its number in the study, or confirm-N-sS / ref-NAME-sS."""
    return str(TrialConfig.from_ray(trial.config).id)


class SearchProgress(tune.Callback):
    """A Ray Tune callback that reports every trial event (see the module's docstring)."""

    def __init__(self, study: optuna.Study, run_dir: Path, console: Console):
        self.study, self.run_dir, self.console = study, run_dir, console
        self.started, self.running, self.phase = time.time(), 0, ""
        self.bar: Progress | None = None
        self.task = None

    def __getstate__(self) -> dict:
        # Ray pickles the Tuner's arguments; the console, the study's engine and the live bar stay here.
        return {k: v for k, v in self.__dict__.items() if k not in ("study", "console", "bar", "task")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.study, self.console, self.bar, self.task = open_study(self.run_dir), Console(stderr=True), None, None

    def start(self, phase: str, total: int, done: int = 0) -> SearchProgress:
        """Begin a phase (`with progress.start("trials", 16):`)."""
        self.phase, self.running, self.done, self.total = phase, 0, done, total
        if self.console.is_terminal:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=16), MofNCompleteColumn(),
                                TextColumn("{task.fields[counts]}"), TimeElapsedColumn(), TextColumn("left"),
                                TimeRemainingColumn(), console=self.console)
            self.task = self.bar.add_task(phase, total=total, completed=done, counts="")
        else:
            self.console.print(f"{phase}: {done} of {total} done", highlight=False)
        return self

    def __enter__(self) -> SearchProgress:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running += 1
        self.event(f"trial {trial_name(trial)} started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        result = TrialResult.of(result)
        if result.is_epoch:
            reading = "trained (not validated)" if result.val_top1 is None else f"val top-1 {result.val_top1:.2%}"
            self.event(f"trial {trial_name(trial)} epoch {result.epoch}: {reading}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.running -= 1
        last = TrialResult.of(trial.last_result)
        if last.outcome == TrialState.FAILED:
            what = f"failed: {last.error}"
        elif last.outcome == TrialState.INFEASIBLE:
            what = f"infeasible: {last.reason}"
        else:
            what = f"val top-1 {last.val_top1 or 0:.2%} after {last.epoch} epochs"
        self.finished(f"trial {trial_name(trial)} {what}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.running -= 1
        self.finished(f"trial {trial_name(trial)} failed (its worker raised or died)")

    def finished(self, text: str) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        self.event(text, trials_csv=True)

    def event(self, text: str, trials_csv: bool = False) -> None:
        """Show an event with the counts and the best so far, from one read of the study."""
        rows = records(self.study)
        if trials_csv:
            write_trials_csv(rows, self.run_dir / "trials.csv")
        count = Counter(r.state for r in rows)
        best = max((r for r in rows if r.trained and r.val_top1 is not None), key=lambda r: r.val_top1, default=None)
        best_text = f"best {best.val_top1:.1%} (#{best.trial})" if best else "best -"
        counts = (f"{self.running} running, {count[TrialState.STOPPED]} stopped early, {count[TrialState.FAILED]} failed, "
                  f"{count[TrialState.INFEASIBLE]} infeasible, {best_text}")
        if self.bar is not None:
            self.bar.update(self.task, counts=counts)
            self.bar.console.print(text, highlight=False, soft_wrap=True)
        else:
            self.console.print(f"[{time.time() - self.started:6.0f}s] {self.phase}: {text} | done {self.done}/{self.total}"
                               f", {counts}", highlight=False, soft_wrap=True)
