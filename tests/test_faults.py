"""Faults: out-of-memory, hung and killed trials, unwritable or full run directories,
interrupted writes. (Raising and NaN trials, SIGKILL of the driver: tests/test_search.py;
bad inputs: tests/test_fuzz.py; tampered model files: tests/test_model_file.py.)"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

import cotsearch
from cotsearch.cost.analytic import estimate_cost
from cotsearch.cost.memory import OutOfMemory, check_fits
from cotsearch.errors import CotsearchError
from cotsearch.files import atomic_write_bytes
from cotsearch.process.watchdog import FAILURE_NOTE
from cotsearch.search import rundir
from cotsearch.search.rundir import prepare_run_dir
from cotsearch.search.space import load_space

from helpers import SPACES, cli, rows, search_here, tune, write_space


def test_spec_too_big_for_the_device_is_refused_before_building(monkeypatch):
    import torch

    monkeypatch.setattr(cotsearch.CoTNet, "__init__", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(OutOfMemory, match=r"se_cotnetd_152: too big for cpu: training at batch 4096 at 320 px needs about [\d,.]+ GiB"):
        check_fits("se_cotnetd_152", estimate_cost(cotsearch.load_spec("se_cotnetd_152"), 320), 4096,
                   torch.device("cpu"), training=True)
    check_fits("cotnet_tiny", estimate_cost(cotsearch.load_spec("cotnet_tiny")), 64, torch.device("cpu"), training=True)


@pytest.mark.slow
def test_trial_out_of_memory_is_a_failed_trial(tmp_path, fake_fmnist, ray_address):
    run_dir = tmp_path / "run"
    space = write_space(tmp_path, fake_fmnist, trials=2, train={"batch_size": 65536})
    search_here(space, run_dir, ray_address)
    failed = [r for r in rows(run_dir) if r["state"] == "failed"]
    assert len(failed) == 2 and all("OutOfMemory" in r["reason"] and "too big for cpu" in r["reason"] for r in failed)


@pytest.mark.slow
def test_hung_trial_fails_at_its_timeout(tmp_path, fake_fmnist, ray_address):
    run_dir = tmp_path / "run"
    space = write_space(tmp_path, fake_fmnist, trials=2, train={"epochs": 200},  # no early stopping before the timeout
                        search={"max_retries": 0, "scheduler": "none", "trial_timeout_s": 5})
    started = time.time()
    search_here(space, run_dir, ray_address)
    failed = [r for r in rows(run_dir) if r["state"] == "failed"]
    assert len(failed) == 2 and all("timeout: still running after the trial_timeout_s of 5 s" in r["reason"] for r in failed)
    assert time.time() - started < 120


WATCHED = """
import sys, time
from pathlib import Path
from cotsearch.process.watchdog import Watchdog
dog = Watchdog(0.2, Path(sys.argv[1]))
try:
    with dog.waiting_on_ray():  # a report that Ray holds past the trial's limit
        time.sleep(0.5)
        if sys.argv[2] == "stopped":
            raise SystemExit(0)  # as Ray ends a stopped trial's report when its worker is reused
except SystemExit:
    time.sleep(0.5)
    print("the worker lives on")
    raise
