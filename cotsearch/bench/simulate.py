"""Simulated searches on a sweep's table, as NAS-Bench-201 is used: each trained trial a look-up
of one of the table's runs, so the noise a search sees is the real one. The strategies a
search can use (random sampling, TPE, NSGA-II, zero-cost pre-screening), confirmation at equal
compute, and how the outcomes are summed up over many seeded runs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import optuna

from cotsearch.bench.table import Bench, as_number
from cotsearch.errors import CotsearchError
from cotsearch.search.prescreen import cutoff
from cotsearch.search.sampler import make_sampler
from cotsearch.search.space import Confirm, Prescreen, SearchSpace, price
from cotsearch.stats import Interval, Noise, Verdict, choose, mean_interval, paired_difference, verdict

TOP_FRACTION = 0.05


class Lookup:
    """A search's view of the table: the spec of a sample, and a noisy measurement of it.

    A table that holds only a sample of the space's feasible specs (a sweep with --archs) has
    no run of most specs a sampler proposes. Such a proposal is read as the nearest spec of the
    table that this search has not trained yet (fewest differing choices; ties drawn at
    random), and the sampler is told that spec's choices with its reading, so it learns from
    what was measured. On an exhaustive table every feasible proposal is in the table and
    nothing is stood in for."""

    def __init__(self, bench: Bench, space: SearchSpace | None, rng: np.random.Generator, reading: str = "val_top1"):
        self.bench, self.space, self.rng, self.reading = bench, space, rng, reading
        self.index = {h: i for i, h in enumerate(bench.specs)}
        self.specs_of: dict[str, int | None] = {}
        self.feasible_of: dict[str, bool] = {}
        self.macs = np.array([as_number(bench.search[h][0]["macs"]) for h in bench.specs])
        self.used: dict[int, set[int]] = {}  # spec -> its table rows this search has read
        self.repeats = 0  # readings of a row this search had read already
        self.stand_ins = 0  # proposals the table lacks, read as their nearest table spec
        self._choices: list[dict] | None = None

    def spec(self, sampled: dict) -> int | None:
        """The table index of a sample's spec, or None if the table lacks it (or it is invalid)."""
        key = repr(sorted(sampled.items()))
        if key not in self.specs_of:
            try:
                self.specs_of[key] = self.index.get(self.space.spec_for(sampled).spec_hash())
            except CotsearchError:
                self.specs_of[key] = None
        return self.specs_of[key]

    def feasible(self, sampled: dict) -> bool:
        """Whether a sample is a valid spec within the space's budgets (as the searcher prices it)."""
        key = repr(sorted(sampled.items()))
        if key not in self.feasible_of:
            self.feasible_of[key] = price(self.space, sampled).reason is None
        return self.feasible_of[key]

    def choices(self, i: int) -> dict:
        """The table spec's sampled values (Optuna's encoded labels), read back from its row."""
        if self._choices is None:
            self._choices = [self._read_choices(self.bench.search[h][0]) for h in self.bench.specs]
        return self._choices[i]

    def _read_choices(self, row: dict) -> dict:
        """A row's sampled values, in the space's order; a `when` decides which were sampled
        (sweep.csv writes an inactive parameter and a None choice alike, as an empty cell)."""
        values: dict = {}
        for path, p in self.space.params.items():
            if not self.space._active(p, values):
                continue
            values[path] = (next(label for label in p.labels() if _cell(label) == row[path]) if p.choice is not None
                            else float(row[path]))
        return values

    def nearest(self, sampled: dict, exclude: set[int]) -> int | None:
        """The table spec closest to a sample, among those not in `exclude`: fewest choices
        that differ (a range parameter counts its distance over its range); ties at random."""
        def distance(i: int) -> float:
            other = self.choices(i)
            total = 0.0
            for path, p in self.space.params.items():
                a, b = sampled.get(path), other.get(path)
                if p.choice is not None or a is None or b is None:
                    total += a != b
                else:
                    low, high = p.int_range or p.float_range
                    total += abs(float(a) - float(b)) / (high - low or 1)
            return total

        left = [i for i in range(len(self.bench.specs)) if i not in exclude]
        if not left:
            return None
        distances = np.array([distance(i) for i in left])
        closest = np.flatnonzero(distances == distances.min())
        return left[int(closest[self.rng.integers(len(closest))])]

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
        return as_number(rows[k][self.reading])


