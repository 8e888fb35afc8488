import random

import numpy as np
import pytest
import torch

import timm_nf  # noqa: F401  registers the models even where the start-up hook is not installed
from helpers import torch_threads


@pytest.fixture(autouse=True)
def _seed():
    # timm's train transforms draw from Python's `random` when a loader has no workers
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def keep_threads():
    """Restores torch's thread count: a command's --threads sets it for the process; later tests expect the default."""
    with torch_threads(torch.get_num_threads()):
        yield


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: a test that takes more than ~10 s on 2 CPU cores')