print("past the limit")
"""


@pytest.mark.parametrize("report, code, printed, note", [("returns", 1, "", True),
                                                       ("stopped", 0, "the worker lives on\n", False)])
def test_a_trial_waiting_on_ray_is_not_hung(tmp_path, report, code, printed, note):
    """Past its limit while Ray holds it in a report, a trial that goes on is ended as it
    leaves the report; one that Ray stopped leaves its worker alive for the next trial."""
    result = subprocess.run([sys.executable, "-c", WATCHED, str(tmp_path), report], capture_output=True, text=True,
                            check=False, timeout=60)
    assert (result.returncode, result.stdout) == (code, printed), result.stderr
    assert (tmp_path / FAILURE_NOTE).exists() == note


@pytest.mark.slow
def test_killed_worker_node_ends_with_the_trial_retried_or_failed(tmp_path, fake_fmnist):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    run_dir = tmp_path / "run"
    killed, search_over = threading.Event(), threading.Event()

    def kill_the_second_node():
        while not search_over.is_set() and not list((run_dir / "trials").glob("*/model.safetensors")):
            search_over.wait(0.2)  # both nodes are busy once a trial has finished an epoch
        if not search_over.is_set():
            cluster.remove_node(nodes[1], allow_graceful=False)
            killed.set()

    killer = threading.Thread(target=kill_the_second_node)
    try:
        killer.start()
        search_here(write_space(tmp_path, fake_fmnist, trials=2, train={"epochs": 3}), run_dir, cluster.address)
    finally:
        search_over.set()
        killer.join()
        cluster.shutdown()
    assert killed.is_set()  # mid-search
    table = rows(run_dir)
    done = [r for r in table if r["state"] in ("complete", "stopped", "failed")]
    assert len(done) == 2, table  # the search completed: every requested trial ended
    assert all(r["reason"] for r in done if r["state"] == "failed")


def test_unwritable_run_directory_is_reported_at_start(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = cli("tune", SPACES / "cot_stages.yaml", "--out", blocker / "run", timeout=120)
    assert result.returncode == 2 and "cannot write the run directory" in result.stderr
    assert result.stderr.count("\n") == 1


def test_full_disk_is_reported_at_start(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 10 * 2**20})())
    with pytest.raises(CotsearchError, match="only 10 MiB free on its disk"):
        prepare_run_dir(load_space(SPACES / "cot_stages.yaml"), tmp_path / "run", resume=False)


def test_existing_run_directory_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "trials.csv").write_text("precious")
    (tmp_path / "run" / rundir.SPACE_FILE).write_text("{}")  # what makes it a run directory
    with pytest.raises(CotsearchError, match="already holds a run; continue it with --resume"):
        prepare_run_dir(load_space(SPACES / "cot_stages.yaml"), tmp_path / "run", resume=False)
    assert (tmp_path / "run" / "trials.csv").read_text() == "precious"


def test_interrupted_write_leaves_no_half_file(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"the previous version")

    def crash(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"x" * 1_000_000)
    assert target.read_bytes() == b"the previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temporary left behind


@pytest.mark.slow
@pytest.mark.parametrize("data, extra, message", [
    ("cifar10:/nonexistent", [], "/nonexistent: no such folder; expected the cifar10 data set there"),
    ("folder:{tmp}/empty", [], "empty: no class folders"),
    (None, ["--cpus-per-trial", "100"], "--cpus-per-trial 100 --gpus-per-trial 0: no node of the Ray cluster has that"),
    (None, ["--gpus-per-trial", "1"], "--gpus-per-trial 1: no node of the Ray cluster has that much"),
])
def test_a_search_that_cannot_run_stops_at_start_with_one_line(tmp_path, fake_fmnist, ray_address, data, extra, message):
    (tmp_path / "empty").mkdir()
    space = write_space(tmp_path, fake_fmnist, trials=1)
    if data is not None:
        space.write_text(space.read_text().replace(f"fashion-mnist:{fake_fmnist}", data.format(tmp=tmp_path)))
    result = tune(space, "--out", tmp_path / "run", "--no-references", "--address", ray_address, *extra, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_run_directory_in_use_is_reported_before_ray_starts(tmp_path):
    """check_run_dir (what the command line checks before Ray) names the process running the search."""
    space = load_space(SPACES / "cot_stages.yaml")
    _, lock = prepare_run_dir(space, tmp_path / "run", resume=False)
    with pytest.raises(CotsearchError, match=rf"a search is already running in it \(pid {os.getpid()}\)"):
        rundir.check_run_dir(space, tmp_path / "run", resume=True)
    lock.close()
    rundir.check_run_dir(space, tmp_path / "run", resume=True)  # the lock went with its holder


def test_resume_with_a_changed_space_names_the_field(tmp_path):
    space = load_space(SPACES / "cot_stages.yaml")
    _, lock = prepare_run_dir(space, tmp_path / "run", resume=False)
    lock.close()
    changed = space.model_copy(update={"train": space.train.model_copy(update={"epochs": 5})})
    with pytest.raises(CotsearchError, match=r"--resume .*: train.epochs differs from the space this run was started with"):
        prepare_run_dir(changed, tmp_path / "run", resume=True)
    saved = json.loads((tmp_path / "run" / rundir.SPACE_FILE).read_text())
    saved["train"]["eval_batch_size"] = 512  # the default of earlier versions: it changes no result
    (tmp_path / "run" / rundir.SPACE_FILE).write_text(json.dumps(saved))
    more_trials = space.model_copy(update={"search": space.search.model_copy(update={"trials": 40})})
    resumed, lock = prepare_run_dir(more_trials, tmp_path / "run", resume=True)  # search settings may change
    lock.close()
    assert resumed.search.trials == 40
