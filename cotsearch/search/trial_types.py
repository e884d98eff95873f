"""A trial's data as types, one shape on its way out (the driver's config for a worker) and back
(the results it reports, the record the run directory keeps), and a sample's price. Ray-,
torch- and Optuna-free. The states' and ids' texts are those the study, trials.csv, confirm.json
and the trials' folders held before these types, so older run directories read the same."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.analytic import CostReport
from cotsearch.stats import binomial_se


class TrialState(StrEnum):
    """How a trial ended, or stands; in the order the report counts them."""

    COMPLETE = "complete"  # trained to the last epoch
    STOPPED = "stopped"  # ended early by ASHA
    RUNNING = "running"
    FAILED = "failed"  # raised, diverged, timed out, or its worker died
    INTERRUPTED = "interrupted"  # running when the search was stopped; run again when it resumes
    INFEASIBLE = "infeasible"  # over a budget, invalid or pre-screened out: priced, never trained
    DUPLICATE = "duplicate"  # the spec of a trial this run already trained: its result told again
    WAITING = "waiting"  # queued in the study (a rerun of an interrupted trial), not yet asked

    @property
    def trained(self) -> bool:
        return self in (TrialState.COMPLETE, TrialState.STOPPED)


class TrialKind(StrEnum):
    SEARCH = "search"  # a trial of the search: its key is its number in the study
    CONFIRM = "confirm"  # a candidate trained again with a fresh seed: its key is the candidate's number
    REFERENCE = "reference"  # a reference preset trained with a seed: its key is the preset's name
    SWEEP = "sweep"  # a sweep's (spec, seed) row: its key is the spec's hash, its seed the row's seed index


_ID_TEXT = re.compile(r"(?P<prefix>confirm-|ref-)?(?P<key>.+?)(?:-s(?P<seed>\d+))?")


class TrialId(BaseModel):
    """Which trial: written as `7` (a search trial, in trials/0007), `confirm-7-s1`,
    `ref-NAME-s1` or `HASH-s0`."""

    model_config = ConfigDict(frozen=True)

    kind: TrialKind
    key: int | str
    seed: int | None = None

    def __str__(self) -> str:
        if self.kind == TrialKind.SEARCH:
            return str(self.key)
        prefix = {TrialKind.CONFIRM: "confirm-", TrialKind.REFERENCE: "ref-"}.get(self.kind, "")
        return prefix + str(self.key) + ("" if self.seed is None else f"-s{self.seed}")

    @property
    def dirname(self) -> str:
        """Its folder under RUN_DIR/trials."""
        return f"{self.key:04d}" if self.kind == TrialKind.SEARCH else str(self)

    @classmethod
    def parse(cls, text: str) -> TrialId | None:
        """The id a user wrote (`--trial 7`, `--trial ref-cotnet_tiny-s1`), None if it is none.
        References of runs made before the confirmation existed have no seed (`ref-NAME`)."""
        if text.isdigit():
            return cls(kind=TrialKind.SEARCH, key=int(text))
        found = _ID_TEXT.fullmatch(text)
        if found is None:
            return None
        seed = None if found["seed"] is None else int(found["seed"])
        if found["prefix"] == "confirm-":
            return cls(kind=TrialKind.CONFIRM, key=int(found["key"]), seed=seed) if found["key"].isdigit() else None
        if found["prefix"] == "ref-":
            return cls(kind=TrialKind.REFERENCE, key=found["key"], seed=seed)
        return cls(kind=TrialKind.SWEEP, key=found["key"], seed=seed) if seed is not None else None


RAY_KEY = "trial"  # Ray Tune's trial config holds the TrialConfig under it


def search_trial(number: int) -> TrialId:
    return TrialId(kind=TrialKind.SEARCH, key=number)


class TrialConfig(BaseModel):
    """What the driver sends a trial's worker, for every kind of trial: the spec fitted to the data
    and priced in the driver, so the worker derives nothing again. Ray Tune's trial config holds
    it under RAY_KEY, whether the searcher suggested it or it is one of a grid's."""

    model_config = ConfigDict(frozen=True)

    id: TrialId
    spec: BackboneSpec
    cost: CostReport
    seed: int | None = None  # the training seed, where it is not the recipe's
    sampled: dict[str, Any] | None = None  # the choices (Optuna's encoded values) the spec was made from
    label: str | None = None  # a sweep's name for a spec trained beside the space's (a scaled preset)

    @property
    def spec_hash(self) -> str:
        return self.spec.spec_hash()

    @property
    def never_refused(self) -> bool:
        """A reference or a confirmation run is measured and kept, whatever its latency."""
        return self.id.kind in (TrialKind.CONFIRM, TrialKind.REFERENCE)

    def ray_config(self) -> dict:
        return {RAY_KEY: self.model_dump(mode="json")}

    @classmethod
    def from_ray(cls, config: dict) -> TrialConfig:
        return cls.model_validate(config[RAY_KEY])


