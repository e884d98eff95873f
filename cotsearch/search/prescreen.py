"""Zero-cost pre-screening (`search.prescreen` in a space file): before the search, draw a
pool of random feasible samples and score each distinct spec with a proxy; during it, train
only samples that score at least as well as the pool's best `keep` fraction. The others are
told to the sampler as infeasible, at the cost of scoring them (a second or so), never of
training them. Also the random feasible samples of a space, which `cotsearch sweep` draws."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import optuna

from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.analytic import CostReport
from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_text
from cotsearch.search.space import SearchSpace, price

SCORES_FILE = "prescreen.json"


@dataclass
class Candidate:
    sampled: dict  # Optuna's encoded values, as a search records them
    spec: BackboneSpec
    cost: CostReport


def feasible(space: SearchSpace, sampled: dict) -> Candidate | None:
    """The priced candidate of a sample, or None if it is invalid or over a budget."""
    priced = price(space, sampled)
    return None if priced.reason else Candidate(sampled, priced.spec, priced.cost)


def random_candidates(space: SearchSpace, seed: int) -> Iterator[Candidate | None]:
    """Endless random samples (each parameter uniform, Optuna's RandomSampler), priced:
    None for each infeasible one, so the caller decides when to give up."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    while True:
        trial = study.ask()
        candidate = feasible(space, space.sample(trial))
        study.tell(trial, 0.0)
        yield candidate


def cutoff(scores: list[float], keep: float) -> float:
    """The lowest score kept: that of the ceil(keep * n)-th best of n distinct specs' scores."""
    ranked = sorted(scores, reverse=True)
    return ranked[max(1, math.ceil(keep * len(ranked))) - 1]


class Screen:
    """A space's pre-screen: the pool's scores and cutoff, computed on first use and kept in
    the run directory, so a resumed search screens with the same cutoff."""

    def __init__(self, space: SearchSpace, run_dir: Path):
        self.space, self.settings, self.path = space, space.search.prescreen, Path(run_dir) / SCORES_FILE
        self.scores: dict[str, float] = {}
        self.threshold: float | None = None
        self.batch = None  # the proxies' mini-batch, loaded when first needed

    def __getstate__(self) -> dict:
        return {**self.__dict__, "batch": None}  # Ray pickles the searcher; the batch is loaded again

    def score(self, candidate: Candidate) -> float:
        key = candidate.spec.spec_hash()
        if key not in self.scores:
            proxy = self.settings.proxy
            if proxy in ("params", "macs"):
                self.scores[key] = float(getattr(candidate.cost, proxy))
            else:
                from cotsearch.search.proxies import score_spec

                self.scores[key] = score_spec(candidate.spec, *self._batch(), names=(proxy,),
                                              device=self.space.train.device)[0][proxy]
        return self.scores[key]

    def _batch(self):
        if self.batch is None:
            from cotsearch.data.load import load_data
            from cotsearch.search.proxies import proxy_batch

            recipe = self.space.train
            data = load_data(recipe.data, train_limit=recipe.train_limit, val_size=recipe.val_size,
                             input_size=recipe.input_size)
            self.batch = proxy_batch(data, recipe.batch_size)
        return self.batch

    def prepare(self, say: Callable[[str], None] = lambda line: None) -> None:
        """Score the pool (or read the scores saved with the same settings) and fix the cutoff,
        telling `say` what it does: a pool of 200 takes tens of seconds on a CPU."""
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        if saved.get("settings") == self.settings.model_dump():
            self.scores, self.threshold = saved["scores"], saved["threshold"]
            say(f"pre-screen: cutoff {self.settings.proxy} {self.threshold:.4g}, as saved in {self.path}")
            return
        pool: dict[str, Candidate] = {}
        draws = misses = 0
        for candidate in random_candidates(self.space, self.space.search.seed):
            if draws == self.settings.pool or misses == self.space.search.max_infeasible:
                break
            misses = 0 if candidate is not None else misses + 1
            if candidate is not None:
                draws += 1
                pool.setdefault(candidate.spec.spec_hash(), candidate)
        if not pool:
            raise CotsearchError(f"search.prescreen: no feasible sample in {misses} draws; loosen the budgets")
        started = time.time()
        say(f"pre-screen: scoring the {len(pool)} distinct specs of {draws} random feasible samples with "
            f"{self.settings.proxy}")
        scores = []
        for n, candidate in enumerate(pool.values(), 1):
            scores.append(self.score(candidate))
            if n % 50 == 0 and n < len(pool):
                say(f"pre-screen: {n}/{len(pool)} scored ({time.time() - started:.0f} s)")
        self.threshold = cutoff(scores, self.settings.keep)
        say(f"pre-screen: cutoff {self.settings.proxy} {self.threshold:.4g}: the best {self.settings.keep:.0%} of "
            f"the pool may train ({time.time() - started:.0f} s)")
        atomic_write_text(self.path, json.dumps({"settings": self.settings.model_dump(), "threshold": self.threshold,
                                                 "scores": self.scores}, indent=1))

    def reject(self, candidate: Candidate) -> str | None:
        """Why a feasible sample is not to be trained, or None if it passes."""
        if self.threshold is None:
            self.prepare()
        score = self.score(candidate)
        if score >= self.threshold:
            return None
        return (f"pre-screened: {self.settings.proxy} {score:.4g} is below {self.threshold:.4g}, the cutoff of "
                f"the pool's best {self.settings.keep:.0%}")
