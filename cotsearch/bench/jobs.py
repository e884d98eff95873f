"""The simulated searches of `cotsearch analyze` as independent jobs. Each strategy at each
budget and reading is seeded by its run numbers alone (cotsearch.bench.simulate), so the jobs
give the same numbers in any order and in any number of processes. Optuna's samplers are
pure Python and hold the GIL, so only processes run them side by side; the standard library's
pool does, each worker given the tables once, at its start."""

from __future__ import annotations

import multiprocessing
import signal
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import optuna

from cotsearch.bench.pareto import FrontOutcome, simulate_fronts
from cotsearch.bench.simulate import ConfirmedRun, simulate, simulate_confirmed
from cotsearch.bench.table import Bench
from cotsearch.search.space import Confirm, Prescreen, SearchSpace


@dataclass(frozen=True)
class Simulation:
    """One job: `runs` simulated searches of one strategy at one budget, reading one column."""

    kind: str  # "search" (simulate), "confirmed" (simulate_confirmed) or "front" (simulate_fronts, two objectives)
    strategy: str  # random, tpe or nsga2
    budget: int
    reading: str
    proxy: str | None = None  # the pre-screening proxy of a "search", if any

    def __str__(self) -> str:
        name = {"search": self.strategy, "confirmed": f"{self.strategy} + confirmation",
                "front": f"{self.strategy}, two objectives"}[self.kind]
        screened = f", pre-screened by {self.proxy}" if self.proxy else ""
        return f"{name}{screened}, {self.budget} trainings, reading {self.reading}"


@dataclass
class Tables:
    """What every job reads: the tables, the space and the settings all jobs share."""

    bench: Bench
    space: SearchSpace
    runs: int
    confirm: Confirm | None  # None where no job is "confirmed"
    references: dict[str, int]  # the space's reference presets: label -> table index
    pool: int  # pre-screening's draws
    keep: float  # pre-screening's admitted fraction


def run(tables: Tables, job: Simulation) -> np.ndarray | list[ConfirmedRun] | FrontOutcome:
    """One job's result: the chosen specs per run ("search"), the confirmed runs
    ("confirmed"), or the fronts found ("front")."""
    t = tables
    if job.kind == "search":
        screen = Prescreen(proxy=job.proxy, pool=t.pool, keep=t.keep) if job.proxy else None
        return simulate(t.bench, t.space, job.strategy, job.budget, t.runs, screen, job.reading)
    if job.kind == "confirmed":
        return simulate_confirmed(t.bench, t.space, job.strategy, job.budget, t.runs, t.confirm, t.references,
                                  job.reading)
    return simulate_fronts(t.bench, t.space, job.strategy, job.budget, t.runs, job.reading)


_tables: Tables | None = None  # a worker process's, from its start


def _start_worker(tables: Tables) -> None:
    global _tables
    _tables = tables
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the pool
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per simulated trial


def _run_in_worker(job: Simulation) -> tuple[Simulation, np.ndarray | list[ConfirmedRun] | FrontOutcome]:
    return job, run(_tables, job)


def run_all(tables: Tables, jobs: list[Simulation], processes: int = 1,
            done: Callable[[Simulation], None] | None = None) -> dict[Simulation, object]:
    """Every job's result; `done` is called as each ends. In this process when `processes` is
    1; else in that many fresh (spawned) processes, the costliest jobs (largest budget) first."""
    results = {}
    for job, result in _results(tables, jobs, processes):
        results[job] = result
        if done is not None:
            done(job)
    return results


def _results(tables: Tables, jobs: list[Simulation], processes: int) -> Iterator[tuple[Simulation, object]]:
    if processes <= 1:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            for job in jobs:
                yield job, run(tables, job)
        finally:
            optuna.logging.set_verbosity(verbosity)
        return
    costliest_first = sorted(jobs, key=lambda job: (-job.budget, job.strategy == "random"))
    # Spawned, not forked: a fork of a process that has run torch or other threads can hang.
    # Leaving the block (at the end, or on Ctrl-C or an error) terminates the workers.
    with multiprocessing.get_context("spawn").Pool(processes, _start_worker, (tables,)) as pool:
        yield from pool.imap_unordered(_run_in_worker, costliest_first)
