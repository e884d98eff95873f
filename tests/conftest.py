import json
import subprocess

import optuna
import pytest
import torch

from helpers import cli_train, fake_images, tune, write_idx, write_space


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def quiet_optuna():
    """Optuna's info lines (a study created, a trial finished) off for one test, then as they were."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory):
    """A small Fashion-MNIST-shaped IDX folder (400 train, 100 test) whose classes are visible."""
    folder = tmp_path_factory.mktemp("fmnist")
    write_idx(folder, "train", *fake_images(400))
    write_idx(folder, "t10k", *fake_images(100, seed=1))
    return folder


@pytest.fixture(scope="session")
def ray_address():
    """One local Ray cluster (2 CPUs) for the session's searches: each `tune --address`, and
    each driver a test runs in its own process, joins it instead of starting a Ray of its own."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    yield cluster.address
    cluster.shutdown()


@pytest.fixture(scope="session")
def small_search(tmp_path_factory, fake_fmnist, ray_address):
    """One small real search through the command line (3 trials, 2 at a time, latency measured
    with the node to itself), shared by the tests that only read its outputs: (run directory,
    finished process)."""
    tmp = tmp_path_factory.mktemp("search")
    result = tune(write_space(tmp, fake_fmnist, trials=3), "--out", tmp / "run", "--no-references", "--latency-isolated",
                  "--trial-timeout", "600", "--device", "cpu", "--address", ray_address)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp / "run", result


@pytest.fixture(scope="session")
def uninterrupted_training(fake_fmnist):
    """The summary (--json) of `cli_train` run once without a stop: what every stopped and
    resumed training must end with."""
    result = subprocess.run(cli_train(fake_fmnist), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])
