"""Every test gets its own DetScope folder: no test reads or writes the user's settings, recovery
files or run registry (subprocesses inherit the variable).

Under pytest-xdist (``make test`` runs two workers on a 2-core machine) each worker, and the
processes it starts, computes on one thread: two workers of two threads each on two cores slow
every torch kernel down several times over (oversubscription), one each keeps both cores busy."""
import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def detscope_home(tmp_path, monkeypatch):
    home = tmp_path / "detscope-home"
    monkeypatch.setenv("DETSCOPE_HOME", str(home))
    return home
