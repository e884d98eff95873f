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
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.analytic import CostReport
from cotsearch.errors import CotsearchError
from cotsearch.search.prescreen import Candidate, Screen
from cotsearch.search.records import STUDY_NAME, TRAINED_STATES, open_study, study_storage, worker_failure
from cotsearch.search.sampler import make_sampler
from cotsearch.search.space import SearchSpace, price

MAX_REPEATS = 50  # samples of specs this run already trained, in one suggest, after which the search ends

# What a trial's worker reports and the study keeps of it.
RESULT_ATTRS = ("val_top1", "val_images", "epoch", "latency_ms", "latency_shared", "node", "gpu_ids", "error", "duration_s",
                "val_s", "train_loss", "trial_started_at")


def worst_values(space: SearchSpace, macs: float | None, params: float | None,
                 latency_ms: float | None = None) -> list[float]:
    """What an infeasible sample tells each objective: nothing learned (top-1 0) and its
    known costs, so multi-objective samplers still see where it lies."""
    known = {"val_top1": 0.0, "macs": macs, "params": params, "latency_ms": latency_ms}
    return [float("inf") if known[m] is None else known[m] for m in space.metric_names]


def result_values(space: SearchSpace, attrs: dict) -> list[float]:
    """A trained trial's objective values, from its record."""
    known = {"val_top1": attrs.get("val_top1", 0.0), "macs": attrs.get("macs"), "params": attrs.get("params_count"),
             "latency_ms": attrs.get("latency_ms")}
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
        self.live: dict[str, optuna.Trial] = {}  # Ray trial id -> its Optuna trial, while it runs
        self.waiting: tuple[optuna.Trial, BackboneSpec, CostReport] | None = None
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

    def trained_specs(self) -> dict[str, optuna.trial.FrozenTrial]:
        """Spec hash -> the trial that trained it (complete or stopped by ASHA) in this run."""
        return {t.user_attrs["spec_hash"]: t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("state") in TRAINED_STATES and "spec_hash" in t.user_attrs}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        trained = self.trained_specs()
        running = {t.user_attrs["spec_hash"] for t in self.live.values()}
        repeats = 0
        for _ in range(self.space.search.max_infeasible):
            if self.waiting is not None:  # drawn while the same spec was training
                trial, spec, cost = self.waiting
                if spec.spec_hash() in running:
                    return None  # Ray asks again when a trial ends
                self.waiting = None
            else:
                trial, spec, cost, reason = self.sample()
                if reason is not None:
                    trial.set_user_attr("state", "infeasible")
                    trial.set_user_attr("reason", reason)
                    self.study.tell(trial, worst_values(self.space, cost and cost.macs, cost and cost.params))
                    continue
            if spec.spec_hash() in trained:
                # The sampler asked for a network this run already trained: tell it that
                # result again rather than spend a worker on it.
                earlier = trained[spec.spec_hash()]
                trial.set_user_attr("state", "duplicate")
                trial.set_user_attr("reason", f"same spec as trial {earlier.number}")
                trial.set_user_attr("val_top1", earlier.user_attrs.get("val_top1"))
                self.study.tell(trial, result_values(self.space, earlier.user_attrs))
                repeats += 1
                if repeats == MAX_REPEATS:
                    return Searcher.FINISHED  # the sampler finds only specs this run trained: the space is spent
                continue
            if spec.spec_hash() in running:
                self.waiting = (trial, spec, cost)  # its result is known once that trial ends
                return None
            trial.set_user_attr("on_ray", True)
            self.live[trial_id] = trial
            return {"number": trial.number, "spec": spec.model_dump_json(), "cost": cost.to_dict()}
        raise CotsearchError(f"{self.space.search.max_infeasible} samples in a row broke the budgets or were invalid; "
                             "loosen the budgets or widen the space")

    def sample(self) -> tuple[optuna.Trial, BackboneSpec | None, CostReport | None, str | None]:
        """A new trial from the sampler, priced, with its record and constraints set."""
        trial = self.study.ask()
        sampled = self.space.sample(trial)
        started = time.perf_counter()
        spec, cost, constraints, reason = price(self.space, sampled)
        attrs = {"sampled": json.dumps(sampled), "constraints": constraints,
                 "price_ms": (time.perf_counter() - started) * 1e3, "started_at": time.time()}
        if reason is None and self.screen is not None:  # scored by a zero-cost proxy; trained only if it passes
            reason = self.screen.reject(Candidate(sampled, spec, cost))
        if spec is not None:
            attrs.update(spec_hash=spec.spec_hash(), spec=spec.model_dump_json(), params_count=cost.params,
                         macs=cost.macs, macs_conv=cost.macs_conv)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for name, value in zip(self.space.budgets.names(), constraints):
            if not (reason is None and name == "max_latency_ms"):  # measured on the trial's device
                trial.set_constraint(name, value)
        return trial, spec, cost, reason

    def drop_waiting(self) -> None:
        """At the end of the search: a sample still waiting for its twin is not needed."""
        if self.waiting is not None:
            trial = self.waiting[0]
            trial.set_user_attr("state", "duplicate")
            trial.set_user_attr("reason", "drawn while the same spec trained; the search ended first")
            self.study.tell(trial, state=TrialState.FAIL)
            self.waiting = None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.live.get(trial_id)
        if trial is not None:
            self.record_epoch(trial, result)

    def record_epoch(self, trial: optuna.Trial, result: dict) -> None:
        """An epoch's top-1 into the trial's record and learning curve (once per epoch: Ray
        does not pass the result on which a scheduler stops a trial to on_trial_result)."""
        if "val_top1" not in result or result.get("failed") or result.get("infeasible"):
            return
        trial.set_user_attr("val_top1", result["val_top1"])
        trial.set_user_attr("val_images", result.get("val_images"))
        trial.set_user_attr("epoch", result.get("epoch"))
        if len(self.space.objectives) == 1 and result.get("epoch") not in self.reported.setdefault(trial.number, set()):
            trial.report(result["val_top1"], result["epoch"])  # Optuna keeps curves for one objective only
            self.reported[trial.number].add(result["epoch"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.live.pop(trial_id, None)
        if trial is None:
            return
        result = result or {}
        for key in RESULT_ATTRS:
            if key in result:
                trial.set_user_attr(key, result[key])
        if error or result.get("failed"):
            reason = result.get("error") or worker_failure(self.run_dir, trial.number)
            trial.set_user_attr("state", "failed")
            trial.set_user_attr("reason", reason)
            self.study.tell(trial, state=TrialState.FAIL)
            return
        budget = self.space.budgets.max_latency_ms
        if "latency_ms" in result and budget is not None:
            trial.set_constraint("max_latency_ms", result["latency_ms"] / budget - 1.0)
        if result.get("infeasible"):
            trial.set_user_attr("state", "infeasible")
            trial.set_user_attr("reason", result["reason"])
            self.study.tell(trial, worst_values(self.space, result["macs"], result["params"], result.get("latency_ms")))
            return
        self.record_epoch(trial, result)
        complete = result.get("epoch", 0) >= self.space.train.epochs
        trial.set_user_attr("state", "complete" if complete else "stopped")
        self.study.tell(trial, result_values(self.space, {**trial.user_attrs, **result}))


def fail_interrupted(study: optuna.Study) -> int:
    """Trials left running by a stopped driver: told failed (their records read
    "interrupted", see records.py), not counted, and queued to be asked again with the same
    parameters, so a resumed search re-runs each of them first."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=TrialState.FAIL)
        # a rerun that was asked but not yet on Ray when the driver stopped is queued again too,
        # or the trial it reruns would never run
        if trial.user_attrs.get("on_ray") or "rerun_of" in trial.user_attrs:
            study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
    return len(running)


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards --trials: those Ray ran to an end (trained, stopped early,
    failed, or found over the latency budget on their device); not interrupted ones, nor
    samples rejected by pricing, nor duplicates."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("on_ray") and t.user_attrs.get("state") in ("complete", "stopped", "failed", "infeasible"))
