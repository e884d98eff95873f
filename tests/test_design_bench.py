"""The design benchmark's analysis (issue 23), on synthetic tables of spaces/cot_design.yaml
whose answers are known in advance: the hypervolume, a table that holds only a sample of the
space, and the presets scaled by width to the budget ("a person's choice")."""

import csv
import math

import numpy as np
import pytest

from cotsearch.arch.load import load_spec
from cotsearch.bench import analysis, pareto, ranking, simulate
from cotsearch.bench.scaled_presets import against_preset
from cotsearch.bench.sweep import EDF, TABLE, make_row, plot_edf, row_configs, sample_specs, write_table
from cotsearch.bench.table import Bench, pair_label, reading_pairs, seed_noise, seed_pairs
from cotsearch.cost.analytic import estimate_cost
from cotsearch.errors import CotsearchError
from cotsearch.files import save_figure
from cotsearch.search.prescreen import Candidate
from cotsearch.search.scaled_presets import FACTORS, reference_spec, scale_to_budget, scale_width
from cotsearch.search.space import Prescreen, load_space
from cotsearch.search.trial_types import TrialResult
from cotsearch.stats import verdict

from helpers import SPACES, cli, cli_here

DESIGN = SPACES / "cot_design.yaml"


def design_truth(macs: float) -> float:
    """A known top-1 that rises with MACs: the table's true front is every spec no cheaper spec beats."""
    return 0.80 + 0.02 * math.log(macs / 1e6)


def write_design_tables(tmp_path, specs: int = 24, presets: dict[str, float] | None = None, prescreen: bool = False):
    """Search and reference tables of `specs` feasible specs of cot_design (2 seeds, no noise,
    top-1 from design_truth, a NASWOT score that ranks like it), and each preset scaled to the
    budget with a given top-1. The space's own pre-screen is left out unless `prescreen`: the
    other tests read the analysis of its sampler and confirmation alone."""
    space = load_space(str(DESIGN))
    if not prescreen:
        space = space.model_copy(update={"search": space.search.model_copy(update={"prescreen": None})})
    candidates = sample_specs(space, specs, seed=0)
    scaled = [scale_to_budget(space, name) for name in presets or {}]
    named = {s.spec.spec_hash(): s.label for s in scaled}
    truth_of = {c.spec.spec_hash(): design_truth(c.cost.macs) for c in candidates}
    truth_of.update({s.spec.spec_hash(): top1 for s, top1 in zip(scaled, (presets or {}).values())})
    configs = row_configs([*candidates, *(Candidate({}, s.spec, s.cost) for s in scaled)], seeds=2, recipe_seed=0,
                          named=named)
    for kind in ("search", "reference"):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "space.json").write_text(space.model_dump_json(by_alias=True))
        rows = []
        for config in configs:
            top1 = truth_of[config.spec_hash]
            curve = dict.fromkeys(range(1, space.train.epochs + 1), top1)
            rows.append(make_row(config, TrialResult(test_top1=top1), curve, {config.spec_hash: {"naswot": top1}}))
        write_table(folder, rows)
    return space, Bench.load(tmp_path / "search", tmp_path / "reference"), scaled


def test_hypervolume_against_worked_examples():
    ref = (0.5, 10.0)
    assert pareto.hypervolume(np.array([0.7]), np.array([4.0]), ref) == pytest.approx(0.2 * 6)
    # A staircase: (4, 0.7) then (6, 0.9): 0.2 * 6 + 0.2 * 4.
    assert pareto.hypervolume(np.array([0.9, 0.7]), np.array([6.0, 4.0]), ref) == pytest.approx(1.2 + 0.8)
    # A dominated point and points beyond the reference point add nothing.
    assert pareto.hypervolume(np.array([0.9, 0.7, 0.6, 0.99, 0.4]), np.array([6.0, 4.0, 7.0, 10.0, 1.0]), ref) == \
        pytest.approx(2.0)
    assert pareto.hypervolume(np.array([]), np.array([]), ref) == 0


