import pytest
import torch
from helpers import fake_images, write_idx


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def fake_fmnist(tmp_path_factory):
    """A small Fashion-MNIST-shaped IDX folder (600 train, 100 test) whose classes are visible."""
    folder = tmp_path_factory.mktemp("fmnist")
    write_idx(folder, "train", *fake_images(600))
    write_idx(folder, "t10k", *fake_images(100, seed=1))
    return folder


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray cluster (2 CPUs) for a module's searches: each `tune --address` joins it
    instead of starting and stopping a Ray of its own."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    yield cluster.address
    cluster.shutdown()
