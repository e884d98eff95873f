"""The benchmark's simulator beyond the plain searches (issue 22): confirmation at equal
compute, the verdicts against the references checked against the reference recipe, and the
epoch from which a recipe's ranking carries signal; each on a synthetic table whose answers
are known in advance."""

import numpy as np
import pytest

from cotsearch.bench import analysis, ranking, simulate, table
from cotsearch.errors import CotsearchError
from cotsearch.search.space import Confirm
from cotsearch.stats import Noise

from helpers import cli
from test_sweep import write_synthetic_sweeps


def bench_of(search: dict[str, list[dict]], truth: dict[str, float], epochs: int = 1) -> table.Bench:
    """A Bench in memory: `search` spec -> its rows (seed, macs and readings), the reference
    recipe's top-1 of each spec as one run."""
    for rows in search.values():
        for seed, row in enumerate(rows):
            row.setdefault("seed", seed)
            row.setdefault("macs", 1.0)
    return table.Bench(sorted(search), search, {h: [{"seed": 0, "test_top1": truth[h]}] for h in search}, epochs)


def spread_seeds(mean: float, sd: float, seeds: int, rng) -> list[float]:
    """`seeds` readings of a spec whose mean is exactly `mean` and standard deviation `sd`, in
    random order: the table's own mean is the truth, so only the search's draws are noisy."""
    offsets = np.linspace(-1, 1, seeds)
    return list(mean + rng.permutation(offsets * sd / offsets.std(ddof=1)))


def noisy_table(sd: float) -> table.Bench:
    """10 specs, 0.4 points apart, 12 seeds each with seed noise `sd`."""
    rng = np.random.default_rng(0)
    means = {f"spec{i}": 0.80 - 0.004 * i for i in range(10)}
    return bench_of({h: [{"val_top1": x} for x in spread_seeds(m, sd, 12, rng)] for h, m in means.items()}, means)


def test_readings_are_fresh_until_the_table_runs_out():
    bench = bench_of({"a": [{"val_top1": 0.5}, {"val_top1": 0.6}], "b": [{"val_top1": 0.7}, {"val_top1": 0.8}],
                      "c": [{"val_top1": 0.9}, {"val_top1": 1.0}]}, {"a": 0, "b": 0, "c": 0})
    for run in range(5):
        lookup = simulate.Lookup(bench, None, np.random.default_rng(run))
        assert {lookup.measure(0), lookup.measure(0)} == {0.5, 0.6} and lookup.repeats == 0
        assert lookup.measure(0) in (0.5, 0.6) and lookup.repeats == 1


def test_confirmation_at_equal_compute_picks_the_best_more_often_than_one_reading():
    """Seed noise (1 point) large against the specs' spacing (0.4): with 16 trainings, the best
    single reading of each of the 10 specs (a search never trains a spec twice) is the best spec
    less often than the best mean of 3 fresh readings of the top 2 of those 10 readings. Without
    noise one reading is enough."""
    best = 0  # spec0, the best mean
    confirm = Confirm(top=2, seeds=3)
    one_reading = simulate.simulate(noisy_table(0.01), None, "random", 16, runs=300)[:, -1]
    confirmed = simulate.simulate_confirmed(noisy_table(0.01), None, "random", 16, 300, confirm, {})
    assert all(r.searched == 16 - 2 * 3 and r.readings == 6 and r.repeats == 0 for r in confirmed)
    found, raw = np.mean([r.chosen == best for r in confirmed]), np.mean(one_reading == best)
    assert found > raw + 0.1, (found, raw)  # 0.62 against 0.48
    assert (simulate.simulate(noisy_table(0.0), None, "random", 16, runs=50)[:, -1] == best).all()
    with pytest.raises(CotsearchError, match="leave 4 of the budget of 16 to the search; it needs at least 6"):
        simulate.simulate_confirmed(noisy_table(0.01), None, "random", 16, 1, Confirm(top=6, seeds=2), {})


def test_verdicts_against_the_references_are_checked_against_the_reference_recipe():
    """'winner' reads 10 points above 'weak_ref' and is 10 points better under the reference
    recipe: always declared to beat it, always right. 'misjudged_ref' reads 20 points below the
    winner but is the best under the reference recipe: declared beaten, always wrongly."""
    rng = np.random.default_rng(0)
    readings = {"winner": 0.90, "weak_ref": 0.80, "misjudged_ref": 0.70, "x": 0.6, "y": 0.6, "z": 0.6}
    truth = {"winner": 0.95, "weak_ref": 0.85, "misjudged_ref": 0.99, "x": 0.5, "y": 0.5, "z": 0.5}
    bench = bench_of({h: [{"val_top1": x} for x in spread_seeds(m, 0.001, 8, rng)] for h, m in readings.items()},
                     truth)
    references = {"weak_ref": bench.specs.index("weak_ref"), "misjudged_ref": bench.specs.index("misjudged_ref")}
    runs = simulate.simulate_confirmed(bench, None, "random", 12, 20, Confirm(top=2, seeds=3), references)
    assert {bench.specs[r.chosen] for r in runs} == {"winner"}
    counts = {c.reference: c for c in simulate.verdict_counts(runs, bench.truth(), references)}
    weak, misjudged = counts["weak_ref"], counts["misjudged_ref"]
    assert (weak.runs, weak.itself, weak.beats, weak.beats_right, weak.loses, weak.truly_better) == \
        (20, 0, 20, 20, 0, 20)
    assert (misjudged.beats, misjudged.beats_right, misjudged.ties, misjudged.truly_better) == (20, 0, 0, 0)

    # The counts themselves, on hand-made runs: chosen spec 0 (top-1 0.9) or 1 (0.7) against reference 1.
    def run(chosen, said):
        return simulate.ConfirmedRun(1, chosen, {"ref": said}, Noise(0.01, 5, 5), {"ref": said}, 0, 0, 0, 0)

    made = [run(0, "beats"), run(0, "beats"), run(0, "ties"), run(0, "loses to"), run(1, None)]
    (c,) = simulate.verdict_counts(made, np.array([0.9, 0.7]), {"ref": 1})
    assert (c.runs, c.itself, c.compared, c.beats, c.beats_right, c.loses, c.loses_right, c.ties, c.truly_better) == \
        (5, 1, 4, 2, 2, 1, 0, 1, 4)


