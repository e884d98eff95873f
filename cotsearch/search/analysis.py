"""`cotsearch analyze`: does the search work on a space? Read from two sweeps of it
(cotsearch.search.sweep): one trained with the search's own recipe (what a search would
measure) and one with a longer reference recipe (what the chosen network is judged by).
Writes analysis.md with its plots:

- rank correlations of every zero-cost proxy, params, MACs and the search recipe's validation
  top-1 after each epoch with the reference's test top-1 (mean over its seeds); the
  reference's own seed-to-seed correlation is the noise ceiling;
- simulated searches on the search table: random sampling (distinct specs, uniformly), TPE and
  NSGA-II (with one objective, a genetic algorithm; both with the settings of `tune`,
  cotsearch.search.searcher.make_sampler, over the space's own parameters), and TPE with
  zero-cost pre-screening (`search.prescreen`), each with the search's budget of trained
  trials, over many seeds. Each lookup draws one of the table's seeds for its spec, so the
  noise a search sees is the real one; like the searcher, a repeated spec is told its earlier
  result and a spec outside the table (or screened out) is told top-1 0, neither counting
  towards the budget. Every trial trains fully (no ASHA): this measures the samplers. The
  chosen network (best validation top-1; ties: fewer MACs) is judged by its reference top-1;
- where named specs (the space's reference presets, hand-picked placements) rank.

Kendall's tau (tau-b, ties counted as scipy.stats.kendalltau does) and Spearman's rho (Pearson
on average ranks) are written here with NumPy: scipy is not a dependency of cotsearch, and
each is a few lines.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_text, save_figure
from cotsearch.search.prescreen import cutoff
from cotsearch.search.rundir import SPACE_FILE
from cotsearch.search.searcher import make_sampler
from cotsearch.search.space import PROXY_NAMES, Prescreen, SearchSpace
from cotsearch.search.sweep import TABLE

TOP_FRACTION = 0.05
REPORT, CURVES, SCATTER = "analysis.md", "search_curves.png", "correlations.png"


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(a, b) -> float:
    return float(np.corrcoef(ranks(np.asarray(a, float)), ranks(np.asarray(b, float)))[0, 1])


def kendall_tau(a, b) -> float:
    """tau-b: sum of sign(a_i - a_j) sign(b_i - b_j) over pairs, over the square root of the
    pairs not tied in a times the pairs not tied in b."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    da, db = np.sign(a[:, None] - a[None, :]), np.sign(b[:, None] - b[None, :])
    return float((da * db).sum() / math.sqrt((da * da).sum() * (db * db).sum()))


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
    return SearchSpace.model_validate_json((Path(folder) / SPACE_FILE).read_text())


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


class Lookup:
    """A search's view of the table: the spec of a sample, and a noisy measurement of it."""

    def __init__(self, bench: Bench, space: SearchSpace, rng: np.random.Generator):
        self.bench, self.space, self.rng = bench, space, rng
        self.index = {h: i for i, h in enumerate(bench.specs)}
        self.specs_of: dict[str, int | None] = {}
        self.macs = np.array([_number(bench.search[h][0]["macs"]) for h in bench.specs])

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
        """The final validation top-1 of one of the spec's seeds, drawn at random."""
        rows = self.bench.search[self.bench.specs[i]]
        return _number(rows[self.rng.integers(len(rows))]["val_top1"])


def _chosen_after_each(order: list[tuple[int, float]], macs: np.ndarray, budget: int) -> list[int]:
    """The chosen spec after each trained trial (best measured top-1; ties: fewer MACs),
    carried on to `budget` trials when the search ended early."""
    chosen, best = [], None
    for i, top1 in order:
        if best is None or (top1, -macs[i]) > (best[1], -macs[best[0]]):
            best = (i, top1)
        chosen.append(best[0])
    return (chosen + chosen[-1:] * budget)[:budget]


def random_search(lookup: Lookup, budget: int) -> list[int]:
    order = lookup.rng.permutation(len(lookup.bench.specs))[:budget]
    return _chosen_after_each([(int(i), lookup.measure(int(i))) for i in order], lookup.macs, budget)


