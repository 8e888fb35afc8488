import random

import numpy as np
import pytest
import torch

import timm_nf  # noqa: F401  registers the models even where the start-up hook is not installed


@pytest.fixture(autouse=True)
def _seed():
    # timm's train transforms draw from Python's `random` when a loader has no workers
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: a test that takes more than ~10 s on 2 CPU cores')
