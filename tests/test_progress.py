"""What a search shows while it runs: a live bar on a terminal, plain lines elsewhere."""

import io
from types import SimpleNamespace

import optuna
import pytest
from rich.console import Console

import cotsearch
from cotsearch.search.progress import SearchProgress
from cotsearch.search.records import STUDY_NAME, study_storage
from cotsearch.search.trial_types import TrialConfig, search_trial


def fake_trial(number, **last):
    spec = cotsearch.load_spec("cotnet_tiny")
    config = TrialConfig(id=search_trial(number), spec=spec, cost=cotsearch.estimate_cost(spec))
    return SimpleNamespace(config=config.ray_config(), last_result=last)


def run_events(console, run_dir):
    study = optuna.create_study(study_name=STUDY_NAME, storage=study_storage(run_dir))
    trial = study.ask()
    for key, value in {"state": "complete", "val_top1": 0.875, "on_ray": True}.items():
        trial.set_user_attr(key, value)
    progress = SearchProgress(study, run_dir, console)
    with progress.start("search", total=3, done=1):
        progress.on_trial_start(0, [], fake_trial(7))
        progress.on_trial_result(0, [], fake_trial(7), {"epoch": 2, "val_top1": 0.5})
        study.tell(trial, 0.875)
        progress.on_trial_complete(0, [], fake_trial(7, epoch=3, val_top1=0.875))
    return progress


@pytest.mark.parametrize("terminal", [False, True])
def test_every_trial_event_is_shown(tmp_path, terminal):
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=120, color_system=None)
    progress = run_events(console, tmp_path)
    text = out.getvalue()
    for event in ("trial 7 started", "trial 7 epoch 2: val top-1 50.00%", "trial 7 val top-1 87.50% after 3 epochs"):
        assert event in text
    assert progress.done == 2 and (tmp_path / "trials.csv").exists()
    if terminal:  # the live bar: done out of the total, and the best so far
        assert "2/3" in text and "best 87.5% (#0)" in text
    else:  # one plain line per event, each with the phase and the counts
        lines = [line for line in text.splitlines() if "trial 7" in line]
        assert len(lines) == 3 and all("search: " in line and "/3" in line for line in lines)
        assert "done 2/3" in lines[-1] and "best 87.5% (#0)" in lines[-1]


def test_a_ctrl_c_lost_in_a_finalizer_still_stops_the_search():
    """Ctrl-C raises KeyboardInterrupt where the driver is; where that is swallowed (as in a
    __del__), Tune's next step raises it again, so the search stops all the same."""
    import os
    import signal
    import time

    from cotsearch.process.ctrl_c import CtrlC

    ctrl_c = CtrlC()
    before = signal.getsignal(signal.SIGINT)
    with ctrl_c.handling():
        ctrl_c.on_step_begin(0, [])  # no press yet: Tune goes on
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler raises here, at the latest
        except KeyboardInterrupt:
            pass  # lost, as a finalizer would lose it
        with pytest.raises(KeyboardInterrupt):
            ctrl_c.on_step_begin(1, [])
    assert signal.getsignal(signal.SIGINT) is before  # the command's own handling is back


@pytest.mark.slow
def test_ray_tune_stops_at_its_next_step_once_ctrl_c_was_pressed(ray_address, tmp_path):
    """The callback in a real Tuner: a press remembered before Tune's loop ends the run there."""
    import ray
    from ray import tune

    from cotsearch.process.ctrl_c import CtrlC

    def forever(config):
        while True:
            tune.report({"alive": 1})

    ctrl_c = CtrlC()
    ctrl_c.pressed.set()
    ray.init(address=ray_address, log_to_driver=False)
    try:
        tuner = tune.Tuner(forever, run_config=tune.RunConfig(storage_path=str(tmp_path), callbacks=[ctrl_c], verbose=0))
        with pytest.raises(KeyboardInterrupt):
            tuner.fit()
    finally:
        ray.shutdown()
