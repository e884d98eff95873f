"""A trial's life in the driver, without a Ray cluster: its id read back from its text, what the
searcher records of a trial (under the cost model's names, checked against the spec it sent),
and the Tuner every phase runs its trials with."""

import io

import optuna
import pytest
from rich.console import Console

from cotsearch.search.records import records
from cotsearch.search.searcher import StudySearcher
from cotsearch.search.space import load_space
from cotsearch.search.trial_types import TrialConfig, TrialId, TrialKind, TrialResult, TrialState

from helpers import write_space


def test_a_trial_id_reads_back_from_its_text_and_names_its_folder():
    ids = {TrialId(kind=TrialKind.SEARCH, key=7): "0007",
           TrialId(kind=TrialKind.CONFIRM, key=7, seed=1): "confirm-7-s1",
           TrialId(kind=TrialKind.REFERENCE, key="cotnet_tiny", seed=2): "ref-cotnet_tiny-s2",
           TrialId(kind=TrialKind.REFERENCE, key="cotnet_tiny"): "ref-cotnet_tiny",  # a run from before the confirmation
           TrialId(kind=TrialKind.SWEEP, key="0a1b2c3d4e5f", seed=0): "0a1b2c3d4e5f-s0"}
    for trial, folder in ids.items():
        assert TrialId.parse(str(trial)) == trial and trial.dirname == folder
    assert str(TrialId.parse("0007")) == "7"
    assert [TrialId.parse(text) for text in ("abc", "confirm-x-s1", "")] == [None, None, None]


@pytest.fixture
def searcher(tmp_path, fake_fmnist):
    space = load_space(str(write_space(tmp_path, fake_fmnist, trials=2)))
    return StudySearcher(space, optuna.create_study(direction="maximize"), str(tmp_path))


def test_the_study_keeps_a_trials_costs_under_the_cost_models_names(searcher):
    config = TrialConfig.from_ray(searcher.suggest("t0"))
    ray_keys = {"training_iteration": 1, "trial_id": "t0", "done": True}  # Tune's own, beside the trial's
    searcher.on_trial_complete("t0", {**TrialResult(epoch=1, val_top1=0.5, val_images=100,
                                                    spec_hash=config.spec_hash).report(), **ray_keys})
    (record,) = [r for r in records(searcher.study) if r.on_ray]
    assert (record.state, record.val_top1, record.val_images, record.spec_hash) == (
        TrialState.COMPLETE, 0.5, 100, config.spec_hash)
    assert (record.macs, record.macs_conv, record.params) == (config.cost.macs, config.cost.macs_conv, config.cost.params)
    attrs = searcher.study.trials[record.trial].user_attrs
    assert (attrs["macs"], attrs["params"]) == (config.cost.macs, config.cost.params)


def test_a_result_for_another_network_than_the_one_sent_is_not_recorded_as_its(searcher):
    config = TrialConfig.from_ray(searcher.suggest("t0"))
    searcher.on_trial_complete("t0", TrialResult(epoch=1, val_top1=0.9, spec_hash="0123456789ab").report())
    (record,) = [r for r in records(searcher.study) if r.on_ray]
    assert record.state == TrialState.FAILED and record.val_top1 is None
    assert record.reason == f"the worker built spec 0123456789ab, not the {config.spec_hash} it was sent"


def test_every_phase_runs_its_trials_with_the_same_failure_handling_and_concurrency(monkeypatch, tmp_path,
                                                                                      fake_fmnist):
    """The search, the confirmation (here, the references') and a sweep: a trial whose worker
    dies is run again `max_retries` times, and at most `max_concurrent_trials` run at once."""
    from ray import tune

    from cotsearch.bench import sweep_runner
    from cotsearch.bench.sweep import row_configs, sample_specs
    from cotsearch.process.ctrl_c import CtrlC
    from cotsearch.search import confirm_phase, runner
    from cotsearch.search.progress import SearchProgress

    made = {}

    class Tuner:
        def __init__(self, trainable, param_space=None, tune_config=None, run_config=None):
            made[run_config.name] = tune_config, run_config

        def fit(self):
            pass

    monkeypatch.setattr(tune, "Tuner", Tuner)
    space = load_space(str(write_space(tmp_path, fake_fmnist, trials=2, search={
        "max_concurrent_trials": 1, "max_retries": 3, "references": ["cotnet_tiny"]})))
    study = optuna.create_study(direction="maximize")
    progress = SearchProgress(study, tmp_path, Console(file=io.StringIO()))
    runner._run_trials(space, tmp_path, study, progress, CtrlC())
    confirm_phase.run_confirmation(space, tmp_path, records(study), progress, CtrlC())
    sweep_runner._train(space, tmp_path, row_configs(sample_specs(space, 1, 0), 1, 0), [])
    assert set(made) == {"ray-search-1", "ray-confirm", "ray-sweep-1"}
    for name, (tune_config, run_config) in made.items():
        assert (run_config.failure_config.max_failures, tune_config.max_concurrent_trials) == (3, 1), name
