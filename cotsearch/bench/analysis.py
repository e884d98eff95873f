"""`cotsearch analyze`: does the search work on a space? Read from two sweeps of it
(cotsearch.bench.sweep): one trained with the search's own recipe (what a search would
measure) and one with a longer reference recipe (what the chosen network is judged by).
Writes analysis.md with its plots:

- rank correlations of every zero-cost proxy, params, MACs and the search recipe's validation
  top-1 after each epoch with the reference's test top-1 (mean over its seeds); the
  reference's own seed-to-seed correlation is the noise ceiling;
- from which epoch the search recipe's ranking carries signal: per epoch (and for the final
  model's test top-1), the seed noise against the specs' spread, and the Kendall tau of seed 0
  against seed 1 and against the reference, each with a seeded permutation test of no signal;
- simulated searches on the search table: random sampling (distinct specs, uniformly), TPE and
  NSGA-II (with one objective, a genetic algorithm; both with the settings of `tune`,
  cotsearch.search.sampler.make_sampler, over the space's own parameters), and TPE with
  zero-cost pre-screening (`search.prescreen`), each with the search's budget of trained
  trials, over many seeds. Each lookup draws one of the table's seeds for its spec, so the
  noise a search sees is the real one; like the searcher, a repeated spec is told its earlier
  result and a spec outside the table (or screened out) is told top-1 0, neither counting
  towards the budget. Every trial trains fully (no ASHA): this measures the samplers. The
  chosen network (best reading; ties: fewer MACs) is judged by its reference top-1;
- random sampling and TPE with confirmation at equal compute (as cotsearch.search.confirm
  does it): the search phase gets the budget less the confirmation's trainings, its best few
  distinct specs and the reference presets are read again with draws the run has not made
  yet, and the choice and the verdicts against the references come from cotsearch.search.stats
  over those readings alone; each verdict is then checked against the reference recipe;
- each of those for the reading a search takes: `val_top1` (the recipe's validation split) or
  `test_top1` (the same runs on the test split, a stand-in for a larger validation split);
- where named specs (the space's reference presets, hand-picked placements) rank.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from pydantic import ValidationError
from scipy import stats as scipy_stats

from cotsearch.arch.yaml_io import format_validation_error
from cotsearch.bench.sweep import TABLE
from cotsearch.data.shape import KINDS
from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_text, save_figure
from cotsearch.search.prescreen import cutoff
from cotsearch.search.rundir import SPACE_FILE
from cotsearch.search.sampler import make_sampler
from cotsearch.search.space import PROXY_NAMES, Confirm, Prescreen, SearchSpace
from cotsearch.search.stats import Noise, Verdict, choose, mean_interval, paired_difference, verdict

TOP_FRACTION = 0.05
REPORT, CURVES, SCATTER = "analysis.md", "search_curves.png", "correlations.png"
READINGS = ("val_top1", "test_top1")  # what a simulated search reads of a run
TEST_IMAGES = {"fashion-mnist": 10_000, "mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000}  # their test splits
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


def tau_test(a, b, permutations: int = PERMUTATIONS) -> tuple[float, float]:
    """Kendall tau of a and b and the one-sided p-value of no association: the share of
    `permutations` random re-pairings of them (seeded) whose tau is at least as high."""
    result = scipy_stats.permutation_test((np.asarray(a, float), np.asarray(b, float)), kendall_tau,
                                          permutation_type="pairings", vectorized=True, batch=100,
                                          n_resamples=permutations, alternative="greater", rng=PERMUTATION_SEED)
    return float(result.statistic), float(result.pvalue)


def read_table(folder: Path) -> dict[str, list[dict]]:
    """Spec hash -> its complete rows in a sweep's sweep.csv."""
    path = Path(folder) / TABLE
    if not path.exists():
        raise CotsearchError(f"{folder}: no {TABLE}; run `cotsearch sweep` there first")
    with open(path, newline="") as f:
        table: dict[str, list[dict]] = {}
        for row in csv.DictReader(f):
            if row["state"] == "complete" and row["test_top1"]:
                table.setdefault(row["spec_hash"], []).append(row)
    return table


def read_space(folder: Path) -> SearchSpace:
    """The space a sweep was made with, or a one-line error naming its file."""
    path = Path(folder) / SPACE_FILE
    if not path.is_file():
        raise CotsearchError(f"{folder}: no {SPACE_FILE}; not a folder `cotsearch sweep` wrote")
    try:
        return SearchSpace.model_validate_json(path.read_bytes())
    except ValidationError as e:
        raise CotsearchError(format_validation_error(e, str(path), SearchSpace)) from None


def _number(text: str) -> float:
    return float(text) if text not in ("", None) else float("nan")