def optuna_search(lookup: Lookup, sampler: optuna.samplers.BaseSampler, budget: int,
                  admitted: set[int] | None = None) -> list[int]:
    """A sampler run as StudySearcher runs it, with table look-ups for training."""
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
    return _chosen_after_each(order, lookup.macs, budget)


def screened(lookup: Lookup, screen: Prescreen) -> set[int]:
    """The specs a pre-screen admits: those scoring at least the cutoff of `screen.pool`
    random draws from the table (its specs are the space's feasible ones)."""
    scores = np.array([_number(lookup.bench.search[h][0][screen.proxy]) for h in lookup.bench.specs])
    pool = {int(i) for i in lookup.rng.integers(len(scores), size=screen.pool) if np.isfinite(scores[i])}
    threshold = cutoff([scores[i] for i in pool], screen.keep)
    return {i for i, s in enumerate(scores) if s >= threshold}


def simulate(bench: Bench, space: SearchSpace, strategy: str, budget: int, runs: int,
             screen: Prescreen | None = None) -> np.ndarray:
    """(runs, budget): the table index of the spec chosen after each trained trial, per run.
    strategy: random, tpe or nsga2; with `screen`, the sampler trains only what it admits."""
    chosen = []
    for run in range(runs):
        lookup = Lookup(bench, space, np.random.default_rng(run))
        if strategy == "random":
            chosen.append(random_search(lookup, budget))
            continue
        settings = space.search.model_copy(update={"sampler": strategy, "seed": run, "trials": budget})
        sampler = make_sampler(space.model_copy(update={"search": settings}))
        chosen.append(optuna_search(lookup, sampler, budget, screened(lookup, screen) if screen else None))
    return np.array(chosen)


@dataclass
class Outcome:
    name: str
    top1: np.ndarray  # (runs, budget): the chosen spec's reference top-1 after each trial

    def summary(self, truth: np.ndarray) -> dict:
        final = self.top1[:, -1]
        top = np.sort(truth)[::-1][math.ceil(TOP_FRACTION * len(truth)) - 1]
        half = 1.96 * final.std(ddof=1) / math.sqrt(len(final)) if len(final) > 1 else float("nan")
        return {"mean": final.mean(), "ci": half, "low": np.percentile(final, 2.5), "high": np.percentile(final, 97.5),
                "regret": (truth.max() - final).mean(), "top": (final >= top).mean()}


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


def plot_curves(outcomes: list[Outcome], truth: np.ndarray, named: dict[str, float]) -> Figure:
    """Reference top-1 of the chosen spec (95% CI of the mean), regret and how often it is
    in the top 5%, against the number of trained trials."""
    fig = Figure(figsize=(16, 4.2))
    axes = fig.subplots(1, 3)
    top = np.sort(truth)[::-1][math.ceil(TOP_FRACTION * len(truth)) - 1]
    for i, outcome in enumerate(outcomes):
        runs, budget = outcome.top1.shape
        trials = np.arange(1, budget + 1)
        mean = outcome.top1.mean(0)
        half = 1.96 * outcome.top1.std(0, ddof=1) / math.sqrt(runs) if runs > 1 else np.zeros(budget)
        style = {"color": f"C{i % 10}", "ls": "--" if "pre-screened" in outcome.name else "-", "label": outcome.name}
        axes[0].plot(trials, mean, **style)
        axes[0].fill_between(trials, mean - half, mean + half, color=style["color"], alpha=0.12)
        axes[1].plot(trials, (truth.max() - outcome.top1).mean(0), **style)
        axes[2].plot(trials, (outcome.top1 >= top).mean(0), **style)
    for label, value in named.items():
        axes[0].axhline(value, ls=":", lw=1, c="grey")
        axes[0].annotate(label, (1, value), fontsize=7, color="grey", va="bottom")
    titles = ("reference top-1 of the chosen spec", "regret to the best spec", f"chosen spec in the top {TOP_FRACTION:.0%}")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("trained trials")
        ax.grid(alpha=0.3)
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.86, 1))
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


def _pct(x: float) -> str:
    return f"{x:.2%}"


def _recipe(space: SearchSpace, table: dict[str, list[dict]]) -> str:
    t = space.train
    seeds = sorted({len(rows) for rows in table.values()})
    return (f"{t.data}, {t.epochs} epochs on {t.train_limit or 'all'} training images (val {t.val_size}, batch "
            f"{t.batch_size}), {len(table)} specs with {' or '.join(map(str, seeds))} seeds")


