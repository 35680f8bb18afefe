"""``pip install`` gives working commands: the wheel carries every module and every shipped config,
and its ``detengine`` / ``detscope`` console scripts work from an empty folder, away from the
checkout. The wheel goes into a throwaway venv (no pip, no downloads) that sees this venv's
third-party packages through a ``.pth`` line, so nothing but DetScope itself comes from the wheel."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel and a venv: ~30 s

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "resources" / "configs"


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src")  # a copy: setuptools writes build/ and *.egg-info beside the sources
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for tree in ("app", "detengine", "resources"):
        shutil.copytree(ROOT / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__", "*.png"))
    # --no-build-isolation: build with this venv's setuptools, no download
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src])
    (found,) = out.glob("detscope-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A venv holding only the wheel; third-party packages come from this venv's site-packages."""
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel])
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "zz_project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return dict(env, QT_QPA_PLATFORM="offscreen", **extra)


def test_the_wheel_carries_every_module_and_shipped_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for tree in ("detengine", "app"):
        for source in (ROOT / tree).rglob("*.py"):
            assert source.relative_to(ROOT).as_posix() in names, f"{source.relative_to(ROOT)} is not in the wheel"
    configs = sorted(CONFIGS.rglob("*.py"))
    assert len(configs) >= 8
    for config in configs:
        inside = "detengine/resources/configs/" + config.relative_to(CONFIGS).as_posix()
        assert inside in names, f"shipped config {config.relative_to(ROOT)} is not in the wheel"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "detengine = detengine.cli:main" in text and "detscope = app.main:main" in text


def test_installed_commands_work_from_an_empty_folder(installed, tmp_path):
    bin_dir = installed / "bin"
    env = _env()
    where = _run([bin_dir / "python", "-c", "import detengine, app; print(detengine.__file__, app.__file__)"],
                 cwd=tmp_path, env=env).stdout
    assert str(ROOT) not in where and str(installed) in where  # the wheel's code, not the checkout's
    out = _run([bin_dir / "detengine", "inspect", "--config", "ssd300_coco", "--image-size", "300", "300",
                "--gt", "10,20,120,200,0"], cwd=tmp_path, env=env).stdout
    assert "priors: 8732 anchors" in out  # SSD300's anchors, traced from the packaged config
    assert "usage: detengine" in _run([bin_dir / "detengine", "--help"], cwd=tmp_path, env=env).stdout
    assert "usage: detscope" in _run([bin_dir / "detscope", "--help"], cwd=tmp_path, env=env).stdout
    assert list(tmp_path.iterdir()) == []  # nothing written into the user's folder


def test_every_installed_module_imports(installed, tmp_path):
    code = ("import importlib, pathlib, detengine, app\n"
            "for pkg in (detengine, app):\n"
            "    root = pathlib.Path(pkg.__file__).parent\n"
            "    for f in sorted(root.rglob('*.py')):\n"
            "        parts = f.relative_to(root.parent).with_suffix('').parts\n"
            "        if 'resources' in parts or parts[-1] == '__main__': continue\n"
            "        importlib.import_module('.'.join(p for p in parts if p != '__init__'))\n"
            "print('ok')\n")
    assert _run([installed / "bin" / "python", "-c", code], cwd=tmp_path, env=_env()).stdout.strip() == "ok"