def _cell(value) -> str:
    """A value as sweep.csv writes it (None as an empty cell)."""
    return "" if value is None else str(value)


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
                 admitted: set[int] | None = None, with_macs: bool = False) -> list[tuple[int, float]]:
    """A sampler run as StudySearcher runs it, with table look-ups for training: the (spec,
    reading) of each trained trial, in order. `with_macs`: two objectives, the reading
    (maximized) and MACs (minimized). A proposal that trains nothing (invalid, over the
    budget, screened out) is told top-1 0, as the searcher tells an infeasible trial, with its
    MACs where it has them: told nothing, TPE would propose it again and again."""
    directions = ["maximize", "minimize"] if with_macs else ["maximize"]
    study = optuna.create_study(directions=directions, sampler=sampler)
    measured: dict[int, float] = {}
    order = []
    misses = 0
    pool = admitted if admitted is not None else set(lookup.index.values())

    def values(i: int, reading: float) -> list[float]:
        return [reading, float(lookup.macs[i])] if with_macs else [reading]

    while len(order) < min(budget, len(pool)):
        if misses == lookup.space.search.max_infeasible:
            break  # as the searcher: the sampler keeps drawing specs it trained or may not train
        trial = study.ask()
        sampled = lookup.space.sample(trial)
        i = lookup.spec(sampled)
        stand_in = i is None and lookup.feasible(sampled)
        if stand_in:
            i = lookup.nearest(sampled, exclude=set(measured) | (set(lookup.index.values()) - pool))
        if i is None or i not in pool:
            cost = price(lookup.space, sampled).cost if with_macs else None
            study.tell(trial, [0.0, float(cost.macs if cost else lookup.macs.max())] if with_macs else 0.0)
            misses += 1
        elif i in measured:
            study.tell(trial, values(i, measured[i]))
            misses += 1
        else:
            measured[i] = lookup.measure(i)
            order.append((i, measured[i]))
            misses = 0
            if not stand_in:
                study.tell(trial, values(i, measured[i]))
                continue
            lookup.stand_ins += 1
            read = lookup.choices(i)
            if set(read) != set(trial.distributions):  # `when` made other parameters active: tell the proposal
                study.tell(trial, values(i, measured[i]))
                continue
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # the proposal; the spec read instead:
            study.add_trial(optuna.trial.create_trial(params=read, distributions=trial.distributions,
                                                      values=values(i, measured[i])))
    return order


def screened(lookup: Lookup, screen: Prescreen) -> set[int]:
    """The specs a pre-screen admits: those scoring at least the cutoff of `screen.pool`
    random draws from the table (its specs are the space's feasible ones)."""
    scores = np.array([as_number(lookup.bench.search[h][0][screen.proxy]) for h in lookup.bench.specs])
    pool = {int(i) for i in lookup.rng.integers(len(scores), size=screen.pool) if np.isfinite(scores[i])}
    threshold = cutoff([scores[i] for i in pool], screen.keep)
    return {i for i, s in enumerate(scores) if s >= threshold}


def search_order(lookup: Lookup, strategy: str, budget: int, run: int,
                 screen: Prescreen | None = None) -> list[tuple[int, float]]:
    """One simulated search's trained trials, in order: (spec, reading). strategy: random, tpe
    or nsga2 (seeded with `run`); with `screen`, the sampler trains only what it admits."""
    admitted = screened(lookup, screen) if screen else None
    if strategy == "random":
        picked = [int(i) for i in lookup.rng.permutation(len(lookup.bench.specs))
                  if admitted is None or i in admitted][:budget]
        return [(i, lookup.measure(i)) for i in picked]
    space = lookup.space
    settings = space.search.model_copy(update={"sampler": strategy, "seed": run, "trials": budget})
    sampler = make_sampler(space.model_copy(update={"search": settings}))
    return optuna_order(lookup, sampler, budget, admitted)


@dataclass
class Searches:
    """Seeded simulated searches of one strategy at one budget."""

    chosen: np.ndarray  # (runs, budget): the table index of the spec chosen after each trial, per run
    trained: np.ndarray  # (runs,): the trials each run trained; fewer than the budget where it ran out of specs


def run_searches(bench: Bench, space: SearchSpace | None, strategy: str, budget: int, runs: int,
                 screen: Prescreen | None = None, reading: str = "val_top1") -> Searches:
    chosen, trained = [], []
    for run in range(runs):
        lookup = Lookup(bench, space, np.random.default_rng(run), reading)
        order = search_order(lookup, strategy, budget, run, screen)
        chosen.append(_chosen_after_each(order, lookup.macs, budget))
        trained.append(len(order))
    return Searches(np.array(chosen), np.array(trained))


def simulate(bench: Bench, space: SearchSpace | None, strategy: str, budget: int, runs: int,
             screen: Prescreen | None = None, reading: str = "val_top1") -> np.ndarray:
    """(runs, budget): the table index of the spec chosen after each trained trial, per run
    (carried on to the budget where a run ended early)."""
    return run_searches(bench, space, strategy, budget, runs, screen, reading).chosen


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
                       confirm: Confirm, references: dict[str, int], reading: str = "val_top1",
                       screen: Prescreen | None = None) -> list[ConfirmedRun]:
    """Searches with confirmation at equal compute: the search phase trains `budget` less the
    confirmation's trainings (the references' are not counted: a search trains them anyway);
    with `screen`, it trains only what the pre-screen admits. Run r's search phase is the first
    trials of `simulate`'s run r (the same draws)."""
    phase = search_budget(budget, confirm)
    noise = table_noise(bench, reading)
    found = []
    for run in range(runs):
        lookup = Lookup(bench, space, np.random.default_rng(run), reading)
        found.append(confirm_run(lookup, search_order(lookup, strategy, phase, run, screen), confirm, references,
                                 noise))
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
        return {"mean": final.mean(), "ci": half_width(final), "low": np.percentile(final, 2.5),
                "high": np.percentile(final, 97.5), "regret": (truth.max() - final).mean(),
                "top": (final >= top).mean()}


def difference(a: Outcome, b: Outcome) -> Interval:
    """Strategy a's chosen reference top-1 minus b's, mean over their runs, with a 95% normal
    interval. Unpaired: two strategies' run r draw differently (only a strategy with
    confirmation shares its baseline's draws), so the two means' errors add."""
    x, y = a.top1[:, -1], b.top1[:, -1]
    return Interval(float(x.mean() - y.mean()), math.hypot(half_width(x), half_width(y)))


def half_width(values: np.ndarray) -> float:
    """Half-width of the normal 95% interval of a mean over simulated runs (hundreds of them)."""
    return 1.96 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
