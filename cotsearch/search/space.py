"""Search-space files (`spaces/*.yaml`): a base spec, choices over its fields, budgets,
objectives, the trials' training recipe and the search settings.

A parameter is a dotted path into the base spec (`stages.1.blocks`, `stages.2.cot.kernel_size`,
`shortcut`) or the special `width_mult` (every stage's planes times it, rounded to a multiple
of 8). It takes a categorical `choice`, an `int` or a `float` range, and may depend on
earlier parameters with `when` (it is only sampled when they have one of the given values).
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import warnings
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from cotsearch.arch.load import list_presets, load_spec
from cotsearch.arch.spec import BackboneSpec, StrictModel
from cotsearch.arch.yaml_io import format_validation_error, read_yaml
from cotsearch.cost.analytic import CostReport, estimate_cost
from cotsearch.data.shape import DataShape, data_shape
from cotsearch.errors import SpecError
from cotsearch.search.trial_types import Price
from cotsearch.train.config import TrainConfig

WIDTH_MULT = "width_mult"
SCALED_TO_BUDGET = "@budget"  # a reference `NAME@budget`: the preset scaled by width to the budget


class ParamSpec(StrictModel):
    choice: list[Any] | None = Field(None, min_length=1, description="categorical values (a list value is one choice)")
    int_range: list[int] | None = Field(None, alias="int", min_length=2, max_length=2, description="[low, high], inclusive")
    float_range: list[float] | None = Field(None, alias="float", min_length=2, max_length=2, description="[low, high]")
    step: int | float | None = Field(None, gt=0)
    log: bool = False
    when: dict[str, Any] | None = Field(None, description="sample only when each named earlier parameter has this value (or one of these values, given a list)")

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpec:
        kinds = [k for k in ("choice", "int_range", "float_range") if getattr(self, k) is not None]
        if len(kinds) != 1:
            given = ", ".join(k.removesuffix("_range") for k in kinds) or "none"
            raise ValueError(f"give exactly one of choice, int, float (got {given})")
        if self.choice is not None:
            given = [k for k, v in (("step", self.step is not None), ("log", self.log)) if v]
            if given:
                raise ValueError(f"{' and '.join(given)}: only an int or float range takes it, not a choice")
            return self
        return self._a_range_optuna_samples()

    def _a_range_optuna_samples(self) -> ParamSpec:
        """The range as Optuna will sample it (SearchSpace.sample), checked now, where the space
        is read, rather than in the first trial of a search after Ray has started: Optuna's own
        rules, then Optuna's own distribution; a range that is not a whole number of steps,
        which Optuna would quietly shorten, is refused too."""
        from optuna.distributions import FloatDistribution, IntDistribution  # optuna: only for a range

        low, high = self.int_range or self.float_range
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"range [{low}, {high}]: low and high must be finite numbers")
        if low > high:
            raise ValueError(f"range [{low}, {high}] is empty: low is above high")
        if self.step is not None and not math.isfinite(self.step):
            raise ValueError(f"step {self.step} must be a finite number")
        if self.int_range is not None and self.step is not None and not float(self.step).is_integer():
            raise ValueError(f"step {self.step}: an int range takes a whole step")
        if self.log and self.step is not None:
            raise ValueError("give step or log: true, not both (Optuna samples a log range without steps)")
        if self.log and (low <= 0 if self.float_range is not None else low < 1):
            raise ValueError(f"log: true needs low {'> 0' if self.float_range is not None else '>= 1'} (got {low})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # the shortened range, refused below
                if self.int_range is not None:
                    distribution = IntDistribution(low, high, log=self.log, step=int(self.step or 1))
                else:
                    distribution = FloatDistribution(low, high, log=self.log, step=self.step)
        except ArithmeticError:  # Optuna counts the steps in decimal arithmetic, which this many overflow
            raise ValueError(f"step {self.step} is too small for the range [{low}, {high}]: "
                             "Optuna cannot count its steps") from None
        if distribution.high != high:
            raise ValueError(f"range [{low}, {high}] is not a whole number of steps of {self.step}: "
                             f"Optuna would sample up to {distribution.high} only")
        return self

    def in_range(self, value) -> bool:
        """Whether a range can sample this value (an int range: a whole number on its steps)."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        low, high = self.int_range or self.float_range
        if self.int_range is not None:
            return float(value).is_integer() and low <= value <= high and (value - low) % int(self.step or 1) == 0
        return low <= value <= high

    def labels(self) -> list:
        """Optuna's categorical values must be plain scalars: a list choice becomes its JSON text."""
        return [c if c is None or isinstance(c, bool | int | float | str) else json.dumps(c) for c in self.choice]

    def decode(self, label):
        return self.choice[self.labels().index(label)] if self.choice is not None else label


