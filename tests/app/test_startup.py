"""Start-up: the display checks before Qt (no display, missing X libraries for Qt's xcb plugin)
and the window that shows before PyTorch is imported, then loads the engine step by step."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import app.main as app_main
from app.main import NO_DISPLAY_MESSAGE, STARTUP_T0_ENV, main, missing_xcb_libraries, platform_is_xcb

ROOT = Path(__file__).resolve().parents[2]
LINUX_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display checks apply to Linux")


def _env(drop=(), **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _run_main(args=(), env=None, timeout=55) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


# ---------------------------------------------------------------------- display checks


def test_platform_is_xcb_rules():
    assert platform_is_xcb({"DISPLAY": ":0"}, "linux")
    assert platform_is_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, "linux")
    assert platform_is_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb;offscreen"}, "linux")
    assert not platform_is_xcb({}, "linux")
    assert not platform_is_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not platform_is_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "wayland;xcb"}, "linux")
    assert not platform_is_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"},
                               "linux")
    assert not platform_is_xcb({"DISPLAY": ":0"}, "darwin") and not platform_is_xcb({"DISPLAY": ":0"}, "win32")


@pytest.fixture
def x11_without_libraries(monkeypatch):
    """An X11 session (DISPLAY set, no Qt platform chosen) on a machine that lacks two X libraries."""
    monkeypatch.setenv("DISPLAY", ":0")
    for name in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(app_main, "missing_xcb_libraries", lambda: ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"])


@LINUX_ONLY
def test_missing_xcb_libraries_give_the_apt_line_and_exit_2(x11_without_libraries, capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert "libxcb-icccm.so.4 (package libxcb-icccm4)" in err and "libxcb-keysyms.so.1" in err
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1\n" in err
    assert "QT_QPA_PLATFORM=offscreen python main.py --screenshot out.png" in err
    assert "QT_QPA_PLATFORM=wayland" in err and "xvfb-run python main.py" in err
    assert "Traceback" not in err


@LINUX_ONLY
def test_missing_xcb_libraries_screenshot_renders_offscreen(x11_without_libraries, qapp, tmp_path):
    out = tmp_path / "shot.png"
    assert main(["--screenshot", str(out)]) == 0
    assert os.environ["QT_QPA_PLATFORM"] == "offscreen"
    assert out.stat().st_size > 10_000


def test_unknown_missing_library_is_named_without_a_package():
    text = app_main.missing_xcb_message(["libxcb-icccm.so.4", "libweird.so.3"])
    assert "libweird.so.3 (package unknown: `apt-file search libweird.so.3`)" in text
    assert "sudo apt-get install libxcb-icccm4\n" in text


@LINUX_ONLY
def test_missing_libraries_come_from_ctypes_and_ldd(monkeypatch, tmp_path):
    """The known list is tried with ctypes; ``ldd`` of the plugin adds what it cannot find."""
    fake_ldd = tmp_path / "ldd"
    fake_ldd.write_text("#!/bin/sh\n"
                        "printf '\\tlibxcb-cursor.so.0 => /lib/libxcb-cursor.so.0 (0x1)\\n'\n"
                        "printf '\\tlibxcb-icccm.so.4 => not found\\n\\tlibfoo.so.1 => not found\\n'\n"
                        "printf '\\tlibxcb-icccm.so.4 => not found\\n'\n")
    fake_ldd.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(app_main, "_xcb_plugin", lambda: tmp_path / "libqxcb.so")
    monkeypatch.setattr(app_main, "_loadable", lambda name: name != "libxcb-keysyms.so.1")
    assert missing_xcb_libraries() == ["libxcb-keysyms.so.1", "libxcb-icccm.so.4", "libfoo.so.1"]


@LINUX_ONLY
def test_missing_libraries_on_this_machine_are_sonames():
    missing = missing_xcb_libraries()
    assert isinstance(missing, list) and all(re.fullmatch(r"\S+\.so(\.\d+)*", name) for name in missing)


@LINUX_ONLY
def test_no_display_message_without_any_display():
    proc = _run_main(env=_env(drop=("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == NO_DISPLAY_MESSAGE
    assert "Traceback" not in proc.stderr


@LINUX_ONLY
@pytest.mark.skipif(sys.platform.startswith("linux") and not missing_xcb_libraries(),
                    reason="this machine has every X library Qt's xcb plugin needs")
def test_real_missing_libraries_stop_before_qt_aborts():
    """On this machine libraries are really missing: Qt would abort; we explain and exit 2."""
    proc = _run_main(env=_env(drop=("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE"), DISPLAY=":97"))
    assert proc.returncode == 2, proc.stderr
    assert "sudo apt-get install " in proc.stderr and "could not load the Qt platform plugin" not in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------- window before the engine


def test_window_module_does_not_import_torch():
    code = ("import sys, app.main, app.main_window; "
            "print(sorted(m for m in ('torch', 'detengine.data') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_first_paint_comes_before_torch_then_ready():
    """``python main.py`` with $DETSCOPE_STARTUP_T0: the window paints before PyTorch is imported,
    then loads, draws the Assignment view and quits."""
    proc = _run_main(["--view", "assign"], env=_env(QT_QPA_PLATFORM="offscreen", **{STARTUP_T0_ENV: str(time.time())}))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    paint = re.search(r"detscope-startup: first-paint ([\d.]+) s \(torch not loaded\)", proc.stderr)
    ready = re.search(r"detscope-startup: ready ([\d.]+) s \(torch loaded\)", proc.stderr)
    assert paint and ready, proc.stderr
    assert float(paint.group(1)) < float(ready.group(1))


@pytest.fixture
def deferred_window(qtbot):
    from app.main_window import MainWindow

    from .projects import FakeDialogs

    def make(**kwargs):
        w = MainWindow(dialogs=FakeDialogs(), restore_layout=False, defer_engine=True, **kwargs)
        qtbot.addWidget(w)
        windows.append(w)
        return w
    windows = []
    yield make
    for w in windows:
        if w.doc is not None:
            w.doc._autosave.stop()
        if w.engine_loaded:
            w.training_panel.shutdown()
            w.eval_panel.shutdown()
            w.debug_panel.shutdown()


def test_deferred_window_loads_step_by_step(qtbot, deferred_window):
    w = deferred_window(view="assign")
    assert not w.engine_loaded and w.doc is None
    assert w.statusBar().currentMessage() == "Loading PyTorch…"
    assert not w.actions_by_name["save"].isEnabled() and w.actions_by_name["quit"].isEnabled()
    with qtbot.waitSignal(w.ready, timeout=120_000):
        w.show()
    assert w.engine_loaded and w.doc is not None and w.editor.index == 0
    assert w.dock_content("debug") is w.debug_panel and w.debug_panel.current_page() is w.debug_panel.pages["assign"]
    assert w.debug_panel.result is not None and w.debug_panel.result.image == 0
    assert w.actions_by_name["save"].isEnabled() and not w.actions_by_name["undo"].isEnabled()
    assert w.statusBar().currentMessage().startswith("opened ")


def test_deferred_window_closed_while_loading(qtbot, deferred_window):
    w = deferred_window()
    w.show()
    w.close()
    qtbot.wait(300)
    assert not w.engine_loaded


def test_broken_config_is_reported_after_the_window_shows(tmp_path):
    """The config loads after the first paint: the window stays up, says why (a notice that does
    not block, and on stderr) and traces with the default config (no abort on a thread)."""
    import time
    bad = tmp_path / "broken.py"
    bad.write_text("model = dict(\n")
    proc = _run_main(["--config", str(bad)], env=_env(QT_QPA_PLATFORM="offscreen",
                                                      DETSCOPE_STARTUP_T0=str(time.time())))  # quit once ready
    assert proc.returncode == 0, proc.stderr
    assert f"detscope: Cannot use config {bad}: ConfigError: " in proc.stderr
    assert "syntax error" in proc.stderr and "ssd300_coco" in proc.stderr and "Traceback" not in proc.stderr
    assert "detscope-startup: ready" in proc.stderr