def test_scaled_presets_are_the_widest_that_fit_the_budget():
    space = load_space(str(DESIGN))
    budget = space.budgets.max_macs
    for name in ("cotnet_tiny", "resnet_tiny"):
        scaled = scale_to_budget(space, name)
        assert scaled.cost.macs <= budget and scaled.label == f"{name} x{scaled.factor:.2f} width"
        assert (scaled.spec.in_chans, scaled.spec.input_size) == (1, 28)  # fitted to Fashion-MNIST
        base = space.data_shape().apply(load_spec(name))
        assert scaled.spec.stem.width == max(8, round(base.stem.width * scaled.factor / 8) * 8)
        # Every wider factor of the grid searched gives a spec over the budget.
        assert all(estimate_cost(scale_width(base, float(f))).macs > budget for f in FACTORS if f > scaled.factor)
        # The space's own reference of that name (tune's verdicts) is the benchmark's person's choice.
        assert reference_spec(space, f"{name}@budget") == scaled.spec and f"{name}@budget" in space.search.references
    no_budget = space.model_copy(update={"budgets": space.budgets.model_copy(update={"max_macs": None})})
    with pytest.raises(CotsearchError, match="no budget"):
        scale_to_budget(no_budget, "cotnet_tiny")
    with pytest.raises(CotsearchError, match="--scaled-preset nope"):
        scale_to_budget(space, "nope")


def test_a_scaled_preset_that_is_not_a_preset_is_one_line_before_any_work(tmp_path):
    result = cli("sweep", DESIGN, "--archs", 2, "--scaled-preset", "nope", "--out", tmp_path / "sweep")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "--scaled-preset nope" in result.stderr
    assert not (tmp_path / "sweep").exists()


def test_the_table_keeps_scaled_presets_out_of_the_space_s_specs(tmp_path):
    _, bench, scaled = write_design_tables(tmp_path, presets={"cotnet_tiny": 0.5})
    assert len(bench.specs) == 24 and bench.named == {scaled[0].label: scaled[0].spec.spec_hash()}
    assert scaled[0].spec.spec_hash() not in bench.specs and bench.truth_of(scaled[0].spec.spec_hash()) == 0.5


def test_a_search_on_a_sampled_table_reads_each_proposal_as_its_nearest_untrained_spec(tmp_path):
    space, bench, _ = write_design_tables(tmp_path)
    for strategy in ("tpe", "nsga2"):
        lookup = simulate.Lookup(bench, space, np.random.default_rng(0))
        order = simulate.search_order(lookup, strategy, budget=len(bench.specs), run=0)
        # Without stand-ins a sampler proposes specs the table lacks and stops after max_infeasible misses.
        assert sorted(i for i, _ in order) == list(range(len(bench.specs))), strategy
        assert lookup.stand_ins > 0
    # The nearest spec differs in the fewest choices.
    lookup = simulate.Lookup(bench, space, np.random.default_rng(0))
    wanted = dict(lookup.choices(3))
    assert lookup.nearest(wanted, exclude=set()) == 3
    others = lookup.nearest(wanted, exclude={3})
    differ = sum(lookup.choices(others)[p] != wanted[p] for p in wanted)
    assert differ == min(sum(lookup.choices(i)[p] != wanted[p] for p in wanted)
                         for i in range(len(bench.specs)) if i != 3)


def test_searches_that_train_the_whole_table_find_its_true_front(tmp_path):
    space, bench, _ = write_design_tables(tmp_path)
    for strategy in ("random", "tpe", "nsga2"):
        whole = pareto.simulate_fronts(bench, space, strategy, len(bench.specs), runs=2)
        assert whole.ratios == pytest.approx([1.0, 1.0]), strategy
    few = pareto.simulate_fronts(bench, space, "random", 2, runs=20)
    assert (few.ratios < 1).any() and (few.ratios > 0).all() and (few.ratios <= 1).all()


def test_against_a_preset_the_verdict_needs_the_interval_to_exclude_zero():
    better = against_preset("random", "p", np.full(10, 0.90), 0.80, preset_se=0.01)
    assert (better.verdict, better.beats, better.difference.mean) == ("beats", 10, pytest.approx(0.10))
    assert better.difference.half == pytest.approx(1.96 * 0.01)  # no spread over runs: the preset's error alone
    assert against_preset("random", "p", np.full(10, 0.70), 0.80, 0.01).verdict == "loses to"
    assert against_preset("random", "p", np.full(10, 0.805), 0.80, 0.01).verdict == "ties"  # within 1.96 * 0.01