class Budgets(StrictModel):
    max_macs: float | None = Field(None, gt=0, description="the paper's MAC count (cotsearch.cost.analytic 'macs'), at the data's image size")
    max_params: float | None = Field(None, gt=0)
    max_latency_ms: float | None = Field(None, gt=0, description="inference latency on the trial's own device, measured before training")
    latency_batch_size: int = Field(1, ge=1)

    def names(self) -> list[str]:
        return [n for n in ("max_macs", "max_params", "max_latency_ms") if getattr(self, n) is not None]


class Objective(StrictModel):
    metric: Literal["val_top1", "macs", "params", "latency_ms"]
    direction: Literal["maximize", "minimize"]


class TrialRecipe(TrainConfig):
    """How every trial trains (TrainConfig's fields) and on what."""

    data: str = Field("fashion-mnist", description="see `cotsearch train --data`")
    train_limit: int | None = Field(None, ge=1)
    val_size: int | None = Field(None, ge=1, description="validation images held out of the training set")
    input_size: int = Field(224, ge=8, description="image size for folder data")

    def train_config(self) -> TrainConfig:
        return TrainConfig.model_validate(self.model_dump(include=set(TrainConfig.model_fields)))


PROXY_NAMES = ("naswot", "synflow", "snip", "grad_norm", "jacob_cov", "zico", "params", "macs")  # cotsearch.search.proxies


class Prescreen(StrictModel):
    """Zero-cost pre-screening: score a pool of random feasible samples with a proxy before
    the search, then train only samples that score among the pool's best `keep` fraction
    (the others are recorded as infeasible, like samples over a budget)."""

    proxy: Literal[PROXY_NAMES] = Field(description="a proxy of cotsearch.search.proxies (higher is better)")
    pool: int = Field(200, ge=2, le=100_000, description="random feasible samples scored before the search")
    keep: float = Field(0.25, gt=0, le=1, description="fraction of the pool's distinct specs, best first, that may train")


class Confirm(StrictModel):
    """After the search, train its best few candidates and the reference presets again with
    fresh seeds, and choose by their mean (cotsearch.search.confirm): one reading of a trial
    cannot tell apart specs that differ by less than its seed noise."""

    top: int = Field(3, ge=1, le=100, description="candidates confirmed: the best trained trials by their search reading")
    seeds: int = Field(3, ge=2, le=100, description="fresh seeds each candidate and each reference is trained with")