@dataclass
class Bench:
    """The specs in both tables, their rows, and their reference test top-1 (mean over seeds)."""

    specs: list[str]
    search: dict[str, list[dict]]
    reference: dict[str, list[dict]]
    epochs: int

    @classmethod
    def load(cls, search_dir: Path, reference_dir: Path) -> Bench:
        search, reference = read_table(search_dir), read_table(reference_dir)
        specs = sorted(set(search) & set(reference))
        if len(specs) < 3:
            raise CotsearchError(f"{search_dir} and {reference_dir} share {len(specs)} trained specs; need 3 or more")
        epochs = read_space(search_dir).train.epochs
        return cls(specs, {h: search[h] for h in specs}, {h: reference[h] for h in specs}, epochs)

    def truth(self) -> np.ndarray:
        return np.array([np.mean([_number(r["test_top1"]) for r in self.reference[h]]) for h in self.specs])

    def search_mean(self, column: str) -> np.ndarray:
        return np.array([np.mean([_number(r[column]) for r in self.search[h]]) for h in self.specs])

    def search_runs(self, column: str) -> list[list[float]]:
        """Every spec's readings of `column` in the search table, by seed."""
        return [[_number(r[column]) for r in sorted(self.search[h], key=lambda r: int(r["seed"]))] for h in self.specs]


def seed_noise(bench: Bench) -> tuple[float, float, int]:
    """(standard deviation of one reference run's test top-1 around its spec's mean, estimated
    from the specs with two seeds; standard deviation of the specs' mean top-1; pairs used)."""
    first, second = _pairs(bench.reference, bench.specs, "test_top1")
    noise = float(np.std(first - second, ddof=1) / math.sqrt(2)) if len(first) >= 2 else float("nan")
    return noise, float(np.std(bench.truth(), ddof=1)), len(first)