class TrialResult(BaseModel):
    """One result a trial's worker reports: an epoch's (`outcome` None) or how it ended without
    training to the end (failed, or over the latency budget on its device). Ray Tune carries it
    as the flat dict of `report()`, adding keys of its own, which reading it drops."""

    model_config = ConfigDict(extra="ignore")

    outcome: Literal[TrialState.FAILED, TrialState.INFEASIBLE] | None = None
    epoch: int | None = None
    val_top1: float | None = None  # None: an epoch that was not validated
    val_loss: float | None = None
    val_images: int | None = None  # the validation images val_top1 was read on
    val_s: float | None = None  # seconds spent validating, so far
    train_loss: float | None = None
    images_per_s: float | None = None
    test_top1: float | None = None  # a sweep's final model
    seed: int | None = None
    macs: int | None = None
    params: int | None = None
    latency_ms: float | None = None
    latency_shared: bool | None = None  # another trial ran on the node while it was measured
    constraints: list[float] | None = None
    error: str | None = None  # why it failed
    reason: str | None = None  # why it is infeasible
    spec_hash: str | None = None  # of the network the worker built (checked against the config's)
    number: str | None = None  # the trial's id, as text
    node: str | None = None
    gpu_ids: str | None = None
    device: str | None = None
    trial_started_at: float | None = None
    duration_s: float | None = None

    @property
    def is_epoch(self) -> bool:
        """A result of an epoch the trial trained (validated or not), not its failure."""
        return self.outcome is None and self.epoch is not None

    @classmethod
    def of(cls, result: dict | None) -> TrialResult:
        return cls.model_validate(result or {})

    def report(self) -> dict:
        """What the worker hands Ray Tune (`tune.report`): the set fields, flat ("epoch" is ASHA's time)."""
        return self.model_dump(mode="json", exclude_none=True)

    def checked(self, config: TrialConfig) -> TrialResult:
        """This result, or a failure if the worker built another network than the config's:
        what is recorded describes the spec that was sent."""
        if self.spec_hash is None or self.spec_hash == config.spec_hash:
            return self
        return self.model_copy(update={"outcome": TrialState.FAILED, "error": f"the worker built spec {self.spec_hash}, "
                                                                             f"not the {config.spec_hash} it was sent"})


def failed(error: str) -> TrialResult:
    """The outcome of a trial that failed (its worker's error, or why its worker died)."""
    return TrialResult(outcome=TrialState.FAILED, error=error, val_top1=0.0, epoch=0)


@dataclass(kw_only=True)
class TrialRecord:
    """One search trial as trials.csv (records.COLUMNS), the report and the confirmation read it."""

    trial: int
    state: TrialState
    sampled: dict
    val_top1: float | None = None  # trained trials' only
    epochs: int | None = None
    macs: int | None = None
    macs_conv: int | None = None
    params: int | None = None
    latency_ms: float | None = None
    latency_shared: bool | None = None
    spec_hash: str | None = None
    duration_s: float | None = None
    node: str | None = None
    gpu_ids: str | None = None
    reason: str | None = None
    spec_json: str | None = None
    val_images: int | None = None
    val_s: float | None = None  # of duration_s, spent validating
    on_ray: bool = False  # the sample went to Ray (not priced out, not a duplicate)

    def __post_init__(self) -> None:
        self.state = TrialState(self.state)  # as stored: its text

    @property
    def trained(self) -> bool:
        return self.state.trained

    @property
    def counted(self) -> bool:
        """Whether it counts towards --trials: Ray ran it to an end (trained, failed, over the latency budget)."""
        return self.on_ray and (self.trained or self.state in (TrialState.FAILED, TrialState.INFEASIBLE))

    @property
    def val_top1_se(self) -> float | None:
        """The reading's binomial standard error (how much it would move on other images)."""
        return binomial_se(self.val_top1, self.val_images) if self.val_top1 is not None and self.val_images else None


class Price(NamedTuple):
    """What pricing a sample found, without building anything (search.space.price)."""

    spec: BackboneSpec | None  # None: the combination is not a valid spec
    cost: CostReport | None
    constraints: list[float]  # one per budget: <= 0 within it
    reason: str | None  # why it is infeasible; None: feasible
