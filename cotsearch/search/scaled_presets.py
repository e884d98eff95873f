"""A preset scaled down (or up) by hand to fit a space's budget: the baseline a search has to
beat besides random sampling, since it is what a user would have done without one. A preset
is fitted to the space's data and scaled by width (the stem and every stage's planes times one
factor, rounded to multiples of 8 as the space's `width_mult` rounds them) to the widest that
fits every budget. A space names one among its references as `NAME@budget` (tune trains it
beside its candidates, with the same seeds: reference_spec); `cotsearch sweep --scaled-preset
NAME` trains it beside a benchmark's specs (cotsearch.bench.scaled_presets)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cotsearch.arch.load import load_spec
from cotsearch.arch.spec import BackboneSpec
from cotsearch.cost.analytic import CostReport, estimate_cost
from cotsearch.errors import CotsearchError, SpecError
from cotsearch.search.space import SCALED_TO_BUDGET, WIDTH_MULT, SearchSpace, apply_params

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


def scale_to_budget(space: SearchSpace, preset: str, where: str | None = None) -> ScaledPreset:
    """The widest scaling of `preset` on the space's data that is within every budget of the
    space (by the analytic cost model; a latency budget would need the trial's device). Its
    errors start with `where`, what the user wrote (by default `--scaled-preset PRESET`)."""
    where = where or f"--scaled-preset {preset}"
    if space.budgets.max_latency_ms is not None:
        raise CotsearchError(f"{where}: {space.name} has a latency budget, which a preset cannot be scaled to "
                             "without measuring; budget the space by max_macs or max_params only, or name the preset "
                             "unscaled")
    if not space.budgets.names():
        raise CotsearchError(f"{where}: {space.name} has no budget to scale the preset to")
    try:
        fitted = space.data_shape().apply(load_spec(preset))
    except (SpecError, OSError) as e:
        raise CotsearchError(f"{where}: {e}") from None
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
        raise CotsearchError(f"{where}: no width from {FACTORS[0]:g}x to {FACTORS[-1]:g}x fits "
                             f"{space.name}'s budgets")
    factor, spec, cost = best
    name = f"{preset}-x{factor:.2f}"
    spec = spec.model_copy(update={"name": name})
    return ScaledPreset(preset, factor, spec, cost)


def reference_spec(space: SearchSpace, name: str) -> BackboneSpec:
    """The network a space's reference names, fitted to its data: a preset, or with
    `@budget` the preset scaled to the space's budget (a one-line error when it cannot be)."""
    scaled = _scaled_reference(space, name)
    return scaled.spec if scaled else space.data_shape().apply(load_spec(name))


def _scaled_reference(space: SearchSpace, name: str) -> ScaledPreset | None:
    """The scaling a reference `NAME@budget` names; None for a plain preset."""
    preset = name.removesuffix(SCALED_TO_BUDGET)
    return None if preset == name else scale_to_budget(space, preset, f"search.references: {name}")


def reference_specs(space: SearchSpace) -> dict[str, BackboneSpec]:
    """Every reference of the space by name, resolved (reference_spec); two names for one
    network (a preset and its scaling to a budget that leaves no room to widen it) are a
    one-line error, not the same runs trained twice."""
    specs = {name: reference_spec(space, name) for name in space.search.references}
    seen: dict[str, str] = {}
    for name, spec in specs.items():
        other = seen.setdefault(spec.spec_hash(), name)
        if other != name:
            raise CotsearchError(f"search.references: {other} and {name} are the same network (the budget leaves no "
                                 "room to widen it); name one of them")
    return specs


def described(space: SearchSpace, name: str) -> str:
    """A reference's name as a line of progress shows it, with the width and cost a scaled one has."""
    scaled = _scaled_reference(space, name)
    return f"{name} (x{scaled.factor:.2f} width, {scaled.cost.macs / 1e6:.2f} M MACs)" if scaled else name
