"""The statistics a search states its results with: the binomial standard error of one
reading, the seed noise pooled over specs trained several times, a spec's mean with its 95%
interval, a paired difference between two specs trained with the same seeds, and the verdict
and choice that follow from them. Pure Python and SciPy (Student's t quantiles), so the
searcher, the report and the benchmark's simulator share one definition.

Why pooled: a search confirms each candidate with a few seeds (3 by default), and a standard
deviation from 3 runs has 2 degrees of freedom (t = 4.3); the seed noise of one recipe is
about the same for every spec of a space, so one estimate from every spec trained more than
once (the candidates and the references) has many more (t near 2), and every interval uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

LEVEL = 0.95
Verdict = Literal["beats", "ties", "loses to"]


def binomial_se(top1: float, images: int) -> float:
    """Standard error of a top-1 read on `images` held-out images: what the reading alone
    would vary by if the same network were read on another sample of images."""
    return math.sqrt(max(top1 * (1 - top1), 0.0) / images) if images else float("nan")


@dataclass(frozen=True)
class Noise:
    """One run's seed-to-seed standard deviation, pooled over specs with two runs or more."""

    sd: float
    dof: int  # runs minus specs, over the specs used
    specs: int

    @classmethod
    def pooled(cls, runs_per_spec: Sequence[Sequence[float]]) -> Noise:
        groups = [list(g) for g in runs_per_spec if len(g) >= 2]
        dof = sum(len(g) - 1 for g in groups)
        if not dof:
            return cls(float("nan"), 0, 0)
        squares = sum(sum((x - sum(g) / len(g)) ** 2 for x in g) for g in groups)
        return cls(math.sqrt(squares / dof), dof, len(groups))

    @property
    def known(self) -> bool:
        return self.dof > 0

    def t(self) -> float:
        """The two-sided 95% quantile of Student's t with this estimate's degrees of freedom."""
        from scipy.stats import t as student_t  # here: scipy.stats takes half a second to import

        return float(student_t.ppf(0.5 + LEVEL / 2, self.dof)) if self.known else float("nan")


@dataclass(frozen=True)
class Interval:
    """A mean and the half-width of its 95% interval."""

    mean: float
    half: float

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half

    def covers(self, value: float) -> bool:
        return self.low <= value <= self.high

    def points(self) -> str:
        """In percentage points, signed: '+0.42 ± 0.31 points'."""
        return f"{100 * self.mean:+.2f} ± {100 * self.half:.2f} points"


def mean_interval(runs: Sequence[float], noise: Noise) -> Interval:
    """A spec's mean top-1 over its runs, with the pooled noise's 95% interval."""
    return Interval(sum(runs) / len(runs), noise.t() * noise.sd / math.sqrt(len(runs)))


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], noise: Noise) -> Interval | None:
    """Spec a minus spec b over the seeds both were trained with (same seed: same data
    order and the same draw of the recipe's randomness), with a 95% interval from the pooled
    noise (each difference varies by sqrt(2) sd when the two runs are independent; runs of two
    networks with the same seed share the data order, which can only make it less unless
    they were negatively correlated, so the interval is not too narrow). None: no seed in common."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    return Interval(sum(diffs) / len(diffs), noise.t() * noise.sd * math.sqrt(2 / len(diffs)))


def verdict(difference: Interval) -> Verdict:
    """'beats' or 'loses to' when the interval excludes no difference, else 'ties'."""
    if difference.low > 0:
        return "beats"
    if difference.high < 0:
        return "loses to"
    return "ties"


def choose(means: Mapping[str, Interval], cost: Mapping[str, float], noise: Noise, runs: Mapping[str, int]) -> str:
    """The candidate with the best mean; among those whose mean is within the 95% interval
    of their difference from it (they tie with the best), the cheapest."""
    best = max(means, key=lambda k: (means[k].mean, -cost[k]))
    if not noise.known:
        return best
    tied = [k for k in means
            if means[best].mean - means[k].mean <= noise.t() * noise.sd * math.sqrt(1 / runs[k] + 1 / runs[best])]
    return min(tied, key=lambda k: (cost[k], -means[k].mean))