def test_the_analysis_ranks_the_scaled_presets_and_counts_who_beats_them(tmp_path):
    _, _, scaled = write_design_tables(tmp_path, presets={"cotnet_tiny": 0.0, "resnet_tiny": 1.0})
    found = analysis.run_analysis(tmp_path / "search", tmp_path / "reference", tmp_path / "out", runs=4,
                                  budgets=[4, 8], prescreen=[])
    assert set(found.by_budget) == {4, 8} and set(found.fronts) == {4, 8}
    low, high = (s.label for s in scaled)
    for budget, persons in found.persons.items():
        assert {(p.preset, p.verdict) for p in persons} == {(low, "beats"), (high, "loses to")}, budget
    text = found.report.read_text()
    assert "## A person's choice: presets scaled by width to the budget" in text
    assert f"| {low} | " in text and f"| {high} | " in text and "## Two objectives: top-1 and MACs" in text
    assert "## Simulated searches: 4 trainings" in text and "## Simulated searches: 8 trainings" in text
    assert "pycls" not in text  # these tables have no EDF drawn
    # The simulated confirmation reads no reference: the scaled presets are rows of their own, compared apart.
    assert "none among the table's specs: the scaled presets are compared in 'A person's choice' below" in text


def test_the_choices_section_links_the_edf_each_sweep_drew(tmp_path):
    space, _, _ = write_design_tables(tmp_path, specs=12)
    with open(tmp_path / "reference" / TABLE) as f:
        rows = list(csv.DictReader(f))
    save_figure(plot_edf(rows, list(space.params)), tmp_path / "reference" / EDF)
    found = analysis.run_analysis(tmp_path / "search", tmp_path / "reference", tmp_path / "out" / "deeper", runs=2,
                                  budgets=[4], prescreen=[])
    choices = found.report.read_text().split("## Which choices matter", 1)[1].split("\n## ", 1)[0]
    assert "drew for each recipe: [the reference recipe](../../reference/edf.png)." in choices  # no search EDF


def test_the_noise_ceiling_compares_readings_of_as_many_seeds_as_a_reading_has():
    # Most specs read as a 3-seed mean, three of them with 3 more seeds: the ceiling is 3 against 3.
    top1 = {"a": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "b": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            "c": [0.5, 0.5, 0.5, 0.1, 0.1, 0.1], "d": [0.7, 0.7, 0.7], "e": [0.2, 0.2, 0.2], "f": [0.3, 0.3, 0.3]}
    rows = {h: [{"seed": s, "test_top1": v} for s, v in reversed(list(enumerate(values)))] for h, values in top1.items()}
    first, second, k = reading_pairs(rows, list(top1), "test_top1")
    assert k == 3 and pair_label(k) == "the mean of seeds 0-2 against that of seeds 3-5"
    assert first == pytest.approx([0.2, 0.8, 0.5]) and second == pytest.approx([0.5, 0.5, 0.1])
    # A failed run (d's seed 1, a's seed 4) changes neither k nor which seeds a reading holds: a is left out.
    failed = {**rows, "d": [r for r in rows["d"] if r["seed"] != 1], "a": [r for r in rows["a"] if r["seed"] != 4]}
    failed["g"] = [{"seed": s, "test_top1": 0.6} for s in range(6)]
    first, second, k = reading_pairs(failed, list(failed), "test_top1")
    assert k == 3
    assert first == pytest.approx([0.8, 0.5, 0.6]) and second == pytest.approx([0.5, 0.1, 0.6])
    # 2-seed readings, with 4 seeds for three specs: 2 against 2.
    two = {h: [{"seed": s, "test_top1": v} for s, v in enumerate(values[:4] if h in "abc" else values[:2])]
           for h, values in top1.items()}
    first, second, k = reading_pairs(two, list(two), "test_top1")
    assert pair_label(k) == "the mean of seeds 0-1 against that of seeds 2-3"
    assert first == pytest.approx([0.15, 0.85, 0.5])
    # Too few specs with twice the seeds, or one seed a reading: one run against another, as seed_pairs has it.
    for cut in ({**rows, "c": rows["c"][3:]}, {h: r[-1:] if h in "def" else r for h, r in rows.items()}):
        first, second, k = reading_pairs(cut, list(cut), "test_top1")
        seed_0, seed_1 = seed_pairs(cut, list(cut), "test_top1")
        assert pair_label(k) == "seed 0 against seed 1"
        assert first == pytest.approx(seed_0) and second == pytest.approx(seed_1)


