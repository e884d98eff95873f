"""Confirmation and the search's intervals, against a fake trainer whose answers are known in
advance: each spec's top-1 is a true value plus Gaussian noise of a known standard deviation."""

import numpy as np
import pytest

from cotsearch.search.confirm import summarize
from cotsearch.search.records import TrialRecord
from cotsearch.stats import Noise, binomial_se, mean_interval, paired_difference, verdict

SIGMA = 0.004  # one run's seed noise: 0.4 points


def record(trial: int, top1: float, macs: float = 1e6) -> TrialRecord:
    return TrialRecord(trial=trial, state="complete", sampled={}, val_top1=top1, epochs=3, macs=macs, macs_conv=macs,
                       params=1, latency_ms=None, latency_shared=None, spec_hash=f"h{trial}", duration_s=1.0,
                       node=None, gpu_ids=None, reason=None, spec_json=None, val_images=10_000)


def fake_search(truth: np.ndarray, rng, top: int, seeds: int, macs=None, references: dict | None = None):
    """One search on the fake trainer: a reading per spec, then the top `top` and the references
    read `seeds` more times with fresh seeds (seeds 1..S; the search's is seed 0)."""
    macs = np.ones(len(truth)) if macs is None else macs
    rows = [record(i, truth[i] + rng.normal(0, SIGMA), macs[i]) for i in range(len(truth))]
    picked = sorted(rows, key=lambda r: -r.val_top1)[:top]
    runs = [{"kind": "candidate", "name": str(r.trial), "seed": s, "val_top1": truth[r.trial] + rng.normal(0, SIGMA),
             "macs": r.macs, "spec_hash": r.spec_hash} for r in picked for s in range(1, seeds + 1)]
    runs += [{"kind": "reference", "name": name, "seed": s, "val_top1": value + rng.normal(0, SIGMA), "macs": 1.0,
              "spec_hash": f"ref-{name}"} for name, value in (references or {}).items() for s in range(1, seeds + 1)]
    return rows, summarize(rows, runs, picked)


def test_confirmation_picks_the_truly_best_spec_more_often_than_the_best_reading():
    """20 specs 0.1 points apart (a quarter of the noise): the best single reading is often a
    lucky one; the best mean of 3 fresh seeds among the top 3 is the true best far more often."""
    truth = 0.86 + 0.001 * np.arange(20)
    rng = np.random.default_rng(0)
    raw = confirmed = 0
    for _ in range(400):
        rows, confirmation = fake_search(truth, rng, top=3, seeds=3)
        raw += max(rows, key=lambda r: r.val_top1).trial == 19
        confirmed += confirmation.chosen.name == "19"
    assert confirmed / 400 > raw / 400 + 0.08, (raw, confirmed)


def test_the_cheaper_spec_wins_a_tie_and_not_a_clear_loss():
    """Two specs equal in truth, the second at half the MACs: the choice goes to the cheaper one
    almost always. Make the cheap one worse by 5 noise sds: it is almost never chosen (only when
    the pooled noise estimate, from 4 degrees of freedom, comes out large)."""
    rng = np.random.default_rng(1)
    tie = [fake_search(np.array([0.9, 0.9]), rng, 2, 3, macs=np.array([2.0, 1.0]))[1].chosen.name for _ in range(200)]
    assert tie.count("1") / 200 > 0.9
    loss = [fake_search(np.array([0.9, 0.9 - 5 * SIGMA]), rng, 2, 3, macs=np.array([2.0, 1.0]))[1].chosen.name
            for _ in range(200)]
    assert loss.count("0") >= 195


@pytest.mark.parametrize("seeds", [2, 3, 5])
def test_intervals_cover_the_true_values_at_their_nominal_rate(seeds):
    """Over 2,000 fake searches, a candidate's mean interval covers its true top-1, and its
    paired difference's interval the true difference from a reference, 95% of the time."""
    rng = np.random.default_rng(seeds)
    truth = np.array([0.85, 0.86, 0.87])
    references = {"ref_a": 0.865, "ref_b": 0.84}
    means = differences = total = 0
    for _ in range(2000):
        _, confirmation = fake_search(truth, rng, top=3, seeds=seeds, references=references)
        for spec in confirmation.specs:
            true = truth[int(spec.name)] if spec.kind == "candidate" else references[spec.name]
            means += spec.mean.covers(true)
            total += 1
        for c in confirmation.comparisons:
            differences += c.difference.covers(truth[int(c.candidate)] - references[c.reference])
    assert 0.94 < means / total < 0.96
    assert 0.94 < differences / (2000 * 6) < 0.96


def test_verdicts_follow_the_truth_when_it_is_clear():
    rng = np.random.default_rng(3)
    verdicts = []
    for _ in range(200):
        _, confirmation = fake_search(np.array([0.90, 0.80]), rng, top=1, seeds=3,
                                      references={"worse": 0.90 - 4 * SIGMA, "same": 0.90, "better": 0.90 + 4 * SIGMA})
        verdicts.append({c.reference: c.verdict for c in confirmation.comparisons})
    assert sum(v["worse"] == "beats" for v in verdicts) > 180
    assert sum(v["better"] == "loses to" for v in verdicts) > 180
    assert sum(v["same"] == "ties" for v in verdicts) > 180  # 95% nominal


