"""The searcher: a Ray Tune `Searcher` over an Optuna study it owns, on public APIs only
(`study.ask` / `study.tell`, `Trial.set_constraint`, user attributes).

Every sample is priced analytically in `suggest`. One that breaks a budget, is not a valid
spec, or repeats a spec this run already trained is told to Optuna at once (the sampler
learns from it) and never reaches Ray: it costs milliseconds, not a worker. A feasible one
goes to Ray with its spec fixed here, once: the worker trains exactly that spec. Outcomes
(metrics, failures and their reasons, the node) are the Optuna trials' user attributes, so
the study in the run directory is the one record of the search, and a resumed search
continues it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState as OptunaState
from ray.tune.search import Searcher

from cotsearch.errors import CotsearchError
from cotsearch.search.prescreen import Candidate, Screen
from cotsearch.search.records import STUDY_NAME, TrialRecord, open_study, record_of, study_storage, worker_failure
from cotsearch.search.sampler import make_sampler
from cotsearch.search.space import SearchSpace, price
from cotsearch.search.trial_types import Price, TrialConfig, TrialResult, TrialState, search_trial

MAX_REPEATS = 50  # samples of specs this run already trained, in one suggest, after which the search ends

# What a trial's worker reports and the study keeps of it.
RESULT_ATTRS = ("val_top1", "val_images", "epoch", "latency_ms", "latency_shared", "node", "gpu_ids", "error", "duration_s",
                "val_s", "train_loss", "trial_started_at")


def objective_values(space: SearchSpace, val_top1: float, macs: float | None, params: float | None,
                     latency_ms: float | None = None) -> list[float]:
    """What a trial tells each objective. An infeasible sample tells top-1 0 (nothing learned)
    and its known costs, so multi-objective samplers still see where it lies; an unknown cost is
    the worst."""
    known = {"val_top1": val_top1, "macs": macs, "params": params, "latency_ms": latency_ms}
    return [float("inf") if known[m] is None else float(known[m]) for m in space.metric_names]


def search_study(space: SearchSpace, run_dir: Path) -> optuna.Study:
    """The run directory's study, created on a first run and loaded on a resumed one, with
    the space's sampler (seeded past the trials already asked, see make_sampler)."""
    storage = study_storage(run_dir)
    exists = STUDY_NAME in optuna.get_all_study_names(storage)
    asked = len(optuna.load_study(study_name=STUDY_NAME, storage=storage).trials) if exists else 0
    return optuna.create_study(storage=storage, study_name=STUDY_NAME, sampler=make_sampler(space, asked),
                               directions=[o.direction for o in space.objectives], load_if_exists=True)