class SearchSettings(StrictModel):
    trials: int = Field(12, ge=1, le=100_000, description="trials to train (infeasible samples are extra)")
    sampler: Literal["tpe", "nsga2", "random"] | None = Field(None, description="null: tpe for one objective, nsga2 for several")
    seed: int = Field(0, ge=0)
    max_concurrent_trials: int | None = Field(None, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    # Not ASHA by default: on the placement benchmark no epoch's ranking was told apart from
    # noise, so a cut after epoch 1 was a cut at random (experiments/cot_placement_bench/analysis.md).
    scheduler: Literal["asha", "none"] = Field("none", description="none: every trial trains and validates once, at "
                                               "its end; asha: stop trials that fall behind at its rungs (validating "
                                               "there), for a recipe whose early epochs are known to rank")
    grace_period: int = Field(1, ge=1, description="epochs before ASHA may stop a trial")
    reduction_factor: int = Field(2, ge=2)
    max_infeasible: int = Field(2000, ge=1, description="consecutive infeasible samples before the search gives up")
    trial_timeout_s: float | None = Field(None, gt=0, description="a trial still running after this is failed")
    max_retries: int = Field(1, ge=0, description="times Ray reruns a trial whose worker or node died")
    latency_isolated: bool = Field(False, description="measure each trial's latency with its node to itself: the "
                                   "trials training there pause at the end of their current step until it ends")
    references: list[str] = Field(default_factory=list, description="presets trained with the same recipe, for "
                                  "comparison; NAME@budget: the preset scaled by width to the space's budget, what a "
                                  "person would have trained without a search")
    prescreen: Prescreen | None = Field(None, description="zero-cost pre-screening of the samples; null: off")
    confirm: Confirm | None = Field(default_factory=Confirm, description="train the top candidates and the references "
                                    "again with fresh seeds before choosing; null: off (the references then train with "
                                    "2 seeds, so the run still measures its noise)")

    def reference_seeds(self, recipe_seed: int) -> list[int]:
        """The seeds the references train with: the confirmation's fresh ones (the search
        trained with recipe_seed), or two (the recipe's and the next) to measure the noise."""
        if self.confirm is None:
            return [recipe_seed, recipe_seed + 1]
        return list(range(recipe_seed + 1, recipe_seed + 1 + self.confirm.seeds))

    def validation_epochs(self, epochs: int) -> list[int]:
        """The epochs after which a trial is validated: ASHA's rungs (where it compares trials)
        and the last; without a scheduler, the last only. Validating every epoch on a split big
        enough to rank costs a trial about half an epoch each time (cotnet_tiny, CPU)."""
        rungs = []
        if self.scheduler == "asha":
            rung = min(self.grace_period, epochs)
            while rung < epochs:
                rungs.append(rung)
                rung *= self.reduction_factor
        return rungs + [epochs]

    @field_validator("references")
    @classmethod
    def _known_presets(cls, names: list[str]) -> list[str]:
        for name in names:
            preset = name.removesuffix(SCALED_TO_BUDGET)
            if preset not in list_presets():
                scaled = SCALED_TO_BUDGET if preset != name else ""
                guess = difflib.get_close_matches(preset.split("@")[0], list_presets(), n=1)
                hint = f"; did you mean {guess[0] + scaled!r}?" if guess else f"; presets: {', '.join(list_presets())}"
                raise ValueError(f"{name!r} is not a preset{hint} (NAME{SCALED_TO_BUDGET}: the preset scaled by width "
                                 "to the budget)")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)}: named twice")
        return names


class DerivedValues(dict):
    """What a space derives from its fields (the base spec read, the data's shape, the trial
    base), each kept under the field values it came from: model_copy(update=...) does not
    validate, so a copy with another base or recipe must find nothing under its own values
    and derive them again. It is no part of what a space is, so it never makes two equal."""

    def value(self, key: tuple, derive):
        if key not in self:
            self[key] = derive()
        return self[key]

    def __eq__(self, other) -> bool:
        return isinstance(other, DerivedValues)

    __hash__ = None


