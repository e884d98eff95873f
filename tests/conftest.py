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