class StudySearcher(Searcher):
    """Asks the study for samples, prices them, and tells it every outcome."""

    def __init__(self, space: SearchSpace, study: optuna.Study, run_dir: str):
        super().__init__(metric="val_top1", mode="max")
        self.space, self.study, self.run_dir = space, study, run_dir
        self.live: dict[str, tuple[optuna.Trial, TrialConfig]] = {}  # Ray trial id -> its Optuna trial, while it runs
        self.waiting: tuple[optuna.Trial, Price] | None = None
        self.screen = Screen(space, Path(run_dir)) if space.search.prescreen else None
        self.reported: dict[int, set[int]] = {}  # epochs already in each trial's learning curve

    def __getstate__(self) -> dict:
        # Ray pickles the Tuner's arguments; the study (an open database) is reopened by the driver.
        return {k: v for k, v in self.__dict__.items() if k not in ("study", "live", "waiting", "reported")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.study, self.live, self.waiting, self.reported = open_study(Path(self.run_dir)), {}, None, {}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the study in the run directory is the searcher's whole state."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a resumed search reopens the study (see search_study)."""

    def trained_specs(self) -> dict[str, TrialRecord]:
        """Spec hash -> the trial that trained it (complete or stopped by ASHA) in this run."""
        found = (record_of(t) for t in self.study.get_trials(deepcopy=False, states=(OptunaState.COMPLETE,)))
        return {r.spec_hash: r for r in found if r.trained and r.spec_hash is not None}

    def suggest(self, trial_id: str) -> dict | None:
        trained = self.trained_specs()
        running = {config.spec_hash for _, config in self.live.values()}
        repeats = 0
        for _ in range(self.space.search.max_infeasible):
            if self.waiting is not None:  # drawn while the same spec was training
                trial, priced = self.waiting
                if priced.spec.spec_hash() in running:
                    return None  # Ray asks again when a trial ends
                self.waiting = None
            else:
                trial, priced = self.sample()
                if priced.reason is not None:
                    self.tell_infeasible(trial, priced.reason, priced.cost and priced.cost.macs,
                                         priced.cost and priced.cost.params)
                    continue
            spec_hash = priced.spec.spec_hash()
            if spec_hash in trained:
                # The sampler asked for a network this run already trained: tell it that
                # result again rather than spend a worker on it.
                earlier = trained[spec_hash]
                trial.set_user_attr("state", TrialState.DUPLICATE)
                trial.set_user_attr("reason", f"same spec as trial {earlier.trial}")
                trial.set_user_attr("val_top1", earlier.val_top1)
                self.study.tell(trial, objective_values(self.space, earlier.val_top1 or 0.0, earlier.macs,
                                                        earlier.params, earlier.latency_ms))
                repeats += 1
                if repeats == MAX_REPEATS:
                    return Searcher.FINISHED  # the sampler finds only specs this run trained: the space is spent
                continue
            if spec_hash in running:
                self.waiting = (trial, priced)  # its result is known once that trial ends
                return None
            trial.set_user_attr("on_ray", True)
            config = TrialConfig(id=search_trial(trial.number), spec=priced.spec, cost=priced.cost)
            self.live[trial_id] = (trial, config)
            return config.ray_config()
        raise CotsearchError(f"{self.space.search.max_infeasible} samples in a row broke the budgets or were invalid; "
                             "loosen the budgets or widen the space")

    def sample(self) -> tuple[optuna.Trial, Price]:
        """A new trial from the sampler, priced, with its record and constraints set: its spec (the
        trial's one stored spec, which the worker is sent), and the hash and costs derived from it."""
        trial = self.study.ask()
        sampled = self.space.sample(trial)
        started = time.perf_counter()
        priced = price(self.space, sampled)
        attrs = {"sampled": json.dumps(sampled), "constraints": priced.constraints,
                 "price_ms": (time.perf_counter() - started) * 1e3, "started_at": time.time()}
        reason = priced.reason
        if reason is None and self.screen is not None:  # scored by a zero-cost proxy; trained only if it passes
            reason = self.screen.reject(Candidate(sampled, priced.spec, priced.cost))
            priced = priced._replace(reason=reason)
        if priced.spec is not None:
            attrs.update(spec_hash=priced.spec.spec_hash(), spec=priced.spec.model_dump_json(), params=priced.cost.params,
                         macs=priced.cost.macs, macs_conv=priced.cost.macs_conv)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for name, value in zip(self.space.budgets.names(), priced.constraints):
            if not (reason is None and name == "max_latency_ms"):  # measured on the trial's device
                trial.set_constraint(name, value)
        return trial, priced

    def tell_infeasible(self, trial: optuna.Trial, reason: str, macs: float | None, params: float | None,
                        latency_ms: float | None = None) -> None:
        trial.set_user_attr("state", TrialState.INFEASIBLE)
        trial.set_user_attr("reason", reason)
        self.study.tell(trial, objective_values(self.space, 0.0, macs, params, latency_ms))

    def drop_waiting(self) -> None:
        """At the end of the search: a sample still waiting for its twin is not needed."""
        if self.waiting is not None:
            trial = self.waiting[0]
            trial.set_user_attr("state", TrialState.DUPLICATE)
            trial.set_user_attr("reason", "drawn while the same spec trained; the search ended first")
            self.study.tell(trial, state=OptunaState.FAIL)
            self.waiting = None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.live:
            trial, config = self.live[trial_id]
            self.record_epoch(trial, TrialResult.of(result).checked(config))

    def record_epoch(self, trial: optuna.Trial, result: TrialResult) -> None:
        """An epoch's top-1 into the trial's record and learning curve (once per epoch: Ray
        does not pass the result on which a scheduler stops a trial to on_trial_result)."""
        if not result.is_epoch or result.val_top1 is None:
            return
        trial.set_user_attr("val_top1", result.val_top1)
        trial.set_user_attr("val_images", result.val_images)
        trial.set_user_attr("epoch", result.epoch)
        if len(self.space.objectives) == 1 and result.epoch not in self.reported.setdefault(trial.number, set()):
            trial.report(result.val_top1, result.epoch)  # Optuna keeps curves for one objective only
            self.reported[trial.number].add(result.epoch)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.live:
            return
        trial, config = self.live.pop(trial_id)
        outcome = TrialResult.of(result).checked(config)
        if error and outcome.outcome is None:  # the worker died without reporting how it ended
            outcome = outcome.model_copy(update={"outcome": TrialState.FAILED,
                                                 "error": worker_failure(self.run_dir, config.id)})
        for key in RESULT_ATTRS:
            if getattr(outcome, key) is not None:
                trial.set_user_attr(key, getattr(outcome, key))
        if outcome.outcome == TrialState.FAILED:
            trial.set_user_attr("state", TrialState.FAILED)
            trial.set_user_attr("reason", outcome.error)
            self.study.tell(trial, state=OptunaState.FAIL)
            return
        budget = self.space.budgets.max_latency_ms
        if outcome.latency_ms is not None and budget is not None:
            trial.set_constraint("max_latency_ms", outcome.latency_ms / budget - 1.0)
        if outcome.outcome == TrialState.INFEASIBLE:
            self.tell_infeasible(trial, outcome.reason, config.cost.macs, config.cost.params, outcome.latency_ms)
            return
        self.record_epoch(trial, outcome)
        complete = (outcome.epoch or 0) >= self.space.train.epochs
        trial.set_user_attr("state", TrialState.COMPLETE if complete else TrialState.STOPPED)
        top1 = outcome.val_top1 if outcome.val_top1 is not None else trial.user_attrs.get("val_top1", 0.0)
        self.study.tell(trial, objective_values(self.space, top1, config.cost.macs, config.cost.params,
                                                outcome.latency_ms))


def fail_interrupted(study: optuna.Study) -> int:
    """Trials left running by a stopped driver: told failed (their records read
    "interrupted", see records.py), not counted, and queued to be asked again with the same
    parameters, so a resumed search re-runs each of them first."""
    running = study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=OptunaState.FAIL)
        # a rerun that was asked but not yet on Ray when the driver stopped is queued again too,
        # or the trial it reruns would never run
        if trial.user_attrs.get("on_ray") or "rerun_of" in trial.user_attrs:
            study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
    return len(running)
