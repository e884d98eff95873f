"""A search you can read, watch and share: the report (HTML, its figures, and how Chromium
shows it), optuna-dashboard and TensorBoard on one small real search shared by the module, and
the report of a run directory as a search leaves it midway (its searcher told, without Ray,
what trials report)."""

import base64
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings

import numpy as np
import optuna
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from cotsearch.report.plot import STOPPED_COLOR, plot_learning_curves, plot_pareto
from cotsearch.report.report import learning_curves, write_report
from cotsearch.search.records import STUDY_NAME, best_record, open_study, records, study_storage
from cotsearch.search.space import load_space
from cotsearch.search.trial_types import TrialConfig, TrialResult, failed

from helpers import MAX_MACS, REPO, cli, write_space

FIGURES = ("pareto", "best_so_far", "learning_curves", "importances", "choices")
TAB_BLUE = np.array([31, 119, 180])  # matplotlib's first colour: the plots draw their data with it


@pytest.fixture(scope="module")
def run_dir(small_search):
    return small_search[0]


@pytest.mark.slow
def test_a_search_ends_with_a_self_contained_report(run_dir, tmp_path):
    page = (run_dir / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(images) == len(FIGURES)
    for name, src in zip(FIGURES, images):  # each PNG beside the page is the one embedded in it
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (run_dir / f"{name}.png").read_bytes()
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: it opens offline
    study = open_study(run_dir)
    best = best_record(records(study))
    assert f"Best: trial {best.trial}, validation top-1 {best.val_top1:.2%}" in page
    trained = [r for r in records(study) if r.trained]
    assert len(trained) == 3 and all(f"<tr><td>{r.trial}</td>" in page for r in trained)
    assert page.count("spec against the base</summary>") == 3
    assert "name: small" in page and f"max_macs: {MAX_MACS}" in page  # the run's settings
    assert "In progress" not in page

    elsewhere = tmp_path / "shared" / "search.html"
    result = cli("report", run_dir, "-o", elsewhere)
    assert result.returncode == 0, result.stderr
    assert elsewhere.stat().st_size > 50_000 and all((elsewhere.parent / f"{n}.png").exists() for n in FIGURES)
    missing = cli("report", tmp_path / "nothing")
    assert missing.returncode == 2 and "not a cotsearch run directory" in missing.stderr


def blue_pixels(pixels: np.ndarray) -> int:
    return int((np.abs(pixels.astype(int) - TAB_BLUE).max(axis=-1) <= 12).sum())


def position_in(shot: np.ndarray, figure: np.ndarray) -> tuple[int, int] | None:
    """Where `figure` appears pixel for pixel in the screenshot (None: nowhere): its most
    varied row is looked for in the screenshot's pixels, then the whole image compared."""
    h, w, _ = figure.shape
    r = int((np.diff(figure.astype(int), axis=1) != 0).any(axis=-1).sum(axis=1).argmax())
    flat, needle, row = shot.tobytes(), figure[r].tobytes(), shot.shape[1] * 3
    at = flat.find(needle)
    while at >= 0:
        y, x = divmod(at, row)
        if x % 3 == 0 and y >= r and np.array_equal(shot[y - r:y - r + h, x // 3:x // 3 + w], figure):
            return y - r, x // 3
        at = flat.find(needle, at + 1)
    return None


@pytest.mark.slow
def test_chromium_shows_every_plot_of_the_report(run_dir, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (`make test` installs it when run as root)")
    shot = tmp_path / "shot.png"
    # As root Chromium needs --no-sandbox; the window is wide enough to show the figures at
    # their own size, pixel for pixel, and tall enough for the whole page.
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--force-device-scale-factor=1", "--window-size=1400,9000", f"--screenshot={shot}",
                    (run_dir / "report.html").as_uri()], capture_output=True, timeout=120, check=True)
    page = np.asarray(Image.open(shot).convert("RGB"))
    positions = []
    for name in FIGURES:
        figure = np.asarray(Image.open(run_dir / f"{name}.png").convert("RGB"))
        assert blue_pixels(figure) > 100, f"{name}.png has no data drawn"
        positions.append(position_in(page, figure))
        assert positions[-1] is not None, f"{name}.png is not on the page as Chromium shows it"
    assert positions == sorted(positions)  # in the report's order


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


@pytest.mark.slow
def test_dashboard_serves_the_runs_study(run_dir):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cotsearch.cli", "dashboard", str(run_dir), "--port", str(port)],
                              cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline, "the dashboard did not answer within 60 s"
                time.sleep(0.3)
        assert [s["study_name"] for s in studies] == [STUDY_NAME]
        served = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}")["trials"]
        trials = open_study(run_dir).trials
        assert [t["number"] for t in served] == [t.number for t in trials]
        for got, trial in zip(served, trials):
            assert got["state"] == trial.state.name.capitalize() and got.get("values") == trial.values
            attrs = {a["key"]: a["value"] for a in got["user_attrs"]}
            assert attrs["state"] == trial.user_attrs["state"]
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_tensorboard_holds_every_trials_learning_curve(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves = {}
    for events in run_dir.rglob("events.out.tfevents.*"):
        config = json.loads((events.parent / "params.json").read_text())  # Ray's trial config
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        curves[TrialConfig.from_ray(config).id.key] = {e.step: e.value for e in accumulator.Scalars("ray/tune/val_top1")}
    trained = [r for r in records(open_study(run_dir)) if r.trained]
    assert sorted(curves) == sorted(r.trial for r in trained)
    for r in trained:  # step: the epoch
        assert curves[r.trial][r.epochs] == pytest.approx(r.val_top1)


@pytest.fixture(scope="module")
def midway(tmp_path_factory, fake_fmnist):
    """A run directory as a search leaves it midway: the search's own searcher and study, told
    without Ray what the trials' workers report. Trial 0 is fully trained (2 epochs; Ray gave
    the searcher only the first, as it does when the scheduler stops a trial on its last epoch),
    trial 1 was stopped by ASHA after one, and each measured its latency while the other ran on
    node n1; trial 2 was priced over the MACs budget; trial 3 is running; trial 4 failed in its
    second epoch on node n2."""
    from cotsearch.search.searcher import StudySearcher, search_study

    tmp_path = tmp_path_factory.mktemp("midway")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    space = load_space(str(write_space(tmp_path, fake_fmnist, trials=6, train={"epochs": 2})))
    (run_dir / "space.json").write_text(space.model_dump_json(by_alias=True))
    (run_dir / "references.json").write_text(json.dumps([{"name": "cotnet_tiny", "val_top1": 0.65, "macs": 26742138,
                                                          "params": 535096, "latency_ms": 4.0, "epoch": 2}]))
    searcher = StudySearcher(space, search_study(space, run_dir), str(run_dir))
    now = time.time()

    def start(ray_id, *samples):
        """The trial the searcher sends Ray, drawn from these samples in turn (all but the last over budget)."""
        for s1, s2, se in samples:
            searcher.study.enqueue_trial({"stages.1.blocks": s1, "stages.2.blocks": s2, "se_ratio": se})
        return TrialConfig.from_ray(searcher.suggest(ray_id))

    def reported(config, started_s_ago, result=None, **fields):
        """What the trial's worker reports (cotsearch.search.trial), with keys of Ray's own."""
        base = {"spec_hash": config.spec_hash, "number": str(config.id), "trial_started_at": now - started_s_ago}
        return {**(result or TrialResult()).model_copy(update={**base, **fields}).report(), "training_iteration": 1}

    n1 = {"node": "n1", "latency_shared": True}
    t0, t1 = start("t0", ("conv", "cot", 0.0)), start("t1", ("cot", "cot", 0.0))
    searcher.on_trial_result("t0", reported(t0, 100, epoch=1, val_top1=0.5, latency_ms=5.0, duration_s=30, **n1))
    searcher.on_trial_complete("t0", reported(t0, 100, epoch=2, val_top1=0.7, latency_ms=5.0, duration_s=60, **n1))
    searcher.on_trial_complete("t1", reported(t1, 95, epoch=1, val_top1=0.3, latency_ms=45.0, duration_s=20, **n1))
    t3 = start("t3", ("conv", "se_conv", 0.25), ("cot", "conv", 0.0))
    searcher.on_trial_result("t3", reported(t3, 5, epoch=1, val_top1=0.6, duration_s=4))
    t4 = start("t4", ("cot", "se_conv", 0.0))
    n2 = {"node": "n2", "latency_ms": 4.0, "latency_shared": False}
    searcher.on_trial_result("t4", reported(t4, 98, epoch=1, val_top1=0.2, duration_s=6, **n2))
    searcher.on_trial_complete("t4", reported(t4, 98, failed("TrainingDiverged: loss is nan"), duration_s=10, **n2))
    assert [t.id.key for t in (t0, t1, t3, t4)] == [0, 1, 3, 4]  # trial 2: the sample over budget
    return run_dir


def test_report_of_a_search_midway(midway):
    page = write_report(midway).read_text()
    assert "In progress or stopped early: 3 of 6 trials finished, 1 running." in page
    assert "Parameter importances need at least 2 fully trained trials; the run has 1." in page
    assert "Best: trial 0, validation top-1 70.00% (one reading, not confirmed), test top-1 -" in page
    assert "<td>cotnet_tiny</td><td>65.00%</td>" in page  # the references
    assert page.count("(shared node)") == 2  # trials 0 and 1, in the top trials
    assert '<span class="del">-  blocks: cot</span>\n<span class="add">+  blocks: conv</span>' in page
    assert all((midway / f"{n}.png").stat().st_size > 5_000 for n in FIGURES)


def test_latency_is_marked_where_another_trial_shared_the_node(midway):
    study = open_study(midway)
    shared = {r.trial for r in records(study) if r.latency_shared}
    assert shared == {0, 1}  # the records the fixture wrote (trial 4 measured alone); the plot must mark them
    references = json.loads((midway / "references.json").read_text())
    macs, latency = plot_pareto(records(study), references, {"max_macs": MAX_MACS}).axes
    bottom, top = macs.get_ylim()
    assert (0.7 - 0.3) / (top - bottom) > 0.6  # the trained trials span the panel; infeasible ones do not squeeze it
    (infeasible,) = [c for c in macs.collections if c.get_label().startswith("infeasible")]
    (x, y), = infeasible.get_offsets()
    (over_budget,) = [r for r in records(study) if r.state == "infeasible"]
    assert x == pytest.approx(over_budget.macs / 1e6) and bottom < y < 0.3
    beside = [c for c in latency.collections if "beside another trial" in c.get_label()]
    assert sorted(x for c in beside for x in c.get_offsets()[:, 0]) == [5.0, 45.0]
    # the trial ASHA stopped is drawn apart, its reading labelled with the epochs it had
    stopped = [c for c in macs.collections if c.get_label().startswith("stopped by ASHA: reading after")]
    assert len(stopped) == 1 and "(not comparable)" in stopped[0].get_label()
    assert latency.get_xscale() == "log"  # 45 ms beside 4 and 5 ms: the others are not squeezed


def test_learning_curves_show_how_each_trial_ended(midway):
    study = open_study(midway)
    curves = learning_curves(study.trials)
    assert curves == {0: {1: 0.5, 2: 0.7}, 1: {1: 0.3}, 3: {1: 0.6}, 4: {1: 0.2}}
    (ax,) = plot_learning_curves(curves, {r.trial: r.state for r in records(study)}).axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "trained to the last epoch", "stopped by ASHA", "still running", "failed or interrupted"]
    ends = {tuple(c.get_offsets()[0]): [tuple(f) for f in c.get_facecolor()] for c in ax.collections}
    assert ends[(1.0, 0.3)] == [to_rgba(STOPPED_COLOR)] and ends[(2.0, 0.7)] == [to_rgba("tab:blue")]
    assert ends[(1.0, 0.6)] == []  # hollow: still running


def test_report_of_a_search_that_has_just_started(tmp_path, fake_fmnist):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    space = load_space(str(write_space(tmp_path, fake_fmnist, trials=3)))
    (run_dir / "space.json").write_text(space.model_dump_json(by_alias=True))
    optuna.create_study(storage=study_storage(run_dir), study_name=STUDY_NAME, direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # matplotlib's: an empty legend, say
        page = write_report(run_dir).read_text()
    assert "0 of 3 trials finished, 0 running" in page and "No trial is fully trained yet." in page
