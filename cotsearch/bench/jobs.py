"""The simulated searches of `cotsearch analyze` as independent jobs. Each strategy at each
budget and reading is seeded by its run numbers alone (cotsearch.bench.simulate), so the jobs
give the same numbers in any order and in any number of processes. Optuna's samplers are
pure Python and hold the GIL, so only processes run them side by side; the standard library's
pool does, each worker given the tables once, at its start."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal

import optuna

from cotsearch.bench.pareto import FrontOutcome, simulate_fronts
from cotsearch.bench.simulate import ConfirmedRun, Searches, run_searches, simulate_confirmed
from cotsearch.bench.table import Bench
from cotsearch.search.space import Confirm, Prescreen, SearchSpace


@dataclass(frozen=True)
class Simulation:
    """One job: `runs` simulated searches of one strategy at one budget, reading one column."""

    kind: Literal["search", "confirmed", "front"]  # simulate, simulate_confirmed, simulate_fronts (two objectives)
    strategy: str  # random, tpe or nsga2
    budget: int
    reading: str
    proxy: str | None = None  # the pre-screening proxy of a "search" or "confirmed", if any

    @property
    def label(self) -> str:
        """The strategy, as analysis.md names it: 'tpe + confirmation', 'tpe, pre-screened by naswot',
        'tpe, pre-screened by naswot + confirmation'."""
        if self.kind == "front":
            return f"{self.strategy}, two objectives"
        if self.kind == "confirmed":
            return f"{self.searched_alone.label} + confirmation"
        return f"{self.strategy}, pre-screened by {self.proxy}" if self.proxy else self.strategy

    @property
    def searched_alone(self) -> Simulation:
        """The search without confirmation whose runs share this one's draws."""
        return Simulation("search", self.strategy, self.budget, self.reading, self.proxy)

    def __str__(self) -> str:
        return f"{self.label}, {self.budget} trainings, reading {self.reading}"


@dataclass
class JobInputs:
    """What every job reads: the tables, the space and the settings all jobs share."""

    bench: Bench
    space: SearchSpace
    runs: int
    confirm: Confirm  # what a "confirmed" job simulates
    references: dict[str, int]  # the space's reference presets: label -> table index
    pool: int  # pre-screening's draws (but for the space's own proxy: its search.prescreen's)
    keep: float  # pre-screening's admitted fraction (likewise)

    def screen(self, proxy: str | None) -> Prescreen | None:
        """The pre-screen by `proxy`: the space's own where it is the space's proxy, else with `pool` and `keep`."""
        own = self.space.search.prescreen
        if proxy is None or (own and own.proxy == proxy):
            return own if proxy else None
        return Prescreen(proxy=proxy, pool=self.pool, keep=self.keep)


def run(inputs: JobInputs, job: Simulation) -> Searches | list[ConfirmedRun] | FrontOutcome:
    """One job's result: the searches' chosen specs and trainings ("search"), the confirmed runs
    ("confirmed"), or the fronts found ("front")."""
    i = inputs
    screen = i.screen(job.proxy)
    if job.kind == "search":
        return run_searches(i.bench, i.space, job.strategy, job.budget, i.runs, screen, job.reading)
    if job.kind == "confirmed":
        return simulate_confirmed(i.bench, i.space, job.strategy, job.budget, i.runs, i.confirm, i.references,
                                  job.reading, screen)
    if job.kind == "front":
        return simulate_fronts(i.bench, i.space, job.strategy, job.budget, i.runs, job.reading)
    raise ValueError(f"unknown kind of simulation: {job.kind!r}")


Progress = Callable[[int, int, Simulation | None], None]  # (jobs done, jobs in all, the job that just ended)


def run_all(inputs: JobInputs, jobs: list[Simulation], processes: int = 1,
            progress: Progress | None = None) -> dict[Simulation, object]:
    """Every job's result. In this process when `processes` is 1 (or there is one job); else
    in up to that many fresh (spawned) processes, the costliest jobs (largest budget) first.
    `progress(0, total, None)` before the first job, `progress(done, total, job)` as each ends."""
    report = progress or (lambda done, total, job: None)
    report(0, len(jobs), None)
    results = {}
    for job, result in _results(inputs, jobs, min(processes, len(jobs))):
        results[job] = result
        report(len(results), len(jobs), job)
    return results


def _results(inputs: JobInputs, jobs: list[Simulation], processes: int) -> Iterator[tuple[Simulation, object]]:
    if processes <= 1:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per simulated trial
        try:
            for job in jobs:
                yield job, run(inputs, job)
        finally:
            optuna.logging.set_verbosity(verbosity)
        return
    costliest_first = sorted(jobs, key=lambda job: (-job.budget, job.strategy == "random"))
    # Spawned, not forked: a fork of a process that has run torch or other threads can hang.
    # Leaving the block (at the end, on Ctrl-C, SIGTERM or an error) terminates the workers.
    with _workers_deaf_to_ctrl_c():
        pool = multiprocessing.get_context("spawn").Pool(processes, _start_worker, (inputs,))
    with pool:
        yield from pool.imap_unordered(_run_in_worker, costliest_first)


@contextmanager
def _workers_deaf_to_ctrl_c() -> Iterator[None]:
    """Ctrl-C reaches every process of the terminal's group. The parent handles it (it ends
    the pool); a worker must not, not even while its interpreter starts (a traceback from
    there). An ignored signal is the one setting a spawned process inherits (its handlers and
    its signal mask are reset), so the parent ignores SIGINT for the moment it starts them: a
    Ctrl-C in that moment (about 0.1 s for two workers here) is lost: the next one stops the
    analysis. Main thread only, as Python's `signal` is; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_DFL if handler is None else handler)


_inputs: JobInputs | None = None  # a worker process's, from its start


def _start_worker(inputs: JobInputs) -> None:
    global _inputs
    _inputs = inputs
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per simulated trial
    threading.Thread(target=_exit_with_parent, daemon=True).start()


def _exit_with_parent() -> None:
    """A parent that ends at once (SIGKILL, or a second stop signal) cannot end its pool: the
    worker ends itself when its parent is gone, instead of running its job on, orphaned."""
    multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])
    os._exit(1)


def _run_in_worker(job: Simulation) -> tuple[Simulation, Searches | list[ConfirmedRun] | FrontOutcome]:
    return job, run(_inputs, job)
