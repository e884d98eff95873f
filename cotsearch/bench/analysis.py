"""`cotsearch analyze`: does the search work on a space? Read from two sweeps of it
(cotsearch.bench.sweep): one trained with the search's own recipe (what a search would
measure) and one with a longer reference recipe (what the chosen network is judged by).
Writes analysis.md with its plots:

- rank correlations of every zero-cost proxy, params, MACs and the search recipe's validation
  top-1 after each epoch with the reference's test top-1 (mean over its seeds); the
  reference's agreement with itself (two independent readings) is the noise ceiling;
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
- random sampling, TPE, the space's own sampler and its own pre-screened search (and TPE
  pre-screened by each `--prescreen` proxy) with confirmation at equal compute (as
  cotsearch.search.confirm does it): the search phase gets the budget less the confirmation's trainings, its best few
  distinct specs and the reference presets are read again with draws the run has not made
  yet, and the choice and the verdicts against the references come from cotsearch.stats
  over those readings alone; each verdict is then checked against the reference recipe;
- each of those for the reading a search takes: `val_top1` (the recipe's validation split) or
  `test_top1` (the same runs on the test split, a stand-in for a larger validation split);
- where named specs (the space's reference presets, hand-picked placements) rank.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cotsearch.bench.figures import plot_curves, plot_predictors
from cotsearch.bench.jobs import JobInputs, Progress, Simulation, run_all
from cotsearch.bench.pareto import FrontOutcome, reference_point
from cotsearch.bench.ranking import (
    ALPHA,
    PERMUTATION_SEED,
    PERMUTATIONS,
    Signal,
    correlations,
    epoch_signal,
    first_signal,
)
from cotsearch.bench.scaled_presets import PersonsChoice, against_preset
from cotsearch.bench.simulate import (
    TOP_FRACTION,
    Outcome,
    difference,
    half_width,
    search_budget,
    table_noise,
    verdict_counts,
)
from cotsearch.bench.sweep import EDF
from cotsearch.bench.table import Bench, as_number, choice_effects, read_space, seed_noise
from cotsearch.data.shape import KINDS
from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_text, save_figure
from cotsearch.search.sampler import sampler_name
from cotsearch.search.scaled_presets import reference_specs
from cotsearch.search.space import PROXY_NAMES, Confirm, Prescreen, SearchSpace
from cotsearch.stats import verdict

REPORT, CURVES, SCATTER = "analysis.md", "search_curves.png", "correlations.png"

READINGS = ("val_top1", "test_top1")  # what a simulated search reads of a run

TEST_IMAGES = {"fashion-mnist": 10_000, "mnist": 10_000, "cifar10": 10_000, "cifar100": 10_000}  # their test splits


def named_specs(space: SearchSpace, bench: Bench, named: list[str]) -> dict[str, str]:
    """Label -> spec hash, of the space's references (a preset scaled to the budget among them
    is in the table as a scaled preset, bench.named, not among its specs) and of each NAME (a
    preset) or LABEL=V1,V2,... (a value for each of the space's parameters, in order)."""
    from cotsearch.arch.load import load_spec

    found = {name: spec.spec_hash() for name, spec in reference_specs(space).items()}
    for item in named:
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


@dataclass
class Analysis:
    report: Path
    signal: list[Signal]
    outcomes: dict[str, list[Outcome]]  # reading -> the strategies' outcomes at the largest budget
    truth: np.ndarray
    val_images: int
    by_budget: dict[int, dict[str, list[Outcome]]]  # budget -> reading -> the strategies' outcomes
    fronts: dict[int, list[FrontOutcome]]  # budget -> two-objective searches (the first reading)
    persons: dict[int, list[PersonsChoice]]  # budget -> each strategy against each scaled preset


def reading_label(space: SearchSpace, reading: str) -> str:
    """What a reading is, in words: its images, and for test_top1 what it stands in for."""
    if reading == "val_top1":
        return f"val_top1, the recipe's {space.train.val_size:,} validation images"
    images = TEST_IMAGES.get(KINDS.get(space.train.data.partition(":")[0].lower(), ""))
    size = f"{images:,}-image " if images else ""
    return (f"test_top1 as a stand-in for a {size}validation split: the same runs read on the test split, the images "
            "the reference recipe is judged on")


def run_analysis(search_dir: Path, reference_dir: Path, out: Path, runs: int = 200,
                 budgets: int | list[int] | None = None, named: list[str] | None = None,
                 prescreen: list[str] | None = None, pool: int = 200, keep: float = 0.25, command: str = "",
                 readings: list[str] | None = None, confirm_top: int | None = None,
                 confirm_seeds: int | None = None, processes: int = 1, progress: Progress | None = None) -> Analysis:
    """Write analysis.md and its plots to `out`, with simulated searches at each of `budgets`
    (default: the space's trials). The confirmation simulated is the space's search.confirm
    (Confirm()'s defaults where it is off) with `confirm_top` candidates and `confirm_seeds`
    seeds where given; when neither is given and a budget cannot hold it, it is left out of
    that budget with a note. The simulations run in `processes` processes (the same numbers
    whatever their count), telling `progress` as each ends (cotsearch.bench.jobs.run_all)."""
    readings = list(dict.fromkeys(readings or ["val_top1"]))
    for reading in readings:
        if reading not in READINGS:
            raise CotsearchError(f"--reading {reading}: expected one of {', '.join(READINGS)}")
    bench = Bench.load(search_dir, reference_dir)
    space = read_space(search_dir)
    budgets = sorted(set([budgets] if isinstance(budgets, int) else budgets or [space.search.trials]))
    given = {k: v for k, v in (("top", confirm_top), ("seeds", confirm_seeds)) if v is not None}
    confirm = Confirm.model_validate({**(space.search.confirm or Confirm()).model_dump(), **given})
    fits = {}
    for budget in budgets:
        try:
            fits[budget] = search_budget(budget, confirm) > 0
        except CotsearchError:
            if given:
                raise  # before any work: the user's numbers do not fit
            fits[budget] = False  # the space's default does not fit this budget: the report says so
    truth = bench.truth()
    names = named_specs(space, bench, named or [])
    references = {label: bench.specs.index(h) for label, h in names.items()
                  if label in space.search.references and h in bench.specs}
    wanted = simulations(space, budgets, readings, fits, prescreen)
    results = run_all(JobInputs(bench, space, runs, confirm, references, pool, keep), wanted, processes, progress)
    by_budget = {budget: {reading: strategy_outcomes(bench, wanted, results, budget, reading,
                                                     confirm if fits[budget] else None)
                          for reading in readings} for budget in budgets}
    fronts = {budget: [results[job] for job in wanted if job.kind == "front" and job.budget == budget]
              for budget in budgets}
    persons = {budget: persons_choices(bench, found[readings[0]]) for budget, found in by_budget.items()}
    outcomes = by_budget[budgets[-1]]
    signal = epoch_signal(bench)
    labels = {reading: reading_label(space, reading) for reading in readings}
    out.mkdir(parents=True, exist_ok=True)
    save_figure(plot_curves(outcomes, truth, {k: bench.truth_of(h) for k, h in names.items()}), out / CURVES)
    predictors = {name: bench.search_mean(name) for name in PROXY_NAMES if name in bench.search[bench.specs[0]][0]}
    predictors[f"val top-1 after epoch {bench.epochs}"] = bench.search_mean("val_top1")
    save_figure(plot_predictors(bench, predictors), out / SCATTER)
    edfs = {label: Path(os.path.relpath(folder.resolve() / EDF, out.resolve())).as_posix()
            for label, folder in (("the reference recipe", reference_dir), ("the search recipe", search_dir))
            if (folder / EDF).exists()}
    text = _markdown(bench, space, read_space(reference_dir), by_budget, signal, labels, names, references, confirm,
                     fits, runs, pool, keep, command, fronts, persons, edfs)
    atomic_write_text(out / REPORT, text)
    return Analysis(out / REPORT, signal, outcomes, truth, space.train.val_size, by_budget, fronts, persons)


def simulations(space: SearchSpace, budgets: list[int], readings: list[str], fits: dict[int, bool],
                prescreen: list[str] | None) -> list[Simulation]:
    """Every simulation the analysis runs: at each budget, for each reading, random sampling,
    TPE and NSGA-II; TPE pre-screened by each proxy of `prescreen` (default: every proxy); where
    the budget holds the confirmation, random sampling, TPE and the space's own sampler with it,
    and TPE pre-screened by each proxy of `prescreen` with it (none by default: that would double
    the pre-screened simulations); the space's own strategy where it pre-screens
    (search.prescreen), alone and with confirmation; and, for the first reading, the
    two-objective searches of random sampling, TPE and NSGA-II."""
    own = sampler_name(space)
    own_screen = [(own, space.search.prescreen.proxy)] if space.search.prescreen else []
    screened = [("tpe", proxy) for proxy in (prescreen if prescreen is not None else PROXY_NAMES)]
    alone = dict.fromkeys([("random", None), ("tpe", None), ("nsga2", None), *screened, *own_screen])
    confirmed = dict.fromkeys([("random", None), ("tpe", None), (own, None), *own_screen,
                               *(("tpe", proxy) for proxy in prescreen or [])])
    found = []
    for budget in budgets:
        for reading in readings:
            found += [Simulation("search", name, budget, reading, proxy) for name, proxy in alone]
            if fits[budget]:
                found += [Simulation("confirmed", name, budget, reading, proxy) for name, proxy in confirmed]
        found += [Simulation("front", name, budget, readings[0]) for name in ("random", "tpe", "nsga2")]
    return found


def strategy_outcomes(bench: Bench, jobs: list[Simulation], results: dict[Simulation, object], budget: int,
                      reading: str, confirm: Confirm | None) -> list[Outcome]:
    """The single-objective strategies' outcomes at one budget for one reading, in the jobs' order."""
    truth = bench.truth()
    found = []
    for job in jobs:
        if (job.budget, job.reading) != (budget, reading) or job.kind == "front":
            continue
        result = results[job]
        # A pre-screened search may end early, its trainings below the budget: the table holds fewer
        # specs its screen admits (and fewer candidates to confirm). Its row gives the mean it trained.
        if job.kind == "confirmed":
            made = [round(float(np.mean([getattr(r, part) for r in result]))) for part in ("searched", "readings")]
            found.append(Outcome(job.label, truth[[[r.chosen] for r in result]], tuple(made), result,
                                 job.searched_alone.label))
        else:
            found.append(Outcome(job.label, truth[result.chosen], (round(float(result.trained.mean())), 0)))
    return found


def persons_choices(bench: Bench, outcomes: list[Outcome]) -> list[PersonsChoice]:
    """Each strategy's chosen specs against each scaled preset of the table (bench.named)."""
    noise = seed_noise(bench)[0].sd
    found = []
    for label, h in bench.named.items():
        se = preset_se(bench, h, noise)
        found += [against_preset(o.name, label, o.top1[:, -1], bench.truth_of(h), se) for o in outcomes]
    return found


def preset_se(bench: Bench, spec_hash: str, noise: float) -> float:
    """Standard error of a spec's reference mean: one run's noise (pooled over every seed of the
    table's specs) over the root of its seeds."""
    return noise / math.sqrt(len(bench.reference[spec_hash])) if math.isfinite(noise) else float("nan")


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


def _markdown(bench: Bench, space: SearchSpace, reference_space: SearchSpace,
              by_budget: dict[int, dict[str, list[Outcome]]], signal: list[Signal], labels: dict[str, str],
              names: dict[str, str], references: dict[str, int], confirm: Confirm, fits: dict[int, bool], runs: int,
              pool: int, keep: float, command: str, fronts: dict[int, list[FrontOutcome]],
              persons: dict[int, list[PersonsChoice]], edfs: dict[str, str]) -> str:
    truth = bench.truth()
    n = len(bench.specs)
    lines = [f"# Does the search work? {space.name}", "",
             f"Made by `{command}`." if command else "", "",
             f"- search recipe: {_recipe(space, bench.search)}",
             f"- reference recipe: {_recipe(reference_space, bench.reference)}",
             f"- {n} specs of the space in both; the best reaches {_pct(truth.max())} reference test top-1, the median "
             f"{_pct(float(np.median(truth)))}, the worst {_pct(truth.min())}",
             f"- trained beside them, not part of the space's sample: {', '.join(bench.named)}" if bench.named else "",
             "", *_answer_section(bench, space, by_budget, persons, confirm, runs),
             "", "## Rank correlation with the reference recipe's test top-1 (mean over its seeds)", "",
             "| predictor | Kendall tau | Spearman | specs |", "|---|---|---|---|"]
    lines += [f"| {label} | {tau:+.3f} | {rho:+.3f} | {count} |" for label, tau, rho, count in correlations(bench)]
    pooled, spread = seed_noise(bench)
    noise = pooled.sd
    lines += ["", f"Each predictor against the reference: ![predictors]({SCATTER})", "",
              f"How much of the reference's ranking is signal: one run's test top-1 varies by {100 * noise:.2f} points "
              f"(standard deviation, pooled over every seed of the {pooled.specs} specs run with two seeds or more, "
              f"{pooled.dof} degrees of freedom); the specs' means spread by "
              f"{100 * spread:.2f} points. "
              "No predictor ranks the specs against this truth better, on average, than the 'noise ceiling of any "
              "predictor' row above (a normal model's estimate from the measured ceiling), and where these two are "
              "alike, that ceiling is low.", ""]
    lines += _signal_section(signal, space.train.val_size)
    lines += ["## Which choices matter", "",
              "Mean over the specs with each value (on an exhaustive table, over every combination of the other "
              "choices), with the 95% confidence interval of the reference mean.", "",
              "| parameter | value | specs | reference test top-1 | 95% CI | search val top-1 |", "|---|---|---|---|---|---|"]
    lines += [f"| {param} | {value} | {count} | {_pct(mean)} | ±{ci:.2%} | {_pct(val_mean)} |"
              for param, value, count, mean, ci, val_mean in choice_effects(bench, list(space.params))]
    if edfs:
        lines += ["", "The whole distribution per value, as pycls draws it (Radosavovic et al., 2019): the error "
                  "EDF, the share of specs whose test error (mean over seeds) is below each x, that `cotsearch sweep` "
                  "drew for each recipe: " + ", ".join(f"[{label}]({path})" for label, path in edfs.items()) + ".", ""]
    for budget, outcomes in by_budget.items():
        lines += _search_section(bench, outcomes, labels, references, confirm, fits[budget], budget, runs, pool, keep,
                                 space.search.prescreen, plot=budget == max(by_budget))
    lines += _persons_section(bench, persons, runs, noise)
    lines += _fronts_section(bench, space, fronts, runs, next(iter(labels.values())))
    lines += ["", "## Named specs", "",
              f"| spec | hash | reference top-1 | rank (of {n}) | search val top-1 (mean) | rank under the search recipe |",
              "|---|---|---|---|---|---|"]
    val = bench.search_mean("val_top1")
    for label, h in {**names, **bench.named}.items():
        mine = float(np.mean([as_number(r["val_top1"]) for r in bench.search[h]]))
        lines.append(f"| {label} | {h} | {_pct(bench.truth_of(h))} | {_rank(bench.truth_of(h), truth)} | "
                     f"{_pct(mine)} | {_rank(mine, val)} |")
    return "\n".join(lines) + "\n"


def _screen_text(screen: Prescreen) -> str:
    return f"the best {screen.keep:.0%} by {screen.proxy} of {screen.pool} random draws"


def _rank(value: float, among: np.ndarray) -> int:
    """1 + how many of the space's specs score higher."""
    return 1 + int((among > value).sum())


def default_strategy(space: SearchSpace, simulated: list[str]) -> str:
    """The simulated strategy that is what `tune` runs on the space: its sampler, pre-screened
    where the space pre-screens, with confirmation where the space confirms and it was
    simulated at this budget (it is only where the budget holds it)."""
    screen = space.search.prescreen
    name = f"{sampler_name(space)}, pre-screened by {screen.proxy}" if screen else sampler_name(space)
    with_confirmation = f"{name} + confirmation"
    return with_confirmation if space.search.confirm and with_confirmation in simulated else name


def _answer_section(bench: Bench, space: SearchSpace, by_budget: dict[int, dict[str, list[Outcome]]],
                    persons: dict[int, list[PersonsChoice]], confirm: Confirm, runs: int) -> list[str]:
    """The question in one table: at equal trainings, does the search the space runs by default
    choose a better spec than random sampling, and than the presets scaled to the budget?"""
    truth = bench.truth()
    seeds = sorted({len(bench.reference[h]) for h in bench.specs})
    presets = list(bench.named)
    reading = next(iter(next(iter(by_budget.values()))))
    lines = ["## The answer: the default search against random sampling and a person's choice", "",
             f"The default search is what `cotsearch tune` runs on this space: {sampler_name(space)}"
             + (f" over the specs its pre-screen admits ({_screen_text(space.search.prescreen)})"
                if space.search.prescreen else "")
             + (f", then confirmation (the best {confirm.top} read {confirm.seeds} more times each, counted in the "
                "trainings; at a budget that cannot hold it, the sampler alone, as the column says)"
                if space.search.confirm else "") + ". Each is judged by the chosen spec's reference "
             f"top-1, the mean of its {' or '.join(map(str, seeds))} reference seeds; mean over {runs} simulated runs "
             f"reading {reading}, with 95% intervals over the runs (and, against a preset, its own "
             "measurement error). 'beats' or 'loses to' only where the interval excludes 0. The truth is itself "
             "noisy: see the noise ceiling below.", "",
             "| " + " | ".join(["trainings", "default search", "reference top-1", "random sampling",
                                "default - random (points)", "verdict", "best strategy here",
                                *(f"default - {p} (points) | verdict" for p in presets)]) + " |",
             "|" + "---|" * (7 + 2 * len(presets))]
    for budget, readings in by_budget.items():
        found = next(iter(readings.values()))
        by_name = {o.name: o for o in found}
        name = default_strategy(space, list(by_name))
        chosen, random = by_name[name], by_name["random"]
        gain = difference(chosen, random)
        best = max(found, key=lambda o: o.top1[:, -1].mean())
        against = {p.preset: p for p in persons[budget] if p.strategy == name}
        made = sum(chosen.trainings)
        label = name if made == budget else f"{name} ({' + '.join(map(str, chosen.trainings))} trained)"
        cells = [str(budget), label, f"{_pct(chosen.summary(truth)['mean'])} ± {half_width(chosen.top1[:, -1]):.2%}",
                 f"{_pct(random.summary(truth)['mean'])} ± {half_width(random.top1[:, -1]):.2%}",
                 f"{100 * gain.mean:+.2f} ± {100 * gain.half:.2f}", verdict(gain),
                 f"{best.name}, {_pct(best.summary(truth)['mean'])}"]
        for preset in presets:
            p = against[preset]
            cells += [f"{100 * p.difference.mean:+.2f} ± {100 * p.difference.half:.2f}", p.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _persons_section(bench: Bench, persons: dict[int, list[PersonsChoice]], runs: int, noise: float) -> list[str]:
    if not bench.named:
        return ["", "## A person's choice", "", "No scaled preset in these tables (`cotsearch sweep --scaled-preset "
                "NAME` trains one beside the space's specs).", ""]
    truth = bench.truth()
    lines = ["", "## A person's choice: presets scaled by width to the budget", "",
             "What a user would have done without a search: take a preset and scale its width to the widest that fits "
             "the budget (cotsearch.search.scaled_presets), trained with the same recipes and seeds as the space's "
             "specs. Its reference top-1 is the mean over its seeds, ± the 95% interval from one run's noise "
             f"({100 * noise:.2f} points, pooled over the table).", "",
             f"| preset | MACs | reference top-1 | rank among the {len(bench.specs)} specs |", "|---|---|---|---|"]
    for label, h in bench.named.items():
        t = bench.truth_of(h)
        lines.append(f"| {label} | {float(bench.search[h][0]['macs']) / 1e6:.2f} M | {_pct(t)} ± "
                     f"{1.96 * preset_se(bench, h, noise):.2%} | {_rank(t, truth)} |")
    lines += ["", "Each strategy's chosen spec against each preset, by the reference recipe: how often over "
              f"{runs} runs its reference top-1 is higher, and the mean difference with its 95% interval (the spread "
              "over runs and the preset's own measurement error, which every run shares). 'beats' or 'loses to' "
              "only where the interval excludes 0.", ""]
    for budget, found in persons.items():
        lines += [f"### {budget} trainings", "",
                  "| strategy | preset | chosen spec better in | mean difference (points) | 95% interval | verdict |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {p.strategy} | {p.preset} | {p.beats / p.runs:.0%} | {100 * p.difference.mean:+.2f} | "
                  f"±{100 * p.difference.half:.2f} | {p.verdict} |" for p in found]
        lines.append("")
    return lines


def _fronts_section(bench: Bench, space: SearchSpace, fronts: dict[int, list[FrontOutcome]], runs: int,
                    label: str) -> list[str]:
    top1, macs = reference_point(bench, space)
    lines = ["", "## Two objectives: top-1 and MACs", "",
             f"Searches for both objectives ({label}, and MACs), each trained spec judged by its reference top-1: "
             "the hypervolume of what a search trained over the hypervolume of all the table's specs (1 = it found "
             f"the table's true front). Reference point: top-1 {_pct(top1)} (the table's lowest reference top-1), "
             f"{macs / 1e6:.2f} M MACs (the budget, else the table's largest). Mean over {runs} runs with its 95% "
             "interval.", "", "| trainings | strategy | hypervolume / the true front's | 95% CI |", "|---|---|---|---|"]
    for budget, found in fronts.items():
        for f in found:
            mean, half = f.summary()
            lines.append(f"| {budget} | {f.strategy} | {mean:.3f} | ±{half:.3f} |")
    stand_ins = sum(f.stand_ins for found in fronts.values() for f in found)
    lines += ["", f"Proposals the table lacked, read as their nearest table spec: {stand_ins:,} over all these runs "
              "(cotsearch.bench.simulate.Lookup).", ""]
    return lines


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
                    keep: float, own: Prescreen | None, plot: bool = True) -> list[str]:
    n = len(bench.specs)
    lines = ["", f"## Simulated searches: {budget} trainings, {runs} seeds each", "",
             f"The chosen spec's reference test top-1 after {budget} trainings: mean, its 95% confidence interval, "
             f"the range of the middle 95% of runs; regret to the best of the {n}; how often it is in the top "
             f"{TOP_FRACTION:.0%} (the best {math.ceil(TOP_FRACTION * n)} of the {n}). Pre-screening: a pool of {pool} "
             f"random draws, the best {keep:.0%} of its distinct specs admitted"
             + (f" (the space's own: {_screen_text(own)})" if own else "")
             + ". A screen admits that share of the table's specs, and a pre-screened search ends when it has "
             "trained all it admits: at a larger budget it trains fewer than the budget, and its row gives the mean "
             "it trained.", ""]
    lines += _confirmation_text(bench, references, confirm, budget) if fits else [
        f"No search with confirmation was simulated: the space's confirmation ({confirm.top} candidates, "
        f"{confirm.seeds} seeds each) does not fit a budget of {budget} trainings; give `--confirm-top` and "
        "`--confirm-seeds`, or a larger `--budget`.", ""]
    for reading, found in outcomes.items():
        lines += _reading_section(bench, reading, labels[reading], found, bench.truth(), references)
    return lines + ([f"![search curves]({CURVES})"] if plot else [])


def _no_references(bench: Bench) -> str:
    """Why the simulated confirmation reads no reference: a scaled preset is a row of its own, not one of the specs."""
    return ("none among the table's specs: the scaled presets are compared in 'A person's choice' below"
            if bench.named else "none in the table")


def _confirmation_text(bench: Bench, references: dict[str, int], confirm: Confirm, budget: int) -> list[str]:
    phase = budget - confirm.top * confirm.seeds
    seeds = min(len(rows) for rows in bench.search.values())
    fresh = min(confirm.seeds, seeds - 1)
    return [f"**Confirmation, at equal compute.** The search phase trains {phase} trials; its best {confirm.top} "
            f"distinct specs by the reading it saw are read {confirm.seeds} more times each "
            f"({confirm.top * confirm.seeds} trainings, counted in the {budget}), and so are the reference presets "
            f"({', '.join(references) or _no_references(bench)}; not counted: a search trains them anyway). As "
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
                     f"{100 * gain.mean():+.2f} ± {100 * half_width(gain):.2f} points of reference top-1. "
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
