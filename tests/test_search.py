"""The search end to end, on a real Ray (local, or a cluster on 127.0.0.1): outputs, budgets,
nodes, GPUs, failures, and resuming after the driver is killed."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import optuna
import pytest

import cotsearch
from cotsearch.errors import CotsearchError
from cotsearch.search.records import open_study, records
from cotsearch.search.scaled_presets import scale_to_budget
from cotsearch.search.space import load_space

from helpers import MAX_MACS, SPACES, cli, rows, search_here, tune, write_cifar, write_space

pytestmark = pytest.mark.slow

def test_small_search_writes_every_output(small_search, tmp_path):
    run_dir, result = small_search
    assert re.search(r"search: trial \d+ started", result.stderr) and "epoch 1: val top-1" in result.stderr  # plain lines
    assert "WARNING" not in result.stderr and "Traceback" not in result.stderr  # nothing a user can do nothing about
    table = rows(run_dir)
    trained = [r for r in table if r["state"] in ("complete", "stopped")]
    assert len(trained) == 3
    assert all(float(r["macs"]) <= MAX_MACS for r in trained)  # no trained trial breaks the budget
    assert all(r["spec_hash"] and r["node"] and r["duration_s"] and float(r["latency_ms"]) > 0 for r in trained)
    assert {r["latency_shared"] for r in trained} == {"False"}  # --latency-isolated reached every trial's record
    settings = json.loads((run_dir / "space.json").read_text())  # the command's options reached the run
    assert settings["search"]["latency_isolated"] is True and settings["search"]["trial_timeout_s"] == 600
    assert settings["train"]["device"] == "cpu"
    study = open_study(run_dir)
    infeasible = [r for r in records(study) if r.state == "infeasible"]
    assert infeasible  # the budget cuts this space: some samples are priced over it
    for r in infeasible:  # priced, never built: no files
        assert r.macs > MAX_MACS and "over budget: max_macs" in r.reason
        assert not (run_dir / "trials" / f"{r.trial:04d}").exists()
    assert all(t.user_attrs["price_ms"] < 1000 for t in study.trials)
    best = cotsearch.load_model(run_dir / "best" / "model.safetensors")
    assert best.spec == cotsearch.load_spec(run_dir / "best" / "spec.yaml")
    assert estimate_macs(best) <= MAX_MACS
    assert (run_dir / "pareto.png").stat().st_size > 10_000
    assert "test top-1" in result.stdout and json.loads((run_dir / "best" / "result.json").read_text())["test_top1"] > 0

    out = tmp_path / "exported.safetensors"
    first = trained[0]["trial"]
    exported = cli("export", run_dir, "--trial", first, "-o", out)
    assert exported.returncode == 0, exported.stderr
    assert cotsearch.load_model(out).spec.spec_hash() == trained[0]["spec_hash"]
    missing = cli("export", run_dir, "--trial", "999", "-o", tmp_path / "x.safetensors")
    assert missing.returncode == 2 and "--trial 999: no such trial" in missing.stderr


def estimate_macs(model):
    from cotsearch.cost.analytic import estimate_cost

    return estimate_cost(model.spec).macs


def test_failing_trials_are_recorded_and_the_search_goes_on(tmp_path, fake_fmnist, ray_address):
    run_dir = tmp_path / "run"
    # lr 1e12 with plain SGD: the loss becomes NaN or infinite within the first steps. The space
    # pre-screens too (cheaply, by MACs), so that one real search shows the screen's lines.
    space = write_space(tmp_path, fake_fmnist, trials=2, train={"opt": "sgd", "lr": 1.0e12},
                        search={"prescreen": {"proxy": "macs", "pool": 20, "keep": 0.5}})
    result = tune(space, "--out", run_dir, "--no-references", "--address", ray_address)
    assert result.returncode == 0, result.stderr[-3000:]  # every trial failed: a result, not an error
    failed = [r for r in rows(run_dir) if r["state"] == "failed"]
    assert len(failed) == 2 and all("TrainingDiverged: loss is" in r["reason"] for r in failed)
    assert "no trial finished training" in result.stderr
    screen = [line for line in result.stderr.splitlines() if line.startswith("pre-screen: ")]
    assert screen[0].endswith("random feasible samples with macs") and "the best 50% of the pool may train" in screen[-1]
    # The scoring is done before Tune starts: its last line comes just before the search's progress.
    lines = result.stderr.splitlines()
    assert lines[lines.index(screen[-1]) + 1] == "search: 0 of 2 done"


def test_trials_spread_over_the_nodes_and_gpus_of_a_cluster(tmp_path, fake_fmnist, monkeypatch):
    """Two nodes of two CPUs and one GPU each (Ray's GPUs are resources: no device is needed),
    one CPU and one GPU per trial: the GPUs, not the CPUs, keep a node to one trial at a time;
    the trials run on both nodes and each sees exactly its node's GPU. The nodes are one machine:
    a trial on either that measured its latency while something trained on the machine says so."""
    from ray.cluster_utils import Cluster

    from cotsearch.process.node_gate import NodeGate

    # The nodes' temporary folder, so their trials' node gate, is this test's own: what trains
    # on the machine is then only what the test says (Ray's own files stay in /tmp: a socket's
    # path is short).
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("RAY_TMPDIR", "/tmp")
    gate_dir = tmp_path / f"cotsearch-{os.getuid()}"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=2, num_gpus=1)
    cluster.wait_for_nodes()
    try:
        run_dir = tmp_path / "run"
        # cotnet_tiny for 3 epochs, none stopped early: long enough for the two nodes' trials to overlap.
        space = write_space(tmp_path, fake_fmnist, trials=3, train={"device": "cpu", "epochs": 3},
                            search={"gpus_per_trial": 1, "scheduler": "none"}, base="cotnet_tiny", budgets={})
        with NodeGate(gate_dir) as gate, gate.training():  # a training on the machine throughout the search
            search_here(space, run_dir, cluster.address)
    finally:
        cluster.shutdown()
    study = open_study(run_dir)
    ran = [t.user_attrs for t in study.trials if "trial_started_at" in t.user_attrs]
    assert (gate_dir / "node.arrivals").stat().st_size >= 1 + 2 * len(ran)  # the test's, each trial's measuring, training
    spans = [(a["trial_started_at"], a["trial_started_at"] + a["duration_s"], (a["node"], a["gpu_ids"])) for a in ran]
    assert len(spans) == 3
    assert all(gpu == "0" for _, _, (_, gpu) in spans)  # each trial sees exactly one GPU: its node's
    assert len({node for _, _, (node, _) in spans}) == 2  # both nodes ran trials
    for start, _, _ in spans:  # at each trial's start: who runs then (itself included), on which node's GPU
        running = [where for s, e, where in spans if s <= start < e]
        assert len(set(running)) == len(running)  # never two trials on one GPU, though the CPUs would allow it
    assert all(a["latency_shared"] is True for a in ran)  # whichever node it ran on


def test_as_many_workers_start_together_as_the_cluster_runs_unless_the_user_says(monkeypatch):
    """Ray Tune reads TUNE_MAX_PENDING_TRIALS_PG when a search starts: ours while it runs, the user's if set."""
    from cotsearch.search.runner import _workers_started_together

    monkeypatch.delenv("TUNE_MAX_PENDING_TRIALS_PG", raising=False)
    with _workers_started_together(4):
        assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "4"
    assert "TUNE_MAX_PENDING_TRIALS_PG" not in os.environ
    monkeypatch.setenv("TUNE_MAX_PENDING_TRIALS_PG", "1")
    with _workers_started_together(4):
        assert os.environ["TUNE_MAX_PENDING_TRIALS_PG"] == "1"


def test_the_trials_a_cluster_runs_at_once_are_counted_as_ray_places_them(monkeypatch):
    from cotsearch.search import session
    from cotsearch.search.space import load_space

    nodes = [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    monkeypatch.setattr(session.ray, "nodes", lambda: nodes)
    space = load_space(SPACES / "cot_stages.yaml")

    def needing(cpus, gpus):
        return space.model_copy(update={"search": space.search.model_copy(update={"cpus_per_trial": cpus,
                                                                                 "gpus_per_trial": gpus})})

    def per_node(cpus, gpus):
        return session.trials_per_node(needing(cpus, gpus), session.alive_nodes())

    assert per_node(1, 0) == [16, 1] and per_node(0.1, 0) == [160, 10]  # 1.0 // 0.1 would say 9
    assert per_node(4, 1) == [2, 0] and per_node(1, 0.5) == [4, 0]
    assert per_node(32, 0) == [0, 0]  # the dead node's 64 CPUs run nothing
    session.check_resources(needing(16, 2))
    with pytest.raises(CotsearchError, match="--cpus-per-trial 32 --gpus-per-trial 0: no node of the Ray cluster"):
        session.check_resources(needing(32, 0))


def start_search(space, *args):
    """`cotsearch tune SPACE ARGS` in the background, in a process session of its own."""
    return subprocess.Popen([sys.executable, "-m", "cotsearch.cli", "tune", str(space), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_trials(proc, run_dir, finished: int, running: int, timeout=300) -> dict[int, float]:
    """Poll the study until `finished` trials are trained and `running` more are mid-way;
    returns the finished ones' val top-1 by trial number."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        # Opening the study while the driver still creates it would race its schema set-up
        # (both stamp the new database); once a trial has saved weights the study exists.
        if not list((run_dir / "trials").glob("*/model.safetensors")):
            continue
        study = optuna.load_study(study_name="cotsearch", storage=f"sqlite:///{run_dir / 'study.db'}")
        done = {t.number: t.user_attrs["val_top1"] for t in study.trials if t.user_attrs.get("state") in ("complete", "stopped")}
        live = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("on_ray")]
        if len(done) >= finished and len(live) >= running:
            return done
    pytest.fail(proc.stderr.read()[-3000:] if proc.poll() is not None else "the trials did not get there in time")


def check_resumed_run(run_dir, trials: int, finished_before: dict[int, float]) -> None:
    """Exactly `trials` trials ran to an end, the ones finished before the stop kept as they
    were, every interrupted trial run again with its parameters, and no spec trained twice."""
    study = open_study(run_dir)
    ended = [t for t in study.trials if t.user_attrs.get("on_ray")
             and t.user_attrs.get("state") in ("complete", "stopped", "failed", "infeasible")]
    assert len(ended) == trials
    trained = {t.number: t for t in ended if t.user_attrs["state"] in ("complete", "stopped")}
    for number, top1 in finished_before.items():
        assert trained[number].user_attrs["val_top1"] == top1
    hashes = [t.user_attrs["spec_hash"] for t in trained.values()]
    assert len(hashes) == len(set(hashes))
    # trials that were training when a stop came (not samples still waiting to start)
    interrupted = [r.trial for r in records(study) if r.state == "interrupted" and study.trials[r.trial].user_attrs.get("on_ray")]
    assert interrupted
    reruns = {t.user_attrs["rerun_of"]: t for t in study.trials if "rerun_of" in t.user_attrs}
    for number in interrupted:
        rerun = reruns[number]
        while rerun.user_attrs.get("state") is None:  # stopped again by the next stop: its own rerun ended it
            rerun = reruns[rerun.number]
        assert rerun.params == study.trials[number].params


def check_stopped(proc, space, run_dir, exit_code: int, interrupted_before: int = 0) -> int:
    """A driver stopped by a signal: the shell's exit code for it, how to resume, no traceback
    and no stack dump from Ray, and the trials it ran recorded as interrupted (more than the
    earlier stops left), none as running. Returns how many are."""
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == exit_code, err[-3000:]
    assert f"resume with: cotsearch tune {space} --resume {run_dir}" in err
    assert "Traceback" not in err and "Tuner.restore" not in err and "SIGTERM received" not in err  # Python's, Ray's
    states = [r["state"] for r in rows(run_dir)]
    assert states.count("interrupted") > interrupted_before and "running" not in states
    return states.count("interrupted")


def test_a_stopped_search_resumes_without_losing_or_repeating(tmp_path, fake_fmnist, ray_address):
    """Ctrl-C, then SIGTERM of the resumed run, then SIGKILL of the next: each time the trials
    that finished are kept, the interrupted ones run again first, a second process is refused
    while one runs, and the run ends with exactly the trials asked for, no spec trained twice.
    One search stopped each way, not one search per signal (test_signals): a search is a minute."""
    run_dir = tmp_path / "run"
    space = write_space(tmp_path, fake_fmnist, trials=5, train={"epochs": 2})
    args = ["--no-references", "--address", ray_address]
    proc = start_search(space, "--out", run_dir, *args)
    wait_for_trials(proc, run_dir, finished=1, running=1)
    second = tune(space, "--resume", run_dir, *args)
    assert second.returncode == 2 and "a search is already running in it (pid" in second.stderr
    proc.send_signal(signal.SIGINT)  # the driver alone, as Ctrl-C in a terminal reaches it
    interrupted = check_stopped(proc, space, run_dir, 130)

    proc = start_search(space, "--resume", run_dir, *args)
    wait_for_trials(proc, run_dir, finished=2, running=1)
    proc.send_signal(signal.SIGTERM)  # as `kill`, Slurm or Kubernetes sends it, to the driver
    check_stopped(proc, space, run_dir, 143, interrupted)

    proc = start_search(space, "--resume", run_dir, *args)
    finished = wait_for_trials(proc, run_dir, finished=3, running=1)
    os.killpg(proc.pid, signal.SIGKILL)  # no clean-up at all; its lock goes with it
    proc.wait()
    _, printed = search_here(space, run_dir, ray_address, resume=True)
    assert "resuming" in printed and "interrupted (run again first)" in printed
    check_resumed_run(run_dir, 5, finished)


ONE_SPEC_SPACE = """
name: rgb
base: cotnet_tiny
params:
  stages.1.blocks: {{choice: [cot, conv]}}
  stages.2.blocks: {{choice: [cot, conv, se_conv]}}
budgets: {{max_macs: 38.1e+6}}  # all 6 specs (34.1 M to 38.05 M at 32 px)
train: {{data: "cifar10:{data}", epochs: 1, val_size: 40, batch_size: 40}}
search: {{trials: 2, seed: 0, cpus_per_trial: 1, references: [cotnet_tiny@budget], confirm: {{top: 1, seeds: 2}}}}
"""


@pytest.fixture(scope="module")
def confirmed_search(tmp_path_factory, ray_address):
    """One search of ONE_SPEC_SPACE with its confirmation and reference (cotnet_tiny scaled to
    the budget): (space file, run directory, outcome, what it printed)."""
    tmp = tmp_path_factory.mktemp("confirmed")
    write_cifar(tmp / "cifar", n_per_batch=40)
    space = tmp / "space.yaml"
    space.write_text(ONE_SPEC_SPACE.format(data=tmp / "cifar"))
    outcome, printed = search_here(space, tmp / "run", ray_address)
    return space, tmp / "run", outcome, printed


def test_every_record_of_a_trial_describes_the_network_it_trained(confirmed_search):
    """The base spec has 1 channel at 28 px, the data 3 channels at 32 px: the study's spec
    and hash, the trial's spec.yaml and model file, best/ and the references all describe
    the one network that trained, fitted to the data (the reference: cotnet_tiny fitted, then
    scaled by width to the budget)."""
    space, run_dir, outcome, printed = confirmed_search
    trained = [r for r in records(open_study(run_dir)) if r.trained]
    assert len(trained) == 2
    for r in trained:
        recorded = cotsearch.BackboneSpec.model_validate_json(r.spec_json)
        on_disk = cotsearch.load_spec(run_dir / "trials" / f"{r.trial:04d}" / "spec.yaml")
        in_file = cotsearch.read_metadata(run_dir / "trials" / f"{r.trial:04d}" / "model.safetensors")[0]
        assert recorded == on_disk == in_file and r.spec_hash == recorded.spec_hash()
        assert (recorded.in_chans, recorded.input_size) == (3, 32)
        assert r.macs == cotsearch.estimate_cost(recorded).macs  # priced as trained
    best = cotsearch.load_model(run_dir / "best" / "model.safetensors")
    assert best.spec == cotsearch.load_spec(run_dir / "best" / "spec.yaml")
    assert best.spec.spec_hash() in {r.spec_hash for r in trained}
    scaled = scale_to_budget(load_space(str(space)), "cotnet_tiny")
    assert 1 < scaled.factor and 34.2e6 < scaled.cost.macs <= 38.1e6  # wider than cotnet_tiny (34.1 M)
    described = f"the references cotnet_tiny@budget (x{scaled.factor:.2f} width, {scaled.cost.macs / 1e6:.2f} M MACs)"
    assert described in printed
    for seed in (1, 2):  # the confirmation's fresh seeds (the search trained with seed 0)
        trial = run_dir / "trials" / f"ref-cotnet_tiny@budget-s{seed}"
        reference = cotsearch.read_metadata(trial / "model.safetensors")[0]
        assert reference == cotsearch.load_spec(trial / "spec.yaml") == scaled.spec
        assert (reference.in_chans, reference.input_size) == (3, 32)
        confirmed = cotsearch.load_spec(run_dir / "trials" / f"confirm-{outcome.best_trial}-s{seed}" / "spec.yaml")
        assert confirmed == best.spec  # the chosen trial's own spec, trained again
    # the confirmed winner, its interval and a verdict against the reference, in the output and noise.json
    noise = json.loads((run_dir / "noise.json").read_text())
    assert noise["chosen"] == {"kind": "candidate", "name": str(outcome.best_trial)}
    assert [len(s["runs"]) for s in noise["specs"]] == [2, 2] and noise["dof"] == 2
    verdict = noise["comparisons"][0]["verdict"]
    diff = noise["comparisons"][0]
    assert (f"verdict: trial {outcome.best_trial} {verdict} cotnet_tiny@budget ({100 * diff['difference']:+.2f} ± "
            f"{50 * (diff['ci95'][1] - diff['ci95'][0]):.2f} points, 95% CI, same seeds)") in printed
    assert "noise: " in printed and "confirmed val top-1" in printed


def test_a_search_stopped_in_its_confirmation_resumes_it_and_retries_a_failed_run(confirmed_search, tmp_path,
                                                                                   ray_address):
    """As if the search had stopped during its confirmation (one run never recorded) after a
    run had failed: --resume trains exactly those two runs again, no search trial, and ends
    with the same confirmed choice and noise (same seeds, same machine: the same numbers)."""
    space, finished, outcome, _ = confirmed_search
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    runs = json.loads((run_dir / "confirm.json").read_text())
    lost, failed = runs[0]["number"], runs[1]["number"]
    runs = [{**r, "error": "the trial's worker died"} if r["number"] == failed else r for r in runs[1:]]
    (run_dir / "confirm.json").write_text(json.dumps(runs))
    models = {p.parent.name: p.stat().st_mtime_ns for p in (run_dir / "trials").glob("*/model.safetensors")}
    resumed, printed = search_here(space, run_dir, ray_address, resume=True)
    assert "confirming: training" in printed
    written = {p.parent.name for p in (run_dir / "trials").glob("*/model.safetensors")
               if p.stat().st_mtime_ns != models.get(p.parent.name)}
    assert written == {lost, failed}
    assert len([r for r in records(open_study(run_dir)) if r.trained]) == 2  # no search trial trained again
    after = json.loads((run_dir / "confirm.json").read_text())
    assert sorted(r["number"] for r in after) == sorted(r["number"] for r in json.loads((finished / "confirm.json").read_text()))
    assert not any(r.get("error") for r in after)
    assert resumed.best_trial == outcome.best_trial
    assert json.loads((run_dir / "noise.json").read_text()) == json.loads((finished / "noise.json").read_text())
