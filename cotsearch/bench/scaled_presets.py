"""A person's choice: the baseline a search has to beat is not only random sampling but the
preset a user would have scaled down by hand to fit the budget. Here a preset is fitted to the
space's data and scaled by width (the stem and every stage's planes times one factor, rounded
to multiples of 8 as the space's `width_mult` rounds them) to the widest that fits every
budget; `cotsearch sweep --scaled-preset NAME` trains it beside the space's specs, with the
same recipe and seeds, and `cotsearch analyze` ranks it and counts how often each strategy's
choice beats it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cotsearch.arch.load import load_spec
from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.analytic import CostReport, estimate_cost
from cotsearch.errors import CotsearchError, SpecError
from cotsearch.search.prescreen import Candidate
from cotsearch.search.space import WIDTH_MULT, SearchSpace, apply_params
from cotsearch.search.stats import Interval, Verdict, verdict

FACTORS = np.arange(1, 257) / 64  # the widths tried: 1/64 to 4x, in steps of 1/64


def scale_width(spec: BackboneSpec, factor: float) -> BackboneSpec:
    """The spec with its stem and every stage's planes times `factor` (multiples of 8, at least 8)."""
    stem = max(8, round(spec.stem.width * factor / 8) * 8)
    # The planes as a space's width_mult scales them, the stem's width set on the same path.
    return apply_params(spec, {WIDTH_MULT: factor, "stem.width": stem})


@dataclass(frozen=True)
class ScaledPreset:
    preset: str
    factor: float
    spec: BackboneSpec
    cost: CostReport

    @property
    def label(self) -> str:
        """How the row is named in a sweep's table, e.g. `cotnet_tiny x0.55 width`."""
        return f"{self.preset} x{self.factor:.2f} width"

    def candidate(self) -> Candidate:
        return Candidate({}, self.spec, self.cost)


def scale_to_budget(space: SearchSpace, preset: str) -> ScaledPreset:
    """The widest scaling of `preset` on the space's data that is within every budget of the
    space (by the analytic cost model; a latency budget would need the trial's device)."""
    if space.budgets.max_latency_ms is not None:
        raise CotsearchError(f"--scaled-preset {preset}: {space.name} has a latency budget, which a preset cannot "
                             "be scaled to without measuring; give the space a max_macs or max_params budget")
    if not space.budgets.names():
        raise CotsearchError(f"--scaled-preset {preset}: {space.name} has no budget to scale the preset to")
    try:
        fitted = space.data_shape().apply(load_spec(preset))
    except (SpecError, OSError) as e:
        raise CotsearchError(f"--scaled-preset {preset}: {e}") from None
    best = None
    for factor in FACTORS:
        try:
            spec = scale_width(fitted, float(factor))
        except SpecError:
            continue  # too narrow for the preset's groups or heads
        cost = estimate_cost(spec)
        if all(value <= 0 for value in space.constraints(cost)):
            best = (float(factor), spec, cost)
    if best is None:
        raise CotsearchError(f"--scaled-preset {preset}: no width from {FACTORS[0]:g}x to {FACTORS[-1]:g}x fits "
                             f"{space.name}'s budgets")
    factor, spec, cost = best
    name = f"{preset}-x{factor:.2f}"
    spec = spec.model_copy(update={"name": name})
    return ScaledPreset(preset, factor, spec, cost)


@dataclass
class PersonsChoice:
    """One strategy's chosen specs against one scaled preset, judged by the reference recipe."""

    strategy: str
    preset: str
    runs: int
    beats: int  # runs whose chosen spec has a higher reference top-1 than the preset's
    difference: Interval  # mean over runs of (chosen spec's reference top-1 - the preset's), 95% interval

    @property
    def verdict(self) -> Verdict:
        return verdict(self.difference)


def against_preset(strategy: str, preset: str, chosen_truth: np.ndarray, preset_truth: float,
                   preset_se: float) -> PersonsChoice:
    """The chosen specs' reference top-1 (one per simulated run) against the preset's. The
    interval adds the spread over runs (standard error of their mean) and the preset's own
    measurement error (`preset_se`, the standard error of its reference mean over its seeds):
    every run is compared with the same noisy reading of the preset, so that error does not
    average away over runs. The chosen specs' own reference noise does, over runs that choose
    different specs, and is left out."""
    difference = np.asarray(chosen_truth, float) - preset_truth
    spread = float(difference.std(ddof=1)) / math.sqrt(len(difference)) if len(difference) > 1 else 0.0
    return PersonsChoice(strategy, preset, len(difference), int((difference > 0).sum()),
                         Interval(float(difference.mean()), 1.96 * math.sqrt(spread ** 2 + preset_se ** 2)))

