"""How well one ranking of the specs agrees with another: rank correlations, a permutation
test of no association, and from which epoch the search recipe's ranking carries signal."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from cotsearch.bench.table import Bench, as_number, pair_label, reading_pairs, seed_pairs
from cotsearch.search.space import PROXY_NAMES
from cotsearch.stats import Noise

PERMUTATIONS, PERMUTATION_SEED, ALPHA = 2000, 0, 0.05


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank."""
    return scipy_stats.rankdata(values)


def spearman(a, b) -> float:
    return float(scipy_stats.spearmanr(a, b).statistic)


def kendall_tau(a, b, axis: int = -1):
    """tau-b along `axis` (a float for two rankings, an array for a batch of them): the sum of
    sign(a_i - a_j) sign(b_i - b_j) over pairs, over the square root of the pairs not tied in a
    times the pairs not tied in b (ties counted as scipy.stats.kendalltau does). Written here
    because the permutation test needs it vectorized over its resamples, which scipy's is not."""
    a, b = np.moveaxis(np.asarray(a, float), axis, -1), np.moveaxis(np.asarray(b, float), axis, -1)
    da, db = np.sign(a[..., :, None] - a[..., None, :]), np.sign(b[..., :, None] - b[..., None, :])
    tau = (da * db).sum((-2, -1)) / np.sqrt((da * da).sum((-2, -1)) * (db * db).sum((-2, -1)))
    return tau[()]  # a NumPy float (a float, with the dtype scipy asks of a statistic) for two rankings


def spearman_brown(tau: float, factor: float) -> tuple[float, float]:
    """(Kendall tau, Spearman rho) that two readings would reach, each the mean of `factor` times
    the seeds of two readings that agreed at Kendall `tau` (NaN unless tau and factor are
    positive). If the specs' own differences and the noise are normal, tau = 2/pi asin(r) for
    Pearson's r (Greiner's relation), and the mean of factor times the seeds agrees at
    factor r / (1 + (factor - 1) r) (Spearman-Brown). Written here because scipy has neither."""
    if not (tau > 0 and factor > 0):
        return math.nan, math.nan
    r = math.sin(math.pi / 2 * tau)
    return normal_rank_correlations(factor * r / (1 + (factor - 1) * r))


def predictor_ceiling(tau: float) -> tuple[float, float]:
    """(Kendall tau, Spearman rho) of the specs' own values, a predictor without noise, against
    a reading that agrees with another like it at Kendall `tau` (NaN unless tau is positive):
    under the same normal model, Pearson's sqrt(r). No predictor does better, on average."""
    return normal_rank_correlations(math.sqrt(math.sin(math.pi / 2 * tau))) if tau > 0 else (math.nan, math.nan)


def normal_rank_correlations(r: float) -> tuple[float, float]:
    """Kendall's tau and Spearman's rho of a bivariate normal with Pearson's r (Greiner's relation
    and its Spearman twin)."""
    return 2 / math.pi * math.asin(r), 6 / math.pi * math.asin(r / 2)


def tau_test(a, b, permutations: int = PERMUTATIONS) -> tuple[float, float]:
    """Kendall tau of a and b and the one-sided p-value of no association: the share of
    `permutations` random re-pairings of them (seeded) whose tau is at least as high."""
    result = scipy_stats.permutation_test((np.asarray(a, float), np.asarray(b, float)), kendall_tau,
                                          permutation_type="pairings", vectorized=True, batch=100,
                                          n_resamples=permutations, alternative="greater", rng=PERMUTATION_SEED)
    return float(result.statistic), float(result.pvalue)


