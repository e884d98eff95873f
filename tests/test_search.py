"""The search end to end, on a real Ray (local, or a cluster on 127.0.0.1): outputs, budgets,
nodes, GPUs, failures, and resuming after the driver is killed."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

import cotsearch
from cotsearch.search.records import open_study, records
from helpers import rows, tune, write_space

pytestmark = pytest.mark.slow

def test_small_search_writes_every_output(tmp_path, fake_fmnist):
    run_dir = tmp_path / "run"
    result = tune(str(write_space(tmp_path, fake_fmnist, trials=3)), "--out", str(run_dir), "--no-references")
    assert result.returncode == 0, result.stderr[-3000:]
    table = rows(run_dir)
    trained = [r for r in table if r["state"] in ("complete", "stopped")]
    assert len(trained) == 3
    assert all(float(r["macs"]) <= 28e6 for r in trained)  # no trained trial breaks the budget
    assert all(r["spec_hash"] and r["node"] and r["duration_s"] and float(r["latency_ms"]) > 0 for r in trained)
    study = open_study(run_dir)
    for r in records(study):
        if r.state == "infeasible":  # priced, never built: no files, and fast
            assert r.macs > 28e6 and "over budget: max_macs" in r.reason
            assert not (run_dir / "trials" / f"{r.trial:04d}").exists()
    assert all(t.user_attrs["price_ms"] < 1000 for t in study.trials)
    best = cotsearch.load_model(run_dir / "best" / "model.safetensors")
    assert best.spec == cotsearch.load_spec(run_dir / "best" / "spec.yaml")
    assert estimate_macs(best) <= 28e6
    assert (run_dir / "pareto.png").stat().st_size > 10_000
    assert "test top-1" in result.stdout and json.loads((run_dir / "best" / "result.json").read_text())["test_top1"] > 0

    out = tmp_path / "exported.safetensors"
    first = trained[0]["trial"]
    exported = subprocess.run([sys.executable, "-m", "cotsearch.cli", "export", str(run_dir), "--trial", first,
                               "-o", str(out)], capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr
    assert cotsearch.load_model(out).spec.spec_hash() == trained[0]["spec_hash"]
    missing = subprocess.run([sys.executable, "-m", "cotsearch.cli", "export", str(run_dir), "--trial", "999",
                              "-o", str(tmp_path / "x.safetensors")], capture_output=True, text=True)
    assert missing.returncode == 2 and "--trial 999: no such trial" in missing.stderr


def estimate_macs(model):
    from cotsearch.cost.analytic import estimate_cost

    return estimate_cost(model.spec).macs


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path, fake_fmnist):
    run_dir = tmp_path / "run"
    # lr 1e12 with plain SGD: the loss becomes NaN or infinite within the first steps.
    space = write_space(tmp_path, fake_fmnist, trials=2, train_extra=", opt: sgd, lr: 1.0e+12")
    result = tune(str(space), "--out", str(run_dir), "--no-references")
    assert result.returncode == 0, result.stderr[-3000:]
    failed = [r for r in rows(run_dir) if r["state"] == "failed"]
    assert len(failed) == 2 and all("TrainingDiverged: loss is" in r["reason"] for r in failed)
    assert "no trial finished training" in result.stderr


def start_cluster(nodes: int, cpus: int, gpus: int = 0):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus, "num_gpus": gpus, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=cpus)
    cluster.wait_for_nodes()
    return cluster


def test_trials_run_on_both_nodes_of_a_cluster(tmp_path, fake_fmnist):
    cluster = start_cluster(nodes=2, cpus=1)
    try:
        run_dir = tmp_path / "run"
        result = tune(str(write_space(tmp_path, fake_fmnist, trials=4)), "--out", str(run_dir), "--no-references",
                      "--address", cluster.address)
        assert result.returncode == 0, result.stderr[-3000:]
        nodes = {r["node"] for r in rows(run_dir) if r["state"] in ("complete", "stopped")}
        assert len(nodes) == 2, nodes
    finally:
        cluster.shutdown()


def test_one_gpu_per_trial_with_two_gpus(tmp_path, fake_fmnist):
    cluster = start_cluster(nodes=1, cpus=4, gpus=2)
    try:
        run_dir = tmp_path / "run"
        result = tune(str(write_space(tmp_path, fake_fmnist, trials=5)), "--out", str(run_dir), "--no-references",
                      "--address", cluster.address, "--gpus-per-trial", "1", "--device", "cpu")
        assert result.returncode == 0, result.stderr[-3000:]
    finally:
        cluster.shutdown()
    study = open_study(run_dir)
    spans = [(t.user_attrs["trial_started_at"], t.user_attrs["trial_started_at"] + t.user_attrs["duration_s"],
              t.user_attrs["gpu_ids"]) for t in study.trials if "trial_started_at" in t.user_attrs]
    assert len(spans) == 5
    assert all(gpu in ("0", "1") for _, _, gpu in spans)  # each trial sees exactly one GPU
    for start, end, gpu in spans:
        overlapping = [g for s, e, g in spans if s < end and e > start]  # itself included
        assert len(overlapping) <= 2 and len(set(overlapping)) == len(overlapping)


def test_killed_search_resumes_without_losing_or_repeating(tmp_path, fake_fmnist):
    run_dir = tmp_path / "run"
    space = write_space(tmp_path, fake_fmnist, trials=5)
    proc = subprocess.Popen([sys.executable, "-m", "cotsearch.cli", "tune", str(space), "--out", str(run_dir),
                             "--no-references"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    finished_before = []
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        # Opening the study while the driver still creates it would race its schema set-up
        # (both stamp the new database); once a trial has saved weights the study exists.
        if not list((run_dir / "trials").glob("*/model.safetensors")):
            continue
        study = optuna.load_study(study_name="cotsearch", storage=f"sqlite:///{run_dir / 'study.db'}")
        done = [t for t in study.trials if t.user_attrs.get("state") in ("complete", "stopped")]
        if len(done) >= 2:
            finished_before = {t.number: t.user_attrs["val_top1"] for t in done}
            break
    assert finished_before, proc.stderr.read().decode()[-3000:] if proc.poll() is not None else "no trial finished in time"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()

    result = tune(str(space), "--resume", str(run_dir), "--no-references")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" in result.stderr
    study = open_study(run_dir)
    trained = {t.number: t for t in study.trials if t.user_attrs.get("state") in ("complete", "stopped")}
    assert len(trained) == 5
    for number, top1 in finished_before.items():  # kept as they were, not run again
        assert trained[number].user_attrs["val_top1"] == top1
    starts = [t.user_attrs["trial_started_at"] for t in trained.values()]
    assert len(set(starts)) == len(starts)