def test_the_sentence_states_the_noise_and_what_it_rules_out():
    rng = np.random.default_rng(4)
    _, confirmation = fake_search(0.86 + 0.001 * np.arange(8), rng, top=2, seeds=3, references={"ref": 0.86})
    text = confirmation.sentence()
    assert f"{100 * confirmation.noise.sd:.2f} points" in text and "8 trained trials" in text
    assert "are not reliably ordered" in text
    # Equal trials are said to be a draw in most searches (the noise estimate is itself noisy: about
    # 80% over 300 seeds); trials two noise-widths apart never are.
    def called_chance(truth):
        return sum("mostly chance" in fake_search(truth, rng, top=2, seeds=3, references={"ref": 0.86})[1].sentence()
                   for _ in range(100))
    assert called_chance(np.full(8, 0.86)) >= 60
    assert called_chance(0.86 + 2 * SIGMA * np.arange(8)) == 0
    unmeasured = summarize([record(0, 0.9)], [])
    assert not unmeasured.noise.known and "not measured" in unmeasured.sentence() and unmeasured.chosen is None


def test_statistics_by_hand():
    assert binomial_se(0.86, 10_000) == pytest.approx(0.00347, abs=1e-5)
    noise = Noise.pooled([[0.80, 0.82], [0.90, 0.90, 0.93], [0.5]])  # the single run adds nothing
    assert (noise.dof, noise.specs) == (3, 2)
    assert noise.sd == pytest.approx(np.sqrt((2 * 0.01 ** 2 + 2 * 0.01 ** 2 + 0.02 ** 2) / 3))
    assert noise.t() == pytest.approx(3.182, abs=1e-3)  # Student's t, 3 degrees of freedom
    assert mean_interval([0.8, 0.82], noise).half == pytest.approx(3.182 * noise.sd / np.sqrt(2), rel=1e-3)
    d = paired_difference({1: 0.9, 2: 0.92, 3: 0.5}, {1: 0.88, 2: 0.9}, noise)  # seeds in common only
    assert d.mean == pytest.approx(0.02) and d.half == pytest.approx(3.182 * noise.sd, rel=1e-3)
    assert paired_difference({1: 0.9}, {2: 0.9}, noise) is None
    assert verdict(d) == "ties"


def test_a_candidate_that_is_a_reference_uses_its_runs_once():
    """The search may sample a reference preset's own network: it is not trained twice, its
    runs count once in the noise, and it ties with itself."""
    rows = [record(0, 0.90), record(1, 0.89)]
    rows[0].spec_hash = "ref-net"
    runs = [{"kind": k, "name": n, "seed": s, "val_top1": v, "macs": 1.0, "spec_hash": h}
            for k, n, h, values in (("reference", "net", "ref-net", (0.88, 0.90)), ("candidate", "1", "h1", (0.87, 0.87)))
            for s, v in zip((1, 2), values)]
    confirmation = summarize(rows, runs, rows)
    assert (confirmation.noise.dof, confirmation.noise.specs) == (2, 2)  # two networks, not three
    as_candidate = next(s for s in confirmation.specs if s.kind == "candidate" and s.name == "0")
    assert as_candidate.runs == {1: 0.88, 2: 0.90}
    (same,) = [c for c in confirmation.comparisons if c.candidate == "0"]
    assert same.difference.mean == 0 and same.verdict == "ties"


def test_noise_json_is_strict_json_when_the_noise_is_unknown():
    import json

    rows = [record(0, 0.9)]
    confirmation = summarize(rows, [{"kind": "candidate", "name": "0", "seed": 1, "val_top1": 0.9, "macs": 1.0,
                                     "spec_hash": "h0"}], rows)
    text = json.dumps(confirmation.to_dict(), allow_nan=False)  # raises on NaN
    assert json.loads(text)["specs"][0]["ci95"] == [None, None] and json.loads(text)["trials_spread_sd"] is None


def test_failed_runs_are_left_out_and_a_candidate_without_runs_is_not_chosen():
    rows = [record(0, 0.90), record(1, 0.89)]
    runs = [{"kind": "candidate", "name": "0", "seed": s, "val_top1": 0.0, "error": "OutOfMemoryError: ...",
             "macs": 1.0, "spec_hash": "h0"} for s in (1, 2)]
    runs += [{"kind": "candidate", "name": "1", "seed": s, "val_top1": v, "macs": 1.0, "spec_hash": "h1"}
             for s, v in ((1, 0.88), (2, 0.89))]
    confirmation = summarize(rows, runs, rows)
    assert [s.name for s in confirmation.specs] == ["1"] and confirmation.chosen.name == "1"
    assert summarize(rows, runs[:2], rows).chosen is None  # every run of the candidates failed