def correlations(bench: Bench) -> list[tuple[str, float, float, int]]:
    """(predictor, Kendall tau, Spearman rho, specs) against the reference top-1, then the
    noise ceilings: two independent readings of the reference (table.reading_pairs); where the
    truth's agreement with itself, from theirs (spearman_brown: it averages more seeds, or fewer,
    than each of them); from that, the most any predictor reaches against it (predictor_ceiling); the
    search recipe's seed 0 against its seed 1."""
    truth = bench.truth()
    found = []

    def add(label: str, values: np.ndarray, target: np.ndarray = truth) -> None:
        ok = np.isfinite(values) & np.isfinite(target)
        if ok.sum() >= 3:
            found.append((label, kendall_tau(values[ok], target[ok]), spearman(values[ok], target[ok]), int(ok.sum())))

    for name in PROXY_NAMES:
        if name in bench.search[bench.specs[0]][0]:
            add(name, bench.search_mean(name))
    seeds = min(len(rows) for rows in bench.search.values())
    for epoch in range(1, bench.epochs + 1):
        column = f"val_top1_epoch_{epoch}"
        add(f"search recipe, val top-1 after epoch {epoch} (mean of {seeds} seeds)", bench.search_mean(column))
        one = [[as_number(r[column]) for r in sorted(bench.search[h], key=lambda r: int(r["seed"]))][0]
               for h in bench.specs]
        add(f"search recipe, val top-1 after epoch {epoch} (seed 0 alone)", np.array(one))
    first, second, k = reading_pairs(bench.reference, bench.specs, "test_top1")
    before = len(found)
    add(f"noise ceiling: reference test top-1, {pair_label(k)}", first, second)
    if len(found) > before and found[-1][1] > 0:
        _, measured, _, specs = found[-1]
        truth_seeds = bench.truth_seeds()
        truth_tau, truth_rho = spearman_brown(measured, truth_seeds / k)
        shown = f"{truth_seeds:g}" if truth_seeds.is_integer() else f"{truth_seeds:.1f} (harmonic mean over specs)"
        found.append((f"the truth (the mean of each spec's seeds, {shown}) against another such mean, from the line "
                      "above", truth_tau, truth_rho, specs))
        found.append(("noise ceiling of any predictor: the specs' own values against the truth, from the line above",
                      *predictor_ceiling(truth_tau), specs))
    add(f"search recipe, val top-1 after epoch {bench.epochs}, seed 0 against seed 1",
        *seed_pairs(bench.search, bench.specs, "val_top1"))
    return found


@dataclass
class Signal:
    """How much of one search-recipe reading's ranking of the specs is signal."""

    column: str
    noise: Noise  # one run's seed noise, pooled over the specs
    spread: float  # standard deviation of the specs' means
    own_spread: float  # the same less the noise in those means: how much the specs themselves differ
    seed_tau: float  # seed 0 against seed 1, over the specs with both
    seed_p: float  # one-sided permutation p-value of no signal (tau_test)
    reference_tau: float  # seed 0 (what a search reads) against the reference recipe's mean
    reference_p: float
    paired: int  # specs with seeds 0 and 1

    @property
    def epoch(self) -> int | None:
        return int(self.column.rsplit("_", 1)[1]) if self.column.startswith("val_top1_epoch_") else None


def epoch_signal(bench: Bench, permutations: int = PERMUTATIONS) -> list[Signal]:
    """A Signal for the validation top-1 after each epoch, then the final model's test top-1."""
    truth = bench.truth()
    found = []
    for column in [*(f"val_top1_epoch_{e}" for e in range(1, bench.epochs + 1)), "test_top1"]:
        runs = [[x for x in r if math.isfinite(x)] for r in bench.search_runs(column)]
        noise = Noise.pooled(runs)
        means = np.array([np.mean(r) if r else np.nan for r in runs])
        ok = np.isfinite(means)
        spread = float(np.std(means[ok], ddof=1))
        in_means = noise.sd ** 2 * np.mean([1 / len(r) for r in runs if r]) if noise.known else 0.0
        first, second = seed_pairs(bench.search, bench.specs, column)
        both = np.isfinite(first) & np.isfinite(second)
        seed_tau, seed_p = (tau_test(first[both], second[both], permutations) if both.sum() >= 3
                            else (math.nan, math.nan))
        one = np.array([r[0] if r else np.nan for r in runs])
        read = np.isfinite(one) & np.isfinite(truth)
        reference_tau, reference_p = tau_test(one[read], truth[read], permutations)
        found.append(Signal(column, noise, spread, math.sqrt(max(spread ** 2 - in_means, 0.0)),
                            seed_tau, seed_p, reference_tau, reference_p, int(both.sum())))
    return found


def first_signal(signals: list[Signal], p_value: Callable[[Signal], float], family: int | None = None) -> int | None:
    """The first epoch from which every epoch's ranking is told apart from no signal (its
    p-value, Bonferroni-corrected over `family` tests, default these epochs, below ALPHA);
    None: no such epoch. Asking it of every later epoch too keeps one lucky epoch of noise
    from being taken for the start of the signal."""
    epochs = [s for s in signals if s.epoch is not None]
    significant = [p_value(s) * (family or len(epochs)) < ALPHA for s in epochs]
    return next((epochs[i].epoch for i in range(len(epochs)) if all(significant[i:])), None)