class SearchSpace(StrictModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="letters, digits, '_', '.', '-': it names the run directory under runs/")
    description: str | None = None
    base: str | BackboneSpec = Field(description="a preset name, a spec file, or an inline spec")
    params: dict[str, ParamSpec] = Field(min_length=1)
    budgets: Budgets = Field(default_factory=Budgets)
    objectives: list[Objective] = Field(default_factory=lambda: [Objective(metric="val_top1", direction="maximize")], min_length=1)
    train: TrialRecipe = Field(default_factory=TrialRecipe)
    search: SearchSettings = Field(default_factory=SearchSettings)
    _derived: DerivedValues = PrivateAttr(default_factory=DerivedValues)

    @field_validator("base")
    @classmethod
    def _base_exists(cls, base):
        if isinstance(base, str):
            load_spec(base)  # a SpecError (a ValueError) here is reported under "base"
        return base

    @field_validator("objectives")
    @classmethod
    def _top1_first(cls, objectives: list[Objective]) -> list[Objective]:
        if objectives[0].metric != "val_top1" or objectives[0].direction != "maximize":
            raise ValueError("the first objective must be {metric: val_top1, direction: maximize}")
        if len({o.metric for o in objectives}) != len(objectives):
            raise ValueError("each metric may appear once")
        return objectives

    @model_validator(mode="after")
    def _params_fit_the_base(self) -> SearchSpace:
        base = self.base_spec()
        seen: list[str] = []
        for path, param in self.params.items():
            for name, wanted in (param.when or {}).items():
                if name not in seen:
                    raise ValueError(f"params.{path}.when: {name!r} is not an earlier parameter")
                other = self.params[name]
                given = wanted if isinstance(wanted, list) else [wanted]
                if not given:
                    raise ValueError(f"params.{path}.when: no value of {name} is given, so the condition could never hold")
                for w in given:
                    if other.choice is not None and w not in other.choice:
                        raise ValueError(f"params.{path}.when: {w!r} is not one of the choices of {name} "
                                         f"{other.choice}, so the condition could never hold")
                    if other.choice is None and not other.in_range(w):
                        raise ValueError(f"params.{path}.when: {w!r} is not in the range of {name} "
                                         f"{other.int_range or other.float_range}, so the condition could never hold")
            values = param.choice if param.choice is not None else list(param.int_range or param.float_range)
            for value in values:
                try:
                    apply_params(base, {path: value})
                except SpecError as e:
                    raise ValueError(f"params.{path}: value {value!r} does not fit the base spec: {e}") from None
            seen.append(path)
        return self

    def base_spec(self) -> BackboneSpec:
        """The base spec as the space file gives it (a preset or file read once)."""
        if isinstance(self.base, BackboneSpec):
            return self.base
        return self._derived.value(("base", self.base), lambda: load_spec(self.base))

    def values_with(self, search: dict | None = None, train: dict | None = None) -> dict:
        """This space's values with these search settings and recipe fields replaced, to be
        validated again (a space file with command-line options, a sweep's second recipe)."""
        return {**self.model_dump(by_alias=True, exclude={"base"}), "base": self.base,
                "search": {**self.search.model_dump(), **(search or {})},
                "train": {**self.train.model_dump(), **(train or {})}}

    def data_shape(self) -> DataShape:
        """The trials' images and classes (DataError here, before any work, when the data is missing)."""
        data, size = self.train.data, self.train.input_size
        return self._derived.value(("data", data, size), lambda: data_shape(data, size))

    def trial_base(self) -> BackboneSpec:
        """The base spec fitted to the trials' data (channels, classes, image size). Every
        sample derives from it, so the spec priced is the spec trained and recorded."""
        base = self.base if isinstance(self.base, str) else self.base.model_dump_json()
        shape = self.data_shape()
        return self._derived.value(("trial base", base, shape), lambda: shape.apply(self.base_spec()))

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def modes(self) -> list[str]:
        return ["max" if o.direction == "maximize" else "min" for o in self.objectives]

    def sample(self, trial) -> dict[str, Any]:
        """Define-by-run sampling on an Optuna trial; returns Optuna's (encoded) values."""
        values: dict[str, Any] = {}
        for path, p in self.params.items():
            if not self._active(p, values):
                continue
            if p.choice is not None:
                values[path] = trial.suggest_categorical(path, p.labels())
            elif p.int_range is not None:
                values[path] = trial.suggest_int(path, *p.int_range, step=int(p.step or 1), log=p.log)
            else:
                values[path] = trial.suggest_float(path, *p.float_range, step=p.step, log=p.log)
        return values

    def _active(self, param: ParamSpec, values: dict[str, Any]) -> bool:
        """A `when` condition holds: every named parameter was sampled, with a wanted value."""
        return all(name in values and _matches(self.params[name].decode(values[name]), wanted)
                   for name, wanted in (param.when or {}).items())

    def decode(self, sampled: dict[str, Any]) -> dict[str, Any]:
        return {path: self.params[path].decode(value) for path, value in sampled.items()}

    def spec_for(self, sampled: dict[str, Any]) -> BackboneSpec:
        """The spec of a sample (Optuna's encoded values); SpecError if the combination is invalid."""
        spec = apply_params(self.trial_base(), self.decode(sampled))
        return spec.model_copy(update={"name": f"{self.name}-{spec.spec_hash()}"})

    def constraints(self, cost: CostReport | None, latency_ms: float | None = None) -> list[float]:
        """Optuna constraint values, one per budget: <= 0 when within it (budget - 1 ratio)."""
        values = []
        for name in self.budgets.names():
            limit = getattr(self.budgets, name)
            actual = {"max_macs": cost.macs if cost else None, "max_params": cost.params if cost else None,
                      "max_latency_ms": latency_ms}[name]
            values.append(0.0 if actual is None else actual / limit - 1.0)
        return values