def analyze(search_dir: Path, reference_dir: Path, out: Path, runs: int = 200, budget: int | None = None,
            named: list[str] | None = None, prescreen: list[str] | None = None, pool: int = 200,
            keep: float = 0.25, command: str = "") -> Path:
    """Write analysis.md and its plots to `out`; returns the report's path."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bench = Bench.load(search_dir, reference_dir)
    space = read_space(search_dir)
    budget = budget or space.search.trials
    truth = bench.truth()
    outcomes = [Outcome(name, truth[simulate(bench, space, name, budget, runs)]) for name in ("random", "tpe", "nsga2")]
    for proxy in prescreen if prescreen is not None else PROXY_NAMES:
        screen = Prescreen(proxy=proxy, pool=pool, keep=keep)
        outcomes.append(Outcome(f"tpe, pre-screened by {proxy}", truth[simulate(bench, space, "tpe", budget, runs, screen)]))
    names = named_specs(space, bench, named or [])
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plot_curves(outcomes, truth, {k: truth[bench.specs.index(h)] for k, h in names.items()}), out / CURVES)
    predictors = {name: bench.search_mean(name) for name in PROXY_NAMES if name in bench.search[bench.specs[0]][0]}
    predictors[f"val top-1 after epoch {bench.epochs}"] = bench.search_mean("val_top1")
    save_figure(plot_predictors(bench, predictors), out / SCATTER)
    text = _markdown(bench, space, read_space(reference_dir), outcomes, names, budget, runs, pool, keep, command)
    atomic_write_text(out / REPORT, text)
    return out / REPORT


def _markdown(bench: Bench, space: SearchSpace, reference_space: SearchSpace, outcomes: list[Outcome],
              names: dict[str, str], budget: int, runs: int, pool: int, keep: float, command: str) -> str:
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
              "Where these are alike, no predictor can rank the specs much better than the noise ceiling above.", "",
              "## Which choices matter", "",
              "Mean over the specs with each value (on an exhaustive table, over every combination of the other "
              "choices), with the 95% confidence interval of the reference mean.", "",
              "| parameter | value | specs | reference test top-1 | 95% CI | search val top-1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {param} | {value} | {count} | {_pct(mean)} | ±{ci:.2%} | {_pct(val_mean)} |"
              for param, value, count, mean, ci, val_mean in choice_effects(bench, list(space.params))]
    lines += ["",
              f"## Simulated searches: {budget} trained trials, {runs} seeds each", "",
              f"The chosen spec's reference test top-1 after {budget} trials: mean, its 95% confidence interval, "
              f"the range of the middle 95% of runs; regret to the best of the {n}; how often it is in the top "
              f"{TOP_FRACTION:.0%} (the best {math.ceil(TOP_FRACTION * n)} of the {n}). Pre-screening: a pool of {pool} random "
              f"draws, the best {keep:.0%} of its distinct specs admitted.", "",
              "| strategy | reference top-1 | 95% CI of the mean | middle 95% of runs | regret (points) | in the top 5% |",
              "|---|---|---|---|---|---|"]
    for outcome in outcomes:
        s = outcome.summary(truth)
        lines.append(f"| {outcome.name} | {_pct(s['mean'])} | ±{s['ci']:.2%} | {_pct(s['low'])} to "
                     f"{_pct(s['high'])} | {100 * s['regret']:.2f} | {s['top']:.0%} |")
    lines += ["", f"![search curves]({CURVES})", "", "## Named specs", "",
              "| spec | hash | reference top-1 | rank (of {}) | search val top-1 (mean) | rank under the search recipe |"
              .format(n), "|---|---|---|---|---|---|"]
    val = bench.search_mean("val_top1")
    truth_rank, val_rank = n + 1 - ranks(truth), n + 1 - ranks(val)
    for label, h in names.items():
        i = bench.specs.index(h)
        lines.append(f"| {label} | {h} | {_pct(truth[i])} | {truth_rank[i]:g} | {_pct(val[i])} | {val_rank[i]:g} |")
    return "\n".join(lines) + "\n"
