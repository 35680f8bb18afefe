"""Device selection (``--device``): the default, and a clear message for devices this machine lacks."""
from __future__ import annotations

import pytest
import torch

from detengine.train.trainer import pick_device


def test_default_is_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device(None) == torch.device("cpu") and pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None) == torch.device("cuda") and pick_device("") == torch.device("cuda")


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no usable CUDA GPU; use --device cpu"):
        pick_device("cuda")


@pytest.mark.parametrize("count,shown", [(1, r"1 CUDA GPU \(cuda:0\)"), (2, r"2 CUDA GPUs \(cuda:0 \.\. cuda:1\)")])
def test_a_gpu_index_the_machine_lacks_is_refused_before_anything_runs(monkeypatch, count, shown):
    """On a one-GPU machine ``--device cuda:7`` failed deep in ``model.to`` with CUDA's 'invalid device
    ordinal' traceback (bench/gpu_smoke.py on an H200); now it is refused up front, naming what exists."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    with pytest.raises(ValueError, match=rf"--device cuda:7: this machine has {shown}"):
        pick_device("cuda:7")
    assert pick_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)


def test_a_string_that_is_no_device_is_refused():
    with pytest.raises(ValueError, match="'gpu0' is not a device: use cpu, cuda or cuda:N"):
        pick_device("gpu0")
