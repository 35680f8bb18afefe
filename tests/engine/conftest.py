"""Fixtures shared by the engine tests."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Small tensors on a shared 2-core machine: one intra-op thread is several times faster
    (REFERENCE.md, "Measured on this machine"). Files use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