def _matches(value, wanted) -> bool:
    """`wanted` is a value, or a list of values (so a pattern value is written as [[cot, conv]])."""
    return value in wanted if isinstance(wanted, list) else value == wanted


def _set_path(data: dict, path: str, value) -> None:
    keys = path.split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        node = _child(node, key, keys[: i + 1])
    last = keys[-1]
    if isinstance(node, list):
        index = _index(node, last, keys)
        node[index] = value
    elif isinstance(node, dict) and last in node:
        node[last] = value
    else:
        raise SpecError(f"{path}: no such field in the spec")


def _child(node, key: str, where: list[str]):
    if isinstance(node, list):
        return node[_index(node, key, where)]
    if isinstance(node, dict) and key in node and isinstance(node[key], dict | list):
        return node[key]
    raise SpecError(f"{'.'.join(where)}: no such field in the spec")


def _index(node: list, key: str, where: list[str]) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise SpecError(f"{'.'.join(where)}: expected an index below {len(node)}")
    return int(key)


def apply_params(base: BackboneSpec, values: dict[str, Any]) -> BackboneSpec:
    """The base spec with each dotted path set (width_mult scales every stage's planes)."""
    data = copy.deepcopy(base.model_dump(mode="json"))
    for path, value in values.items():
        if path == WIDTH_MULT:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
                raise SpecError(f"{WIDTH_MULT} {value!r}: expected a positive number")
            for i, stage in enumerate(data["stages"]):
                planes = int(round(stage["planes"] * value / 8)) * 8
                if planes < 8:  # no channel for the stage's groups and heads; never widened quietly
                    raise SpecError(f"{WIDTH_MULT} {value:g} rounds stages.{i}.planes {stage['planes']} to 0 (planes "
                                    "are multiples of 8), fewer than one channel per group or head")
                stage["planes"] = planes
        else:
            _set_path(data, path, value)
    try:
        return BackboneSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, "sampled spec", BackboneSpec)) from None


def load_space(path: str) -> SearchSpace:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping (name, base, params, budgets, ...), got {type(data).__name__}")
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(e, str(path), SearchSpace)) from None


def price(space: SearchSpace, sampled: dict[str, Any]) -> Price:
    """A sample's spec, cost, constraint values and why it is infeasible (None if it is not), without building anything."""
    try:
        spec = space.spec_for(sampled)
    except SpecError as e:
        return Price(None, None, [1.0] * len(space.budgets.names()), f"invalid: {e}")
    cost = estimate_cost(spec)
    constraints = space.constraints(cost)
    over = [f"{name} by {value:+.1%}" for name, value in zip(space.budgets.names(), constraints) if value > 0]
    return Price(spec, cost, constraints, ("over budget: " + ", ".join(over)) if over else None)
