import os

os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
