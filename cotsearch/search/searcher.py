"""Ray Tune's OptunaSearch, with budgets checked before a trial exists.

Every sample is priced analytically in `suggest`. One that breaks a budget (or is not a
valid spec) is told to Optuna at once, as a finished trial with its constraint values, so
the sampler learns to avoid that region; Ray never sees it, so it costs milliseconds, not a
worker. Trial outcomes (metrics, failures and their reasons, the node) are kept as the
Optuna trials' user attributes, so the study in the run directory is the one record of the
search, and a resumed search continues it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from cotsearch.errors import CotsearchError
from cotsearch.search.records import STUDY_NAME, trial_dir
from cotsearch.search.space import SearchSpace, price


def make_sampler(space: SearchSpace) -> optuna.samplers.BaseSampler:
    """Seeded; TPE and NSGA-II read the budgets from each trial's constraints (set_constraint)."""
    name = space.search.sampler or ("tpe" if len(space.objectives) == 1 else "nsga2")
    seed = space.search.seed
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, space.search.trials))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, space.search.trials // 2)))
    return optuna.samplers.RandomSampler(seed=seed)


def set_constraints(trial: optuna.Trial, space: SearchSpace, values: list[float], skip_latency: bool) -> None:
    """Each budget as an Optuna constraint (<= 0 within budget); the latency one only once
    it is measured, on the trial's device."""
    for name, value in zip(space.budgets.names(), values):
        if not (skip_latency and name == "max_latency_ms"):
            trial.set_constraint(name, value)


def worst_values(space: SearchSpace, macs: float | None, params: float | None,
                 latency_ms: float | None = None) -> list[float]:
    """What an infeasible sample tells each objective: nothing learned (top-1 0) and its
    known costs, so multi-objective samplers still see where it lies."""
    known = {"val_top1": 0.0, "macs": macs, "params": params, "latency_ms": latency_ms}
    return [float("inf") if known[m] is None else known[m] for m in space.metric_names]


class BudgetedOptunaSearch(OptunaSearch):
    def __init__(self, space: SearchSpace, storage: optuna.storages.BaseStorage, run_dir: str):
        self.space, self.run_dir = space, run_dir
        metrics, modes = space.metric_names, space.modes
        super().__init__(
            space=self._define_by_run,
            metric=metrics if len(metrics) > 1 else metrics[0],
            mode=modes if len(modes) > 1 else modes[0],
            sampler=make_sampler(space),
            storage=storage,
            study_name=STUDY_NAME,
        )

    def _define_by_run(self, trial) -> None:
        self.space.sample(trial)

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        for _ in range(self.space.search.max_infeasible):
            sampled = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            started = time.perf_counter()
            spec, cost, constraints, reason = price(self.space, sampled)
            attrs = {"sampled": json.dumps(sampled), "constraints": constraints,
                     "price_ms": (time.perf_counter() - started) * 1e3,
                     "started_at": time.time()}
            if spec is not None:
                attrs.update(spec_hash=spec.spec_hash(), spec=spec.model_dump_json(), params_count=cost.params,
                             macs=cost.macs, macs_conv=cost.macs_conv)
            for key, value in attrs.items():
                ot_trial.set_user_attr(key, value)
            set_constraints(ot_trial, self.space, constraints, skip_latency=reason is None)
            if reason is None:
                ot_trial.set_user_attr("on_ray", True)
                return {"sampled": sampled, "number": ot_trial.number}
            ot_trial.set_user_attr("state", "infeasible")
            ot_trial.set_user_attr("reason", reason)
            self._ot_study.tell(ot_trial, worst_values(self.space, cost and cost.macs, cost and cost.params))
            del self._ot_trials[trial_id]
        raise CotsearchError(f"{self.space.search.max_infeasible} samples in a row broke the budgets or were invalid; "
                             "loosen the budgets or narrow the space")

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not result.get("failed") and not result.get("infeasible"):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            return
        result = result or {}
        for key in ("val_top1", "epoch", "latency_ms", "node", "gpu_ids", "error", "duration_s", "train_loss",
                    "trial_started_at"):
            if key in result:
                ot_trial.set_user_attr(key, result[key])
        if error or result.get("failed"):
            # A worker that died without reporting may have left its reason (a timeout) on disk.
            note = trial_dir(self.run_dir, ot_trial.number) / "failure.txt"
            reason = result.get("error") or (note.read_text().strip() if note.exists() else
                                             "the trial's worker raised or died (see Ray's log)")
            ot_trial.set_user_attr("state", "failed")
            ot_trial.set_user_attr("reason", reason)
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return
        if "latency_ms" in result and self.space.budgets.max_latency_ms is not None:
            ot_trial.set_constraint("max_latency_ms", result["latency_ms"] / self.space.budgets.max_latency_ms - 1.0)
        if result.get("infeasible"):
            ot_trial.set_user_attr("state", "infeasible")
            ot_trial.set_user_attr("reason", result["reason"])
            ot_trial.set_user_attr("constraints", result["constraints"])
            values = worst_values(self.space, result["macs"], result["params"], result.get("latency_ms"))
            self._ot_study.tell(ot_trial, values)
            self._completed_trials.add(trial_id)
            return
        complete = result.get("epoch", 0) >= self.space.train.epochs
        ot_trial.set_user_attr("state", "complete" if complete else "stopped")
        super().on_trial_complete(trial_id, result, error)


def mark_interrupted(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed driver: fail them (they will be run again, not
    counted) and say so in their record."""
    count = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        study._storage.set_trial_user_attr(trial._trial_id, "state", "interrupted")
        study._storage.set_trial_user_attr(trial._trial_id, "reason", "the search was stopped while it ran")
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        count += 1
    return count


def finished_trials(study: optuna.Study) -> int:
    """Trials that count towards --trials: those Ray ran to an end (trained, stopped early,
    failed, or found over the latency budget on their device); not interrupted ones, nor
    samples rejected by pricing."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("on_ray") and t.user_attrs.get("state") in ("complete", "stopped", "failed", "infeasible"))