def epoch_table(signal_from: int | None, epochs: int = 4, specs: int = 40, seed: int = 0) -> table.Bench:
    """Two seeds of `specs` specs whose reference top-1 spans 2 points: before epoch
    `signal_from` (never, if None) each reading is noise alone (sd 1 point); from it, the
    spec's top-1 plus 0.2 points of noise, as is the final test top-1."""
    rng = np.random.default_rng(seed)
    truth = {f"s{i:02d}": 0.80 + 0.02 * rng.random() for i in range(specs)}

    def reading(h: str, epoch: int) -> float:
        if signal_from is None or epoch < signal_from:
            return 0.80 + 0.01 * rng.normal()
        return truth[h] + 0.002 * rng.normal()

    search = {}
    for h in truth:
        search[h] = []
        for _ in range(2):
            row = {f"val_top1_epoch_{e}": reading(h, e) for e in range(1, epochs + 1)}
            search[h].append({**row, "val_top1": row[f"val_top1_epoch_{epochs}"], "test_top1": reading(h, epochs)})
    return bench_of(search, truth, epochs)


def test_first_signal_epoch_is_none_on_noise_and_found_where_the_signal_begins():
    seed_p, reference_p = (lambda s: s.seed_p), (lambda s: s.reference_p)
    for seed in (0, 1):
        noise = ranking.epoch_signal(epoch_table(None, seed=seed), permutations=500)
        assert ranking.first_signal(noise, seed_p) is None and ranking.first_signal(noise, reference_p) is None
    signal = ranking.epoch_signal(epoch_table(signal_from=3), permutations=500)
    assert [s.epoch for s in signal] == [1, 2, 3, 4, None]  # then the test top-1
    assert ranking.first_signal(signal, seed_p) == 3 and ranking.first_signal(signal, reference_p) == 3
    early, late = signal[0], signal[2]
    assert early.noise.sd == pytest.approx(0.01, rel=0.3) and late.noise.sd == pytest.approx(0.002, rel=0.3)
    assert early.seed_p > 0.01 and late.seed_p < 0.01 and late.seed_tau > 0.6
    # The specs' own spread: none where the readings are noise, the 2 points' uniform spread (0.58) where not.
    assert early.own_spread < 0.004 and late.own_spread == pytest.approx(0.02 / 12 ** 0.5, rel=0.3)
    # One lucky epoch of noise after the signal began does not start it.
    assert ranking.first_signal(signal[:2] + signal[3:4], seed_p) == 4


def test_the_report_with_confirmation_both_readings_and_the_signal(tmp_path, fake_fmnist):
    write_synthetic_sweeps(tmp_path, fake_fmnist)  # 9 specs without noise: 2 seeds alike
    found = analysis.run_analysis(tmp_path / "search", tmp_path / "reference", tmp_path / "out", runs=3, budgets=9,
                                  prescreen=[], readings=["val_top1", "test_top1"], confirm_top=2, confirm_seeds=2)
    text = found.report.read_text()
    assert list(found.outcomes) == ["val_top1", "test_top1"]
    for reading in found.outcomes.values():
        # Without noise, the best of 5 trials confirmed is the best of them: the run's first 5 trials.
        names = {o.name: o for o in reading}
        confirmed = names["random + confirmation"]
        assert confirmed.trainings == (5, 4) and confirmed.top1.shape == (3, 1)
        assert (confirmed.top1[:, 0] == names["random"].top1[:, 4]).all()
    assert "| random + confirmation | 5 + 4 |" in text and "| tpe + confirmation | 5 + 4 |" in text
    assert "### Reading test_top1 as a stand-in for a 10,000-image validation split" in text
    assert "can only flatter this reading" in text
    assert "validation ranking carries signal from epoch 1 on; against the reference recipe, from epoch 1 on" in text
    # The space's own confirmation (3 candidates, 3 seeds) does not fit 9 trainings: left out, and said so.
    plain = analysis.run_analysis(tmp_path / "search", tmp_path / "reference", tmp_path / "plain", runs=2, budgets=9,
                                  prescreen=[])
    assert [o.name for o in plain.outcomes["val_top1"]] == ["random", "tpe", "nsga2"]
    assert "No search with confirmation was simulated" in plain.report.read_text()
    with pytest.raises(CotsearchError, match="--reading val: expected one of val_top1, test_top1"):
        analysis.run_analysis(tmp_path / "search", tmp_path / "reference", tmp_path / "out", readings=["val"])


@pytest.mark.slow  # a fresh interpreter that imports the analysis: about 6 s here
def test_a_confirmation_the_budget_cannot_hold_exits_2_with_one_line(tmp_path, fake_fmnist):
    write_synthetic_sweeps(tmp_path, fake_fmnist)
    result = cli("analyze", tmp_path / "search", tmp_path / "reference", "--out", tmp_path / "out", "--budget", "9",
                 "--confirm-top", "3", "--confirm-seeds", "3")
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "--confirm-top 3 --confirm-seeds 3: the confirmation's 9 trainings leave 0 of the budget" in result.stderr
    assert not (tmp_path / "out").exists()