def test_the_analysis_names_the_ceiling_it_measured():
    # 6 seeds a spec: the readings compared are two 3-seed means, and the label says so; the
    # truth, a 6-seed mean, agrees with itself as that agreement stepped up to twice the seeds,
    # and no predictor beats the specs' own values against it.
    rng = np.random.default_rng(0)
    own = {f"s{i}": 0.8 + 0.003 * rng.standard_normal() for i in range(20)}
    search = {h: [{"seed": 0, "val_top1_epoch_1": t, "val_top1": t}] for h, t in own.items()}
    reference = {h: [{"seed": s, "test_top1": t + 0.003 * rng.standard_normal()} for s in range(6)]
                 for h, t in own.items()}

    def rows(counts):
        cut = {h: reference[h][:n] for h, n in zip(own, counts)}
        return {label: (tau, rho) for label, tau, rho, _ in ranking.correlations(Bench(sorted(own), search, cut, 1))}

    def truth_row(seeds):
        return f"the truth (the mean of each spec's seeds, {seeds}) against another such mean, from the line above"

    ceiling = "noise ceiling of any predictor: the specs' own values against the truth, from the line above"
    found = rows([6] * 20)
    measured = found["noise ceiling: reference test top-1, the mean of seeds 0-2 against that of seeds 3-5"][0]
    assert 0 < measured < 1
    truth = found[truth_row(6)]
    assert truth == pytest.approx(ranking.spearman_brown(measured, 2)) and truth[0] > measured
    assert found[ceiling] == pytest.approx(ranking.predictor_ceiling(truth[0])) and found[ceiling][0] > truth[0]
    # 3 seeds each: 3 against 3 is impossible, so seed 0 against seed 1, stepped up 3 times.
    found = rows([3] * 20)
    one = found["noise ceiling: reference test top-1, seed 0 against seed 1"][0]
    assert found[truth_row(3)] == pytest.approx(ranking.spearman_brown(one, 3))
    # Seed counts that differ: the truth's seeds are their harmonic mean (its noise is the mean of 1/n).
    # Here most specs have 3 and six have 6, so 3 against 3 is measured over those six, but the
    # truth averages fewer seeds than that and agrees with itself less.
    found = rows([6] * 6 + [3] * 8 + [1] * 6)
    three = found["noise ceiling: reference test top-1, the mean of seeds 0-2 against that of seeds 3-5"][0]
    truth = found[truth_row("2.1 (harmonic mean over specs)")]
    assert truth == pytest.approx(ranking.spearman_brown(three, 20 / (6 / 6 + 8 / 3 + 6) / 3)) and truth[0] < three
    # A ceiling of 0 or less says nothing of the truth's.
    backwards = {h: [{"seed": s, "test_top1": 0.8 + i * (0.001 if s else -0.002)} for s in range(2)]
                 for i, h in enumerate(own)}
    found = {label: tau for label, tau, _, _ in ranking.correlations(Bench(sorted(own), search, backwards, 1))}
    assert found["noise ceiling: reference test top-1, seed 0 against seed 1"] < 0
    assert not [label for label in found if label.startswith(("the truth", "noise ceiling of any"))]
    assert np.isnan([*ranking.spearman_brown(-0.2, 2), *ranking.spearman_brown(0.3, 0),
                     *ranking.predictor_ceiling(0)]).all()


def test_the_reference_noise_pools_every_seed_of_every_spec():
    # a: 3 seeds around 0.82 (squares 0.0004 + 0 + 0.0004), b: 2 around 0.70 (0.0001 + 0.0001),
    # c: one seed (no spread to pool); 2 + 1 degrees of freedom.
    top1 = {"a": [0.80, 0.82, 0.84], "b": [0.69, 0.71], "c": [0.75]}
    reference = {h: [{"seed": s, "test_top1": v} for s, v in enumerate(values)] for h, values in top1.items()}
    noise, spread = seed_noise(Bench(sorted(top1), {}, reference, 1))
    assert (noise.dof, noise.specs) == (3, 2) and noise.sd == pytest.approx(math.sqrt(0.001 / 3))
    assert spread == pytest.approx(np.std([0.82, 0.70, 0.75], ddof=1))


