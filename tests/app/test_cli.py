"""The command line of the window: screenshots, --open / --image / --view, no-display message."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.main import has_display, main, parse_args

from .projects import make_coco_project

ROOT = Path(__file__).resolve().parents[2]




def test_screenshot_in_process(qapp, tmp_path):
    out = tmp_path / "shot.png"
    assert main(["--screenshot", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_screenshot_bad_folder_fails_cleanly(qapp, tmp_path, capsys):
    assert main(["--screenshot", str(tmp_path / "missing" / "shot.png")]) == 1
    assert "cannot write screenshot" in capsys.readouterr().err


def test_open_image_and_view_render(qapp, tmp_path, capsys):
    out = tmp_path / "shot.png"
    path = make_coco_project(tmp_path / "project")
    assert main(["--open", str(path), "--image", "1", "--view", "anchors", "--screenshot", str(out)]) == 0
    assert out.stat().st_size > 10_000
    args = parse_args(["--open", "x", "--image", "2"])
    assert (args.open_path, args.image, args.view, args.config) == ("x", 2, "annotate", "ssd300_coco")


def test_a_debug_view_of_an_unreadable_image_says_so_at_once(qapp, tmp_path, capsys):
    import time
    path = make_coco_project(tmp_path / "project", corrupt_image=2)
    start = time.monotonic()
    assert main(["--open", str(path), "--image", "1", "--view", "anchors", "--screenshot", str(tmp_path / "s.png")]) == 0
    assert time.monotonic() - start < 60                       # not the 120 s wait for a trace
    assert "cannot be read" in capsys.readouterr().err


def test_open_missing_path_is_reported(qapp, tmp_path, capsys):
    assert main(["--open", str(tmp_path / "nope.json"), "--screenshot", str(tmp_path / "s.png")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_unknown_view_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        parse_args(["--view", "losses"])
    assert exc.value.code == 2
    assert "--view 'losses' is not available; views: annotate, anchors" in capsys.readouterr().err


def test_unknown_config_is_reported(capsys):
    assert main(["--config", "no_such_config", "--screenshot", "/tmp/unused.png"]) == 2
    assert "no config 'no_such_config'" in capsys.readouterr().err


def test_has_display_rules():
    assert not has_display({}, "linux")
    assert has_display({"DISPLAY": ":0"}, "linux")
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert has_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert has_display({}, "darwin") and has_display({}, "win32")


def _env_without_display() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check applies to Linux")
def test_no_display_message():
    proc = subprocess.run([sys.executable, str(ROOT / "main.py")], env=_env_without_display(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no display" in proc.stderr
    assert "--screenshot" in proc.stderr and "xvfb-run" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check applies to Linux")
def test_screenshot_subprocess_without_display(tmp_path):
    out = tmp_path / "sub.png"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--config", "ssd512_voc", "--screenshot", str(out)],
                          env=_env_without_display(), cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.stat().st_size > 10_000