def choice_effects(bench: Bench, params: list[str]) -> list[tuple[str, str, int, float, float, float]]:
    """(parameter, value, specs, mean reference top-1, its 95% CI half-width, mean search val
    top-1) for every value of every parameter: on an exhaustive table of a space of choices,
    each value's mean is over every combination of the other choices (a main effect)."""
    truth, val = bench.truth(), bench.search_mean("val_top1")
    found = []
    for param in params:
        values = [str(bench.reference[h][0].get(param, "")) for h in bench.specs]
        for value in sorted(set(values)):
            pick = np.array([v == value for v in values])
            n = int(pick.sum())
            ci = 1.96 * float(np.std(truth[pick], ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
            found.append((param, value, n, float(truth[pick].mean()), ci, float(val[pick].mean())))
    return found


def _pairs(table: dict[str, list[dict]], specs: list[str], column: str) -> tuple[np.ndarray, np.ndarray]:
    """(seed-0 run, seed-1 run) of `column` for the specs with two seeds or more."""
    twice = [sorted(table[h], key=lambda r: int(r["seed"]))[:2] for h in specs if len(table[h]) >= 2]
    return np.array([_number(a[column]) for a, _ in twice]), np.array([_number(b[column]) for _, b in twice])


def correlations(bench: Bench) -> list[tuple[str, float, float, int]]:
    """(predictor, Kendall tau, Spearman rho, specs) against the reference top-1, then the
    noise ceilings (seed against seed)."""
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
        one = [[_number(r[column]) for r in sorted(bench.search[h], key=lambda r: int(r["seed"]))][0]
               for h in bench.specs]
        add(f"search recipe, val top-1 after epoch {epoch} (seed 0 alone)", np.array(one))
    add("noise ceiling: reference test top-1, seed 0 against seed 1", *_pairs(bench.reference, bench.specs, "test_top1"))
    add(f"search recipe, val top-1 after epoch {bench.epochs}, seed 0 against seed 1",
        *_pairs(bench.search, bench.specs, "val_top1"))
    return found


# -- from which epoch the ranking carries signal ----------------------------------------------

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
        first, second = _pairs(bench.search, bench.specs, column)
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


# -- simulated searches --------------------------------------------------------------------

class Lookup:
    """A search's view of the table: the spec of a sample, and a noisy measurement of it."""

    def __init__(self, bench: Bench, space: SearchSpace | None, rng: np.random.Generator, reading: str = "val_top1"):
        self.bench, self.space, self.rng, self.reading = bench, space, rng, reading
        self.index = {h: i for i, h in enumerate(bench.specs)}
        self.specs_of: dict[str, int | None] = {}
        self.macs = np.array([_number(bench.search[h][0]["macs"]) for h in bench.specs])
        self.used: dict[int, set[int]] = {}  # spec -> its table rows this search has read
        self.repeats = 0  # readings of a row this search had read already

    def spec(self, sampled: dict) -> int | None:
        """The table index of a sample's spec, or None if the table lacks it (or it is invalid)."""
        key = repr(sorted(sampled.items()))
        if key not in self.specs_of:
            try:
                self.specs_of[key] = self.index.get(self.space.spec_for(sampled).spec_hash())
            except CotsearchError:
                self.specs_of[key] = None
        return self.specs_of[key]

    def measure(self, i: int) -> float:
        """The reading of one of the spec's seeds, drawn at random among those this search has
        not read yet; once it has read them all, among all of them (a repeat)."""
        rows = self.bench.search[self.bench.specs[i]]
        used = self.used.setdefault(i, set())
        pool = [k for k in range(len(rows)) if k not in used]
        if not pool:
            self.repeats += 1
            pool = list(range(len(rows)))
        k = pool[self.rng.integers(len(pool))]
        used.add(k)
        return _number(rows[k][self.reading])


def _chosen_after_each(order: list[tuple[int, float]], macs: np.ndarray, budget: int) -> list[int]:
    """The chosen spec after each trained trial (best measured top-1; ties: fewer MACs),
    carried on to `budget` trials when the search ended early."""
    chosen, best = [], None
    for i, top1 in order:
        if best is None or (top1, -macs[i]) > (best[1], -macs[best[0]]):
            best = (i, top1)
        chosen.append(best[0])
    return (chosen + chosen[-1:] * budget)[:budget]


def optuna_order(lookup: Lookup, sampler: optuna.samplers.BaseSampler, budget: int,
                 admitted: set[int] | None = None) -> list[tuple[int, float]]:
    """A sampler run as StudySearcher runs it, with table look-ups for training: the (spec,
    reading) of each trained trial, in order."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    measured: dict[int, float] = {}
    order = []
    misses = 0
    while len(order) < min(budget, len(admitted if admitted is not None else lookup.index)):
        if misses == lookup.space.search.max_infeasible:
            break  # as the searcher: the sampler keeps drawing specs it trained or may not train
        trial = study.ask()
        i = lookup.spec(lookup.space.sample(trial))
        if i is None or (admitted is not None and i not in admitted):
            study.tell(trial, 0.0)
            misses += 1
        elif i in measured:
            study.tell(trial, measured[i])
            misses += 1
        else:
            measured[i] = lookup.measure(i)
            study.tell(trial, measured[i])
            order.append((i, measured[i]))
            misses = 0
    return order


def screened(lookup: Lookup, screen: Prescreen) -> set[int]:
    """The specs a pre-screen admits: those scoring at least the cutoff of `screen.pool`
    random draws from the table (its specs are the space's feasible ones)."""
    scores = np.array([_number(lookup.bench.search[h][0][screen.proxy]) for h in lookup.bench.specs])
    pool = {int(i) for i in lookup.rng.integers(len(scores), size=screen.pool) if np.isfinite(scores[i])}
    threshold = cutoff([scores[i] for i in pool], screen.keep)
    return {i for i, s in enumerate(scores) if s >= threshold}


def search_order(lookup: Lookup, strategy: str, budget: int, run: int,
                 screen: Prescreen | None = None) -> list[tuple[int, float]]:
    """One simulated search's trained trials, in order: (spec, reading). strategy: random, tpe
    or nsga2 (seeded with `run`); with `screen`, the sampler trains only what it admits."""
    if strategy == "random":
        picked = lookup.rng.permutation(len(lookup.bench.specs))[:budget]
        return [(int(i), lookup.measure(int(i))) for i in picked]
    space = lookup.space
    settings = space.search.model_copy(update={"sampler": strategy, "seed": run, "trials": budget})
    sampler = make_sampler(space.model_copy(update={"search": settings}))
    return optuna_order(lookup, sampler, budget, screened(lookup, screen) if screen else None)


def simulate(bench: Bench, space: SearchSpace | None, strategy: str, budget: int, runs: int,
             screen: Prescreen | None = None, reading: str = "val_top1") -> np.ndarray:
    """(runs, budget): the table index of the spec chosen after each trained trial, per run."""
    chosen = []
    for run in range(runs):
        lookup = Lookup(bench, space, np.random.default_rng(run), reading)
        chosen.append(_chosen_after_each(search_order(lookup, strategy, budget, run, screen), lookup.macs, budget))
    return np.array(chosen)


# -- confirmation --------------------------------------------------------------------------

@dataclass
class ConfirmedRun:
    """One simulated search with confirmation: what it chose and what it declared."""

    searched: int  # trials the search phase trained
    chosen: int
    verdicts: dict[str, Verdict | None]  # reference -> the chosen spec's verdict (None: it is that reference)
    noise: Noise  # pooled from the confirmation's readings, as the search pools it
    verdicts_at_table_noise: dict[str, Verdict | None]  # the same with the whole table's noise: fresh seeds' on average
    repeats: int  # candidates' confirmation readings that repeat a reading the run had made
    readings: int  # candidates' confirmation readings
    reference_repeats: int
    reference_readings: int


def search_budget(budget: int, confirm: Confirm) -> int:
    """What the search phase may train when the confirmation's trainings count in the budget."""
    left = budget - confirm.top * confirm.seeds
    if left < confirm.top:
        raise CotsearchError(f"--confirm-top {confirm.top} --confirm-seeds {confirm.seeds}: the confirmation's "
                             f"{confirm.top * confirm.seeds} trainings leave {left} of the budget of {budget} to the "
                             f"search; it needs at least {confirm.top}, one per candidate (raise --budget)")
    return left


def confirm_run(lookup: Lookup, order: list[tuple[int, float]], confirm: Confirm, references: dict[str, int],
                whole_noise: Noise) -> ConfirmedRun:
    """The best `confirm.top` distinct specs of a search phase (by the reading it saw; ties:
    fewer MACs) and every reference, each read `confirm.seeds` more times (slots 0, 1, ...,
    paired as the search's seeds are); the choice and the verdicts from those readings alone,
    and the verdicts again with `whole_noise` (the table's seed noise) for their intervals."""
    ranked = sorted(order, key=lambda o: (-o[1], lookup.macs[o[0]]))
    candidates = list(dict.fromkeys(i for i, _ in ranked))[: confirm.top]
    start = lookup.repeats
    runs = {i: {s: lookup.measure(i) for s in range(confirm.seeds)} for i in candidates}
    repeats = lookup.repeats - start
    others = [i for i in dict.fromkeys(references.values()) if i not in runs]
    runs.update({i: {s: lookup.measure(i) for s in range(confirm.seeds)} for i in others})
    pooled = Noise.pooled([list(r.values()) for r in runs.values()])
    chosen = choose({i: mean_interval(list(runs[i].values()), pooled) for i in candidates},
                    {i: lookup.macs[i] for i in candidates}, pooled, {i: confirm.seeds for i in candidates})

    def verdicts(noise: Noise) -> dict[str, Verdict | None]:
        return {label: None if ref == chosen else verdict(paired_difference(runs[chosen], runs[ref], noise))
                for label, ref in references.items()}

    return ConfirmedRun(len(order), chosen, verdicts(pooled), pooled, verdicts(whole_noise), repeats,
                        len(candidates) * confirm.seeds, lookup.repeats - start - repeats, len(others) * confirm.seeds)


def simulate_confirmed(bench: Bench, space: SearchSpace | None, strategy: str, budget: int, runs: int,
                       confirm: Confirm, references: dict[str, int], reading: str = "val_top1") -> list[ConfirmedRun]:
    """Searches with confirmation at equal compute: the search phase trains `budget` less the
    confirmation's trainings (the references' are not counted: a search trains them anyway).
    Run r's search phase is the first trials of `simulate`'s run r (the same draws)."""
    phase = search_budget(budget, confirm)
    noise = table_noise(bench, reading)
    found = []
    for run in range(runs):
        lookup = Lookup(bench, space, np.random.default_rng(run), reading)
        found.append(confirm_run(lookup, search_order(lookup, strategy, phase, run), confirm, references, noise))
    return found


def table_noise(bench: Bench, reading: str) -> Noise:
    """One run's seed noise of a reading, pooled over every spec of the search table."""
    return Noise.pooled([[x for x in r if math.isfinite(x)] for r in bench.search_runs(reading)])


@dataclass
class VerdictCount:
    """How often a strategy's chosen spec was declared to beat (or lose to) one reference, and
    how often the reference recipe agrees (the chosen spec's reference top-1 is higher, or lower)."""

    reference: str
    runs: int
    itself: int  # runs whose chosen spec is this reference
    beats: int
    beats_right: int
    loses: int
    loses_right: int
    truly_better: int  # runs compared whose chosen spec the reference recipe ranks higher

    @property
    def compared(self) -> int:
        return self.runs - self.itself

    @property
    def ties(self) -> int:
        return self.compared - self.beats - self.loses


def verdict_counts(confirmed: list[ConfirmedRun], truth: np.ndarray, references: dict[str, int],
                   at_table_noise: bool = False) -> list[VerdictCount]:
    """Per reference, the verdicts the runs declared (with the noise they pooled, or with the
    table's) counted against the reference recipe's truth."""
    found = []
    for label, ref in references.items():
        said = [(v[label], truth[r.chosen] - truth[ref]) for r in confirmed
                for v in [r.verdicts_at_table_noise if at_table_noise else r.verdicts] if v[label] is not None]
        found.append(VerdictCount(label, len(confirmed), len(confirmed) - len(said),
                                  sum(v == "beats" for v, _ in said), sum(v == "beats" and d > 0 for v, d in said),
                                  sum(v == "loses to" for v, _ in said),
                                  sum(v == "loses to" and d < 0 for v, d in said), sum(d > 0 for _, d in said)))
    return found


@dataclass
class Outcome:
    name: str
    top1: np.ndarray  # (runs, trials): the chosen spec's reference top-1 after each trial; with confirmation, (runs, 1)
    trainings: tuple[int, int]  # (search phase, confirmation), the confirmation's counted in the budget
    confirmed: list[ConfirmedRun] | None = None
    baseline: str | None = None  # the search-only strategy whose runs share this one's draws

    def summary(self, truth: np.ndarray) -> dict:
        final = self.top1[:, -1]
        top = np.sort(truth)[::-1][math.ceil(TOP_FRACTION * len(truth)) - 1]
        return {"mean": final.mean(), "ci": _half(final), "low": np.percentile(final, 2.5),
                "high": np.percentile(final, 97.5), "regret": (truth.max() - final).mean(),
                "top": (final >= top).mean()}


def _half(values: np.ndarray) -> float:
    """Half-width of the normal 95% interval of a mean over simulated runs (hundreds of them)."""
    return 1.96 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def named_specs(space: SearchSpace, bench: Bench, named: list[str]) -> dict[str, str]:
    """Label -> spec hash, of the space's reference presets and of each NAME (a preset) or
    LABEL=V1,V2,... (a value for each of the space's parameters, in order)."""
    from cotsearch.arch.load import load_spec

    found = {}
    for item in [*space.search.references, *named]:
        label, _, values = item.partition("=")
        if not values:
            found[label] = space.data_shape().apply(load_spec(label)).spec_hash()
            continue
        values = values.split(",")
        if len(values) != len(space.params):
            raise CotsearchError(f"--named {item}: give {len(space.params)} values, one per parameter "
                                 f"({', '.join(space.params)})")
        sampled = {}
        for (path, param), value in zip(space.params.items(), values):
            labels = [str(v) for v in param.labels()] if param.choice is not None else []
            if value not in labels:
                raise CotsearchError(f"--named {item}: {value!r} is not one of {path}'s choices {labels}")
            sampled[path] = param.labels()[labels.index(value)]
        found[label] = space.spec_for(sampled).spec_hash()
    return {label: h for label, h in found.items() if h in bench.specs}


# -- plots ---------------------------------------------------------------------------------

def plot_curves(outcomes: dict[str, list[Outcome]], truth: np.ndarray, named: dict[str, float]) -> Figure:
    """Per reading, a row: reference top-1 of the chosen spec (95% CI of the mean), regret and
    how often it is in the top 5%, against the trainings spent; a search with confirmation is
    one point at its whole budget."""
    fig = Figure(figsize=(16, 4.2 * len(outcomes)))
    grid = fig.subplots(len(outcomes), 3, squeeze=False)
    top = np.sort(truth)[::-1][math.ceil(TOP_FRACTION * len(truth)) - 1]
    for axes, (reading, found) in zip(grid, outcomes.items()):
        for i, outcome in enumerate(found):
            style = {"color": f"C{i % 10}", "label": outcome.name}
            per_run = (outcome.top1, truth.max() - outcome.top1, (outcome.top1 >= top).astype(float))
            if outcome.confirmed is not None:
                at = sum(outcome.trainings)
                for ax, values in zip(axes, per_run):
                    ax.errorbar([at], [values.mean()], yerr=[_half(values[:, -1])], fmt="D", ms=7, capsize=3, **style)
                continue
            trials = np.arange(1, outcome.top1.shape[1] + 1)
            style["ls"] = "--" if "pre-screened" in outcome.name else "-"
            for ax, values in zip(axes, per_run):
                ax.plot(trials, values.mean(0), **style)
            half = np.array([_half(column) for column in outcome.top1.T])
            axes[0].fill_between(trials, outcome.top1.mean(0) - half, outcome.top1.mean(0) + half,
                                 color=style["color"], alpha=0.12)
        for label, value in named.items():
            axes[0].axhline(value, ls=":", lw=1, c="grey")
            axes[0].annotate(label, (1, value), fontsize=7, color="grey", va="bottom")
        titles = ("reference top-1 of the chosen spec", "regret to the best spec",
                  f"chosen spec in the top {TOP_FRACTION:.0%}")
        for ax, title in zip(axes, titles):
            ax.set_title(f"{title}\n(reading {reading})", fontsize=10)
            ax.set_xlabel("trainings (trials, and confirmation runs)")
            ax.grid(alpha=0.3)
            ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*grid[0][0].get_legend_handles_labels(), fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    return fig


def plot_predictors(bench: Bench, predictors: dict[str, np.ndarray]) -> Figure:
    """Each predictor against the reference top-1, one panel each."""
    truth = bench.truth()
    cols = 3
    rows = -(-len(predictors) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, (label, values) in zip(axes, predictors.items()):
        ax.scatter(values, truth, s=12)
        ok = np.isfinite(values)
        ax.set_title(f"{label}: tau {kendall_tau(values[ok], truth[ok]):+.2f}", fontsize=9)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_ylabel("reference test top-1")
        ax.grid(alpha=0.3)
        if values[ok].min() > 0 and values[ok].max() > 8 * values[ok].min():
            ax.set_xscale("log")  # synflow spans orders of magnitude
    for ax in axes[len(predictors):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


# -- the analysis ----------------------------------------------------------------------------

@dataclass
class Analysis:
    report: Path
    signal: list[Signal]
    outcomes: dict[str, list[Outcome]]  # reading -> the strategies' outcomes
    truth: np.ndarray
    val_images: int


def reading_label(space: SearchSpace, reading: str) -> str:
    """What a reading is, in words: its images, and for test_top1 what it stands in for."""
    if reading == "val_top1":
        return f"val_top1, the recipe's {space.train.val_size:,} validation images"
    images = TEST_IMAGES.get(KINDS.get(space.train.data.partition(":")[0].lower(), ""))
    size = f"{images:,}-image " if images else ""
    return (f"test_top1 as a stand-in for a {size}validation split: the same runs read on the test split, the images "
            "the reference recipe is judged on")


def run_analysis(search_dir: Path, reference_dir: Path, out: Path, runs: int = 200, budget: int | None = None,
                 named: list[str] | None = None, prescreen: list[str] | None = None, pool: int = 200,
                 keep: float = 0.25, command: str = "", readings: list[str] | None = None,
                 confirm_top: int | None = None, confirm_seeds: int | None = None) -> Analysis:
    """Write analysis.md and its plots to `out`. The confirmation simulated is the space's
    search.confirm (Confirm()'s defaults where it is off) with `confirm_top` candidates and
    `confirm_seeds` seeds where given; when neither is given and the budget cannot hold it, it
    is left out with a note."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    readings = list(dict.fromkeys(readings or ["val_top1"]))
    for reading in readings:
        if reading not in READINGS:
            raise CotsearchError(f"--reading {reading}: expected one of {', '.join(READINGS)}")
    bench = Bench.load(search_dir, reference_dir)
    space = read_space(search_dir)
    budget = budget or space.search.trials
    asked = confirm_top is not None or confirm_seeds is not None
    given = {k: v for k, v in (("top", confirm_top), ("seeds", confirm_seeds)) if v is not None}
    confirm = Confirm.model_validate({**(space.search.confirm or Confirm()).model_dump(), **given})
    try:
        confirmation = (search_budget(budget, confirm), confirm.top * confirm.seeds)
    except CotsearchError:
        if asked:
            raise  # before any work: the user's numbers do not fit
        confirmation = None  # the space's default does not fit this budget: the report says so
    truth = bench.truth()
    names = named_specs(space, bench, named or [])
    references = {label: bench.specs.index(h) for label, h in names.items() if label in space.search.references}
    outcomes: dict[str, list[Outcome]] = {}
    for reading in readings:
        found = [Outcome(name, truth[simulate(bench, space, name, budget, runs, reading=reading)], (budget, 0))
                 for name in ("random", "tpe", "nsga2")]
        for base in ("random", "tpe") if confirmation else ():
            confirmed = simulate_confirmed(bench, space, base, budget, runs, confirm, references, reading)
            found.append(Outcome(f"{base} + confirmation", truth[[[r.chosen] for r in confirmed]], confirmation,
                                 confirmed, base))
        for proxy in prescreen if prescreen is not None else PROXY_NAMES:
            screen = Prescreen(proxy=proxy, pool=pool, keep=keep)
            found.append(Outcome(f"tpe, pre-screened by {proxy}",
                                 truth[simulate(bench, space, "tpe", budget, runs, screen, reading)], (budget, 0)))
        outcomes[reading] = found
    signal = epoch_signal(bench)
    labels = {reading: reading_label(space, reading) for reading in readings}
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plot_curves(outcomes, truth, {k: truth[bench.specs.index(h)] for k, h in names.items()}), out / CURVES)
    predictors = {name: bench.search_mean(name) for name in PROXY_NAMES if name in bench.search[bench.specs[0]][0]}
    predictors[f"val top-1 after epoch {bench.epochs}"] = bench.search_mean("val_top1")
    save_figure(plot_predictors(bench, predictors), out / SCATTER)
    text = _markdown(bench, space, read_space(reference_dir), outcomes, signal, labels, names, references, confirm,
                     confirmation is not None, budget, runs, pool, keep, command)
    atomic_write_text(out / REPORT, text)
    return Analysis(out / REPORT, signal, outcomes, truth, space.train.val_size)


def analyze(*args, **kwargs) -> Path:
    """run_analysis, for a caller that wants the report's path only."""
    return run_analysis(*args, **kwargs).report


def _pct(x: float) -> str:
    return f"{x:.2%}"


def _share(count: int, of: int) -> str:
    return f"{count / of:.0%} ({count})" if of else "-"


def _recipe(space: SearchSpace, table: dict[str, list[dict]]) -> str:
    t = space.train
    seeds = sorted({len(rows) for rows in table.values()})
    return (f"{t.data}, {t.epochs} epochs on {t.train_limit or 'all'} training images (val {t.val_size}, batch "
            f"{t.batch_size}), {len(table)} specs with {' or '.join(map(str, seeds))} seeds")


def signal_rows(signal: list[Signal], val_images: int) -> list[tuple[str, ...]]:
    """The per-epoch signal table's rows (points for spreads; p-values as computed)."""
    def label(s: Signal) -> str:
        return (f"val top-1, epoch {s.epoch} ({val_images:,} images)" if s.epoch is not None
                else "test top-1, final model (test split)")

    return [(label(s), f"{100 * s.noise.sd:.2f}", f"{100 * s.spread:.2f}", f"{100 * s.own_spread:.2f}",
             f"{s.seed_tau:+.3f}", f"{s.seed_p:.4f}", f"{s.reference_tau:+.3f}", f"{s.reference_p:.4f}")
            for s in signal]


SIGNAL_HEADER = ("reading", "seed noise (sd)", "spread of spec means", "specs' own spread", "tau seed 0 vs 1", "p",
                 "tau vs reference", "p")  # spreads and noise in points


def signal_verdict(signal: list[Signal]) -> str:
    """The section's answer in one sentence: the first epoch with signal, seed against seed and
    against the reference."""
    family = len(signal)

    def epoch(found: int | None) -> str:
        return f"from epoch {found} on" if found is not None else "at no epoch"

    seed = first_signal(signal, lambda s: s.seed_p, family)
    reference = first_signal(signal, lambda s: s.reference_p, family)
    return (f"Seed 0 against seed 1, the search recipe's validation ranking carries signal {epoch(seed)}; against "
            f"the reference recipe, {epoch(reference)} (a p below {ALPHA / family:.4f}, {ALPHA:.0%} Bonferroni-"
            f"corrected over the {family} readings, at that epoch and at every later one).")


def _markdown(bench: Bench, space: SearchSpace, reference_space: SearchSpace, outcomes: dict[str, list[Outcome]],
              signal: list[Signal], labels: dict[str, str], names: dict[str, str], references: dict[str, int],
              confirm: Confirm, fits: bool, budget: int, runs: int, pool: int, keep: float, command: str) -> str:
    truth = bench.truth()
    n = len(bench.specs)
    lines = [f"# Does the search work? {space.name}", "",
             f"Made by `{command}`." if command else "", "",
             f"- search recipe: {_recipe(space, bench.search)}",
             f"- reference recipe: {_recipe(reference_space, bench.reference)}",
             f"- {n} specs in both; the best reaches {_pct(truth.max())} reference test top-1, the median "
             f"{_pct(float(np.median(truth)))}, the worst {_pct(truth.min())}", "",
             "## Rank correlation with the reference recipe's test top-1 (mean over its seeds)", "",
             "| predictor | Kendall tau | Spearman | specs |", "|---|---|---|---|"]
    lines += [f"| {label} | {tau:+.3f} | {rho:+.3f} | {count} |" for label, tau, rho, count in correlations(bench)]
    noise, spread, pairs = seed_noise(bench)
    lines += ["", f"Each predictor against the reference: ![predictors]({SCATTER})", "",
              f"How much of the reference's ranking is signal: one run's test top-1 varies by {100 * noise:.2f} points "
              f"(standard deviation, from the {pairs} specs run with two seeds); the specs' means spread by "
              f"{100 * spread:.2f} points. "
              "Where these are alike, no predictor can rank the specs much better than the noise ceiling above.", ""]
    lines += _signal_section(signal, space.train.val_size)
    lines += ["## Which choices matter", "",
              "Mean over the specs with each value (on an exhaustive table, over every combination of the other "
              "choices), with the 95% confidence interval of the reference mean.", "",
              "| parameter | value | specs | reference test top-1 | 95% CI | search val top-1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {param} | {value} | {count} | {_pct(mean)} | ±{ci:.2%} | {_pct(val_mean)} |"
              for param, value, count, mean, ci, val_mean in choice_effects(bench, list(space.params))]
    lines += _search_section(bench, outcomes, labels, references, confirm, fits, budget, runs, pool, keep)
    lines += ["", "## Named specs", "",
              "| spec | hash | reference top-1 | rank (of {}) | search val top-1 (mean) | rank under the search recipe |"
              .format(n), "|---|---|---|---|---|---|"]
    val = bench.search_mean("val_top1")
    truth_rank, val_rank = n + 1 - ranks(truth), n + 1 - ranks(val)
    for label, h in names.items():
        i = bench.specs.index(h)
        lines.append(f"| {label} | {h} | {_pct(truth[i])} | {truth_rank[i]:g} | {_pct(val[i])} | {val_rank[i]:g} |")
    return "\n".join(lines) + "\n"


def _signal_section(signal: list[Signal], val_images: int) -> list[str]:
    lines = ["## From which epoch the search recipe's ranking carries signal", "",
             "What ASHA's grace period should follow: a trial cut on an epoch whose ranking is noise is cut at "
             "random. Per reading, in points: one run's seed noise (standard deviation, pooled over the specs, "
             "`stats.Noise`); the spread of the specs' means (standard deviation) and that spread less the noise "
             "left in those means (how much the specs themselves differ); the Kendall tau of seed 0 against "
             "seed 1 (does the ranking repeat?) and of seed 0, what a search reads, against the reference recipe's "
             "mean (is it the right ranking?). Each p is one-sided, "
             f"of no signal: the share of {PERMUTATIONS:,} random re-pairings of the two columns over the specs "
             f"(a permutation test, seed {PERMUTATION_SEED}) whose tau is at least as high.", "",
             "| " + " | ".join(SIGNAL_HEADER) + " |", "|" + "---|" * len(SIGNAL_HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in signal_rows(signal, val_images)]
    specs = signal[0].paired if signal else 0
    return lines + ["", f"{signal_verdict(signal)} Seed against seed is over the {specs} specs with both seeds. "
                    "The test top-1 is read once, at the end: it says how a larger validation split would rank "
                    "the final models, not from which epoch.", ""]


def _search_section(bench: Bench, outcomes: dict[str, list[Outcome]], labels: dict[str, str],
                    references: dict[str, int], confirm: Confirm, fits: bool, budget: int, runs: int, pool: int,
                    keep: float) -> list[str]:
    n = len(bench.specs)
    lines = ["", f"## Simulated searches: {budget} trainings, {runs} seeds each", "",
             f"The chosen spec's reference test top-1 after {budget} trainings: mean, its 95% confidence interval, "
             f"the range of the middle 95% of runs; regret to the best of the {n}; how often it is in the top "
             f"{TOP_FRACTION:.0%} (the best {math.ceil(TOP_FRACTION * n)} of the {n}). Pre-screening: a pool of {pool} "
             f"random draws, the best {keep:.0%} of its distinct specs admitted.", ""]
    lines += _confirmation_text(bench, references, confirm, budget) if fits else [
        f"No search with confirmation was simulated: the space's confirmation ({confirm.top} candidates, "
        f"{confirm.seeds} seeds each) does not fit a budget of {budget} trainings; give `--confirm-top` and "
        "`--confirm-seeds`, or a larger `--budget`.", ""]
    for reading, found in outcomes.items():
        lines += _reading_section(bench, reading, labels[reading], found, bench.truth(), references)
    return lines + [f"![search curves]({CURVES})"]


def _confirmation_text(bench: Bench, references: dict[str, int], confirm: Confirm, budget: int) -> list[str]:
    phase = budget - confirm.top * confirm.seeds
    seeds = min(len(rows) for rows in bench.search.values())
    fresh = min(confirm.seeds, seeds - 1)
    return [f"**Confirmation, at equal compute.** The search phase trains {phase} trials; its best {confirm.top} "
            f"distinct specs by the reading it saw are read {confirm.seeds} more times each "
            f"({confirm.top * confirm.seeds} trainings, counted in the {budget}), and so are the reference presets "
            f"({', '.join(references) or 'none in the table'}; not counted: a search trains them anyway). As "
            "the search does (cotsearch.search.confirm): the seed noise is pooled from those readings alone "
            "(`stats.Noise.pooled`), the choice is the candidate with the best mean of its confirmation readings, "
            "ties within the interval going to the one with fewer MACs (`stats.choose`), and the search's own "
            "reading is left out (it was chosen for being high). Run r of a strategy with confirmation has the same "
            "draws as run r without it, so its search phase is the first trials of that run.", "",
            f"**How the readings are drawn.** The search table has at least {seeds} seeds of every spec. Every "
            "reading is one of the spec's seeds drawn at random among those the run has not read yet; once the run "
            "has read them all, among all of them: a repeat of a reading it already has. With "
            f"{seeds} seeds, the {confirm.seeds} confirmation readings of a candidate (whose search phase read one "
            f"seed) are {fresh} fresh and {confirm.seeds - fresh} repeated. Repeats understate what confirmation "
            "can do: a repeat adds no information to the spec's mean (or brings back the search's own, "
            "favourably chosen, reading), so the choice is noisier than with truly fresh seeds. And a repeat "
            "agrees exactly with the reading it repeats, so the pooled noise comes out too small and the intervals "
            "too narrow: the verdicts are more confident than fresh seeds would make them (below: the noise the "
            "confirmation pooled, against the table's own).", "",
            f"TPE starts with min(10, trials) random samples (`make_sampler`): a search phase of {phase} trials "
            f"is {'random sampling all through' if phase <= 10 else f'TPE for its last {phase - 10}'}.", ""]


def _reading_section(bench: Bench, reading: str, label: str, found: list[Outcome], truth: np.ndarray,
                     references: dict[str, int]) -> list[str]:
    lines = [f"### Reading {label}", ""]
    if reading == "test_top1":
        lines += ["A search reading `test_top1` here reads the very images its choice is then judged on (the "
                  "reference's test top-1 is measured on the same test split): that can only flatter this reading. "
                  "Read these rows as an upper bound on what a validation split of that size would do.", ""]
    lines += ["| strategy | trainings (search + confirmation) | reference top-1 | 95% CI of the mean "
              "| middle 95% of runs | regret (points) | in the top 5% |", "|---|---|---|---|---|---|---|"]
    for outcome in found:
        s = outcome.summary(truth)
        lines.append(f"| {outcome.name} | {outcome.trainings[0]} + {outcome.trainings[1]} | {_pct(s['mean'])} | "
                     f"±{s['ci']:.2%} | {_pct(s['low'])} to {_pct(s['high'])} | {100 * s['regret']:.2f} | "
                     f"{s['top']:.0%} |")
    whole = table_noise(bench, reading)
    by_name = {o.name: o for o in found}
    lines.append("")
    for outcome in (o for o in found if o.confirmed is not None):
        confirmed = outcome.confirmed
        gain = outcome.top1[:, -1] - by_name[outcome.baseline].top1[:, -1]
        repeats, readings = sum(r.repeats for r in confirmed), sum(r.readings for r in confirmed)
        ref_repeats = sum(r.reference_repeats for r in confirmed)
        ref_readings = sum(r.reference_readings for r in confirmed)
        pooled = np.array([r.noise.sd for r in confirmed if r.noise.known])
        lines.append(f"- {outcome.name} against {outcome.baseline} alone, paired over the same runs: "
                     f"{100 * gain.mean():+.2f} ± {100 * _half(gain):.2f} points of reference top-1. "
                     f"Repeats: {_share(repeats, readings)} of the candidates' {readings:,} confirmation readings, "
                     f"{_share(ref_repeats, ref_readings)} of the references' {ref_readings:,}. Pooled noise the "
                     f"confirmation saw: {100 * np.median(pooled):.2f} points (median over runs; "
                     f"{confirmed[0].noise.dof} degrees of freedom), against {100 * whole.sd:.2f} from the "
                     "whole table.")
    if references and any(o.confirmed for o in found):
        lines += ["", "Whether the declared winner beats the references: the chosen spec against each reference "
                  "preset, paired over the confirmation's slots (`stats.paired_difference`, `stats.verdict`), then "
                  "checked against the reference recipe (right: the chosen spec's reference top-1 is higher for "
                  "'beats', lower for 'loses to'). Intervals from the noise each run pooled (what the search would "
                  "state), and again from the whole table's noise (what fresh seeds would pool on average; the "
                  "repeats above make the first too small). The reference recipe is noisy itself (see the noise "
                  "ceiling above): a difference of a few tenths of a point there is not certain either.", "",
                  "| strategy | reference | intervals from | runs compared | 'beats' declared | of which right "
                  "| 'loses to' declared | of which right | 'ties' | chosen truly better | chosen is the reference |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for outcome in (o for o in found if o.confirmed is not None):
            for at_table, source in ((False, "the run's pooled noise"), (True, f"the table's ({100 * whole.sd:.2f})")):
                for c in verdict_counts(outcome.confirmed, truth, references, at_table):
                    lines.append(f"| {outcome.name} | {c.reference} | {source} | {c.compared} | "
                                 f"{_share(c.beats, c.compared)} | {_share(c.beats_right, c.beats)} | "
                                 f"{_share(c.loses, c.compared)} | {_share(c.loses_right, c.loses)} | "
                                 f"{_share(c.ties, c.compared)} | {_share(c.truly_better, c.compared)} | {c.itself} |")
    return lines + [""]