def test_the_difference_of_two_strategies_adds_both_errors():
    a = simulate.Outcome("a", np.array([[0.90], [0.92]]), (2, 0))
    b = simulate.Outcome("b", np.array([[0.78], [0.80], [0.82]]), (2, 0))
    gain = simulate.difference(a, b)
    assert gain.mean == pytest.approx(0.11)
    both = math.hypot(simulate.half_width(a.top1[:, -1]), simulate.half_width(b.top1[:, -1]))
    assert gain.half == pytest.approx(both) and both > max(simulate.half_width(x.top1[:, -1]) for x in (a, b))
    assert verdict(gain) == "beats" and verdict(simulate.difference(b, a)) == "loses to"


def test_the_default_strategy_is_what_tune_runs_on_the_space():
    # cot_design: TPE (one objective, no sampler set), pre-screened by NASWOT, with confirmation.
    screening = load_space(str(DESIGN))
    assert screening.search.prescreen == Prescreen(proxy="naswot")
    # Its own strategy is simulated alone and with confirmation, by that name, whatever --prescreen asks.
    jobs = analysis.simulations(screening, [16], ["val_top1"], {16: True}, prescreen=[])
    labels = [job.label for job in jobs if job.kind != "front"]
    assert labels == ["random", "tpe", "nsga2", "tpe, pre-screened by naswot", "random + confirmation",
                      "tpe + confirmation", "tpe, pre-screened by naswot + confirmation"]
    assert analysis.default_strategy(screening, labels) == "tpe, pre-screened by naswot + confirmation"
    confirmed = next(job for job in jobs if job.label == "tpe, pre-screened by naswot + confirmation")
    assert confirmed.searched_alone.label == "tpe, pre-screened by naswot"
    space = screening.model_copy(update={"search": screening.search.model_copy(update={"prescreen": None})})
    simulated = ["random", "tpe", "nsga2", "random + confirmation", "tpe + confirmation"]
    assert analysis.default_strategy(space, simulated) == "tpe + confirmation"
    assert analysis.default_strategy(space, simulated[:3]) == "tpe"  # the budget cannot hold it: not simulated
    nsga2 = space.model_copy(update={"search": space.search.model_copy(update={"sampler": "nsga2"})})
    assert analysis.default_strategy(nsga2, simulated) == "nsga2"  # not simulated with confirmation
    assert analysis.default_strategy(nsga2, [*simulated, "nsga2 + confirmation"]) == "nsga2 + confirmation"


