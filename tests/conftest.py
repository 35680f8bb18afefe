"""Every test gets its own DetScope folder: no test reads or writes the user's settings, recovery
files or run registry (subprocesses inherit the variable)."""
import pytest


@pytest.fixture(autouse=True)
def detscope_home(tmp_path, monkeypatch):
    home = tmp_path / "detscope-home"
    monkeypatch.setenv("DETSCOPE_HOME", str(home))
    return home
