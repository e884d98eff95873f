"""A person's choice: the baseline a search has to beat is not only random sampling but the
preset a user would have scaled down by hand to fit the budget
(cotsearch.search.scaled_presets). `cotsearch sweep --scaled-preset NAME` trains it beside the
space's specs, with the same recipe and seeds, and `cotsearch analyze` ranks it and counts how
often each strategy's choice beats it (PersonsChoice)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cotsearch.stats import Interval, Verdict, verdict


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