def test_the_answer_ties_random_sampling_when_both_train_the_whole_table(tmp_path):
    # Noise-free readings: with the budget of the whole table random sampling trains every spec
    # and the default search (the shipped one: pre-screened by a NASWOT that ranks like the truth)
    # the best it admits; both choose the best, so they tie exactly. The presets are set below
    # and above every spec, so it beats the one and loses to the other.
    _, bench, scaled = write_design_tables(tmp_path, specs=12, presets={"cotnet_tiny": 0.0, "resnet_tiny": 1.0},
                                           prescreen=True)
    found = analysis.run_analysis(tmp_path / "search", tmp_path / "reference", tmp_path / "out", runs=3,
                                  budgets=[len(bench.specs) + 4], prescreen=[])
    text = found.report.read_text()
    answer = text.split("## The answer", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in answer.splitlines() if line.startswith(f"| {len(bench.specs) + 4} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "tpe, pre-screened by naswot + confirmation (3 + 4 trained)"  # of a budget of 16
    assert cells[4:6] == ["+0.00 ± 0.00", "ties"]
    # The screen admits the best 3 of the 12 (keep 0.25): the search phase trains those, not its budget of 12.
    screened = {o.name: o for o in found.by_budget[len(bench.specs) + 4]["val_top1"]}[
        "tpe, pre-screened by naswot + confirmation"]
    assert {r.searched for r in screened.confirmed} == {3} and screened.trainings == (3, 4)
    # Alone, with the whole budget of 16, it trains the same 3; random sampling trains all 12 there is.
    alone = {o.name: o.trainings for o in found.by_budget[len(bench.specs) + 4]["val_top1"]}
    assert alone["tpe, pre-screened by naswot"] == (3, 0) and alone["random"] == (12, 0)
    assert "| tpe, pre-screened by naswot | 3 + 0 |" in text
    assert "admitted (the space's own: the best 25% by naswot of 200 random draws)." in text
    header = next(line for line in answer.splitlines() if line.startswith("| trainings |"))
    presets = [c.strip()[len("default - "):-len(" (points)")] for c in header.strip("|").split("|")[7::2]]
    low, high = (s.label for s in scaled)
    assert sorted(presets) == sorted([low, high])
    assert dict(zip(presets, cells[8::2])) == {low: "beats", high: "loses to"}


def test_the_answer_without_scaled_presets_is_a_table_of_seven_columns(tmp_path):
    write_design_tables(tmp_path, specs=12)
    found = analysis.run_analysis(tmp_path / "search", tmp_path / "reference", tmp_path / "out", runs=2,
                                  budgets=[4], prescreen=[])
    answer = found.report.read_text().split("## The answer", 1)[1].split("\n## ", 1)[0]
    table = [line for line in answer.splitlines() if line.startswith("|")]
    assert len(table) == 3 and {line.count("|") for line in table} == {8}
    assert table[2].split("|")[2].strip() == "tpe"  # 4 trainings cannot hold the space's confirmation of 2 x 2
    assert "the space's own" not in found.report.read_text()  # these tables' space does not pre-screen


def test_the_answer_compares_the_default_search_with_random_sampling_and_its_own_preset_rows(tmp_path):
    space, bench, scaled = write_design_tables(tmp_path, specs=12, presets={"cotnet_tiny": 0.5})
    label = scaled[0].label

    def outcome(name: str, top1: float) -> simulate.Outcome:
        return simulate.Outcome(name, np.array([[top1 - 0.01], [top1 + 0.01]]), (8, 0))

    found = [outcome("random", 0.80), outcome("tpe", 0.70), outcome("tpe + confirmation", 0.85)]
    persons = [against_preset(o.name, label, o.top1[:, -1], 0.5 if o.name != "tpe + confirmation" else 0.95, 0.001)
               for o in found]
    lines = analysis._answer_section(bench, space, {8: {"val_top1": found}}, {8: persons},
                                     space.search.confirm, runs=2)
    cells = [c.strip() for c in next(line for line in lines if line.startswith("| 8 |")).strip("|").split("|")]
    assert cells[1:3] == ["tpe + confirmation", "85.00% ± 1.96%"] and cells[3] == "80.00% ± 1.96%"
    assert cells[4:6] == ["+5.00 ± 2.77", "beats"] and cells[6] == "tpe + confirmation, 85.00%"
    assert cells[7:9] == ["-10.00 ± 1.97", "loses to"]  # its own row against the preset, not random's or tpe's


@pytest.mark.slow  # two spawned interpreters import the analysis: a few seconds
def test_the_simulations_give_the_same_report_in_any_number_of_processes(tmp_path):
    """Every simulation is seeded by its run numbers alone: `analyze --jobs 2` writes the report
    that one process writes, and says which simulation ended as each ends."""
    write_design_tables(tmp_path, specs=12, presets={"cotnet_tiny": 0.85})
    tables = [tmp_path / "search", tmp_path / "reference"]
    alone = analysis.run_analysis(*tables, tmp_path / "alone", runs=3, budgets=[4, 8], prescreen=["macs"])
    result = cli_here("analyze", *tables, "--out", tmp_path / "two", "--runs", "3", "--budget", "4", "--budget", "8",
                      "--prescreen", "macs", "--jobs", "2")
    assert result.exit_code == 0, result.output

    def after_the_command(text: str) -> str:  # the report's first lines say what command made it
        return text.split("- search recipe:", 1)[1]

    assert after_the_command((tmp_path / "two" / "analysis.md").read_text()) == after_the_command(alone.report.read_text())
    lines = result.stderr.splitlines()
    # At each budget: random, TPE, NSGA-II, TPE pre-screened by MACs; the two-objective three; at 8
    # trainings also the space's confirmation (2 candidates x 2 seeds) after random, TPE and the
    # pre-screened TPE (--prescreen names it).
    assert lines[0] == "analyze: 17 simulations of 3 seeded searches each, in 2 processes"
    assert len(lines) == 18 and lines[-1].split("] ", 1)[1].startswith("17/17 ")
    assert sum(", 8 trainings, reading val_top1" in line and "+ confirmation" in line for line in lines) == 3
    assert any("tpe, pre-screened by macs + confirmation, 8 trainings" in line for line in lines)
