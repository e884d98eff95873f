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
    make_row,
    plot_edf,
    read_rows,
    row_configs,
    score_proxies,
    sweep_candidates,
    write_row,
    write_table,
)
from cotsearch.files import save_figure
from cotsearch.process.ctrl_c import CtrlC
from cotsearch.search.records import worker_failure
from cotsearch.search.scaled_presets import ScaledPreset
from cotsearch.search.session import grid_tuner, ray_session
from cotsearch.search.space import SearchSpace
from cotsearch.search.trial_types import TrialConfig, TrialResult, TrialState


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
        result = TrialResult.of(result)
        if result.is_epoch and result.val_top1 is not None:
            self.curves.setdefault(trial.trial_id, {})[result.epoch] = result.val_top1

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.on_trial_result(iteration, trials, trial, trial.last_result or {})
        self.write(trial, TrialResult.of(trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.write(trial, TrialResult(outcome=TrialState.FAILED))

    def write(self, trial, last: TrialResult) -> None:
        config = TrialConfig.from_ray(trial.config)
        last = last.checked(config)
        failure = None
        if last.outcome == TrialState.FAILED and not last.error:  # the worker died without reporting
            failure = worker_failure(self.out, config.id)
        row = make_row(config, last, self.curves.pop(trial.trial_id, {}), self.proxies, failure)
        write_row(self.out, str(config.id), row)
        self.done += 1
        what = row["error"] if row["state"] != TrialState.COMPLETE else \
            f"val top-1 {row['val_top1']:.2%}, test top-1 {row['test_top1']:.2%}"
        self.console.print(f"[{time.time() - self.started:6.0f}s] {self.done}/{self.total} row {config.id} {row['state']}: "
                           f"{what}", highlight=False, soft_wrap=True)


def run_sweep(space: SearchSpace, out: Path, archs: int | None, seeds: int, resume: bool = False,
              address: str | None = None, proxies: bool = True, console: Console | None = None,
              scaled_presets: list[str] | None = None) -> Path | None:
    """Train every row still to train (archs None: every feasible spec), and each of
    `scaled_presets` scaled to the space's budget (cotsearch.search.scaled_presets) with the
    same seeds; returns sweep.csv (None for a sweep of no rows). Stopped, it writes sweep.csv of
    the rows finished so far, then stops."""
    console = console or Console(stderr=True)
    candidates, named, scaled = sweep_candidates(space, archs, scaled_presets)
    try:
        with ray_session(space, out, resume, address) as session_space:
            scores = score_proxies(session_space, candidates, out, console) if proxies else {}
            configs = row_configs(candidates, seeds, session_space.train.seed, named)
            done = {n for n, row in read_rows(out).items() if row["state"] in FINISHED}
            todo = [c for c in configs if str(c.id) not in done]
            console.print(f"sweep {space.name}: {len(candidates)} specs x {seeds} seeds{_scaled_text(scaled)}; "
                          f"{len(configs) - len(todo)} rows finished, {len(todo)} to train in {out}",
                          highlight=False, soft_wrap=True)
            if todo:
                ctrl_c = CtrlC()
                with ctrl_c.handling():
                    _train(session_space, out, todo, [RowWriter(out, scores, console, len(todo)), ctrl_c])
                    ctrl_c.raise_if_pressed()
    except KeyboardInterrupt:  # stopped: the rows finished so far can be read before the rest are trained
        write_tables(space, out)
        raise
    return write_tables(space, out)


def write_tables(space: SearchSpace, out: Path) -> Path | None:
    """sweep.csv and edf.png of every row in `out` so far; None (nothing written) without rows."""
    rows = list(read_rows(out).values())
    if not rows:
        return None
    save_figure(plot_edf(rows, list(space.params)), out / EDF)
    return write_table(out, rows)


def _scaled_text(scaled: list[ScaledPreset]) -> str:
    """The scaled presets a sweep trains beside the space's specs, for its first line."""
    return "".join(f", and {s.label} ({s.cost.macs / 1e6:.2f} M MACs)" for s in scaled)


def _train(space: SearchSpace, out: Path, todo: list[TrialConfig], callbacks: list) -> None:
    attempt = len(list(out.glob("ray-sweep-*"))) + 1
    grid_tuner(space, out, todo, f"ray-sweep-{attempt}", callbacks).fit()
