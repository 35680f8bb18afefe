"""DetScope's command line: parse arguments, check for a display, open the window or render it.

Qt is imported only after the display checks, so a machine without a display, or without the X
libraries Qt's xcb plugin needs, gets a message and exit code 2, never a Qt error or an abort.
The window shows before PyTorch is imported and loads the engine after its first paint
(``MainWindow(defer_engine=True)``); ``--screenshot`` builds it whole, then renders it.
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "parse_args", "has_display", "platform_is_xcb", "missing_xcb_libraries", "missing_xcb_message",
           "NO_DISPLAY_MESSAGE", "XCB_LIBRARIES", "VIEWS", "SCREENSHOT_SIZE", "STARTUP_T0_ENV"]

VIEWS = ("annotate", "anchors", "assign", "loss", "nms", "scan", "scan-training", "train", "evaluate", "dataset")
SCREENSHOT_SIZE = (1280, 800)
STARTUP_T0_ENV = "DETSCOPE_STARTUP_T0"   # a time.time(): print the startup times against it, quit when ready

NO_DISPLAY_MESSAGE = """\
detscope: no display available (DISPLAY and WAYLAND_DISPLAY are not set, nor QT_QPA_PLATFORM).
DetScope is a desktop window. To run it:
  - with a display: start it from a desktop session, or over `ssh -X`, with `python main.py`
  - render the window offscreen to an image: `python main.py --screenshot out.png`
  - run Qt without a screen (nothing is shown; for tests): `QT_QPA_PLATFORM=offscreen python main.py`
  - on a virtual X server: `xvfb-run python main.py`
"""

# The X libraries Qt 6.7's xcb platform plugin (libqxcb.so) links, with the Debian/Ubuntu package of each.
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-randr.so.0": "libxcb-randr0", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-render.so.0": "libxcb-render0",
    "libxcb-util.so.1": "libxcb-util1", "libxcb.so.1": "libxcb1", "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
}
_X11_PLATFORMS = ("linux", "freebsd", "openbsd", "netbsd")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 1024x700, got {text!r}") from None
    if not (320 <= w <= 10000 and 240 <= h <= 10000):
        raise argparse.ArgumentTypeError(f"size {w}x{h} is outside 320x240 .. 10000x10000")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="detscope", description="DetScope: look inside dense object detectors.")
    p.add_argument("--config", default="ssd300_coco", metavar="NAME",
                   help="detector config for the debug views: a shipped name (ssd300_coco, "
                        "retinanet_r50_fpn_coco, ...) or a config file path")
    p.add_argument("--view", default="annotate", metavar="NAME",
                   help=f"view to show: {', '.join(VIEWS)} (default: annotate; scan-training: the Dataset scan's "
                        f"'during training' mode on --run)")
    p.add_argument("--screenshot", type=Path, metavar="PATH",
                   help="render the window offscreen (at --size), save a PNG, exit")
    p.add_argument("--size", type=_size, metavar="WxH",
                   help=f"window size in pixels, e.g. 1024x700 (default: the last session's, or "
                        f"{SCREENSHOT_SIZE[0]}x{SCREENSHOT_SIZE[1]} for --screenshot)")
    p.add_argument("--open", dest="open_path", metavar="PATH",
                   help="a COCO JSON file, a Pascal VOC folder or a folder of images (default: the last "
                        "project, else the built-in sample project)")
    p.add_argument("--image", type=int, metavar="N", help="show image N (0-based, in the project's order)")
    p.add_argument("--source", choices=("image", "train"), default="image",
                   help="what the debug views trace: the image through the config's test pipeline (image, the "
                        "default) or the augmented training sample the trainer sees (train)")
    p.add_argument("--seed", type=int, metavar="N", help="the training sample's seed (--source train; default 0)")
    p.add_argument("--stage", type=int, metavar="K",
                   help="the train pipeline stage the canvas shows (--source train): 0 the image as loaded, "
                        "1.. after each transform, negative from the end (default: the last, the one traced)")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="a training checkpoint as the current model of the debug and evaluation views, with the "
                        "config it carries (DetScope's checkpoints); a config.py beside it is not run from the "
                        "command line (pass it with --config), else --config")
    p.add_argument("--run", metavar="DIR",
                   help="a training run folder for --view scan-training (its per-GT probe, probe.jsonl); "
                        "default: the newest run with a probe")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.view not in VIEWS:
        parser.error(f"--view {args.view!r} is not available; views: {', '.join(VIEWS)}")
    if args.image is not None and args.image < 0:
        parser.error(f"--image must be >= 0, got {args.image}")
    if (args.seed is not None or args.stage is not None) and args.source != "train":
        parser.error("--seed and --stage choose the training sample: use them with --source train")
    if args.run is not None and args.view == "annotate":
        args.view = "scan-training"                    # --run alone: the view that shows it
    elif args.run is not None and args.view != "scan-training":
        parser.error(f"--run goes with --view scan-training, not --view {args.view}")
    return args


def has_display(env=None, platform: str | None = None) -> bool:
    """False on Linux/BSD when neither an X11 nor a Wayland display nor a Qt platform is set."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith(_X11_PLATFORMS):
        return True
    return any(env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def platform_is_xcb(env=None, platform: str | None = None) -> bool:
    """True when Qt will open its xcb (X11) platform plugin: Linux/BSD with DISPLAY set and
    QT_QPA_PLATFORM unset or naming xcb first; not in a Wayland session, where Qt tries Wayland."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith(_X11_PLATFORMS):
        return False
    requested = env.get("QT_QPA_PLATFORM", "")
    if requested:
        return requested.split(";")[0].split(":")[0].strip() == "xcb"
    if env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY"):
        return False
    return bool(env.get("DISPLAY"))


def missing_xcb_libraries() -> list[str]:
    """The libraries (sonames) Qt's xcb plugin needs that the dynamic loader cannot find: the
    known list tried with ctypes, then whatever ``ldd`` of PySide6's libqxcb.so says is not found."""
    missing = [name for name in XCB_LIBRARIES if not _loadable(name)]
    return list(dict.fromkeys(missing + _ldd_not_found(_xcb_plugin())))


def _loadable(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def _xcb_plugin() -> Path | None:
    spec = importlib.util.find_spec("PySide6")          # finds the package without importing Qt
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return path if path.is_file() else None


def _ldd_not_found(plugin: Path | None) -> list[str]:
    ldd = shutil.which("ldd")
    if plugin is None or ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(re.findall(r"^\s*(\S+) => not found", out, flags=re.MULTILINE)))


def missing_xcb_message(missing: list[str]) -> str:
    """What to tell a user whose machine lacks ``missing`` (sonames): the apt-get line, the ways around."""
    packages = " ".join(dict.fromkeys(XCB_LIBRARIES[name] for name in missing if name in XCB_LIBRARIES))
    names = "".join(f"  {name}" + (f" (package {XCB_LIBRARIES[name]})\n" if name in XCB_LIBRARIES
                                   else f" (package unknown: `apt-file search {name}`)\n") for name in missing)
    install = f"Install them (Debian/Ubuntu):\n  sudo apt-get install {packages}\n" if packages else ""
    return (f"detscope: Qt cannot open a window on the X display {os.environ.get('DISPLAY', '')!r}: its xcb "
            f"platform plugin needs libraries this machine lacks:\n{names}{install}"
            "Or run DetScope without them:\n"
            "  - on a Wayland desktop: `QT_QPA_PLATFORM=wayland python main.py`\n"
            "  - render the window offscreen to an image: `QT_QPA_PLATFORM=offscreen python main.py --screenshot "
            "out.png`\n"
            "  - once they are installed, on a virtual X server too: `xvfb-run python main.py`\n")


def _display_problem() -> str:
    """Why Qt could not show a window here (a message for the user), or "" when it can."""
    if not has_display():
        return NO_DISPLAY_MESSAGE
    if platform_is_xcb():
        missing = missing_xcb_libraries()
        if missing:
            return missing_xcb_message(missing)
    return ""


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = _display_problem()
    if problem:
        if args.screenshot is None:
            sys.stderr.write(problem)
            return 2
        os.environ["QT_QPA_PLATFORM"] = "offscreen"     # a screenshot needs no screen
    from detengine.api import resolve_config  # light: no torch
    try:
        resolve_config(args.config)
    except SystemExit as exc:            # resolve_config's message names the shipped configs
        print(exc, file=sys.stderr)
        return 2
    return _run_gui(args)


def _create_window(args, defer_engine: bool):
    from app.main_window import MainWindow
    for flag, value in (("--open", args.open_path), ("--checkpoint", args.checkpoint), ("--run", args.run)):
        if value is not None and not Path(value).exists():
            print(f"detscope: {flag} {value}: no such file or folder", file=sys.stderr)
            return None
    from app.dialogs import ConsoleDialogs
    offscreen = args.screenshot is not None
    try:
        training_scan = args.view == "scan-training"
        window = MainWindow(open_path=args.open_path, image_index=args.image,
                            view="scan" if training_scan else args.view, config=args.config,
                            restore_layout=not offscreen, dialogs=ConsoleDialogs() if offscreen else None,
                            defer_engine=defer_engine)
        if args.checkpoint:
            _use_checkpoint(window, args.checkpoint, args.config, defer_engine)
        if training_scan:
            _show_training_scan(window, args.run, defer_engine)
        if args.source == "train":
            _use_training_sample(window, args, defer_engine)
        return window
    except Exception as exc:             # e.g. a broken config file: a message, not a stack trace
        print(f"detscope: cannot start with config {args.config!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def _use_checkpoint(window, checkpoint: str, config: str, defer_engine: bool) -> None:
    """The checkpoint as the debug views' model, with its run folder's config.py when present;
    with ``defer_engine``, once the window has loaded its panels."""
    run_config = Path(checkpoint).with_name("config.py")
    config = str(run_config) if run_config.exists() else config
    if defer_engine:
        window.engineLoaded.connect(lambda: window.use_checkpoint(config, checkpoint))
    else:
        window.use_checkpoint(config, checkpoint)


def _show_training_scan(window, run: str | None, defer_engine: bool) -> None:
    """The Dataset scan in its "during training" mode, on ``run`` (None: the newest run with a
    probe); with ``defer_engine``, once the window has loaded its panels."""
    def show() -> None:
        page = window.debug_panel.pages["scan"]
        if run:
            page.show_training_run(run)
        else:
            page.set_mode("training")
    if defer_engine:
        window.engineLoaded.connect(show)
    else:
        show()


def _wait_for_training_scan(app, window, timeout_s: float = 60.0) -> None:
    """For screenshots: until the Dataset scan's "during training" mode has read its run."""
    panel = getattr(window, "debug_panel", None) if getattr(window, "engine_loaded", False) else None
    view = getattr(panel.pages.get("scan"), "training", None) if panel is not None else None
    deadline = time.monotonic() + timeout_s
    while view is not None and view.loading and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()


def _use_training_sample(window, args, defer_engine: bool) -> None:
    """The debug views trace the training sample (``--seed``, the ``--stage`` shown)."""
    def apply():
        window.debug_panel.set_source("train")
        window.debug_panel.set_sample(seed=args.seed, stage=args.stage)
    if defer_engine:
        window.engineLoaded.connect(apply)
    else:
        apply()


def _configure_pyqtgraph() -> None:
    import pyqtgraph as pg
    pg.setConfigOptions(antialias=True)


def _run_gui(args) -> int:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    if args.screenshot is not None:
        _configure_pyqtgraph()
        window = _create_window(args, defer_engine=False)
        return 1 if window is None else _save_screenshot(app, window, args.screenshot, args.size or SCREENSHOT_SIZE)
    window = _create_window(args, defer_engine=True)
    if window is None:
        return 1
    if args.size:
        window.resize(*args.size)
    _report_startup_times(app, window)
    window.engineLoaded.connect(lambda: window.config_problem and print(
        f"detscope: {window.config_problem.replace(chr(10), ' ')}", file=sys.stderr))
    window.firstPainted.connect(_configure_pyqtgraph)   # before the panels' plots exist
    window.loadFailed.connect(lambda text: _fail(app, args, text))
    window.show()
    code = app.exec()
    if window.isVisible():               # left open by a failed start or by the startup report
        window.close()
    return code


def _fail(app, args, text: str) -> None:
    print(f"detscope: cannot start with config {args.config!r}: {text}", file=sys.stderr)
    app.exit(1)


def _report_startup_times(app, window) -> None:
    """With $DETSCOPE_STARTUP_T0 (a ``time.time()`` taken by bench/bench_startup.py before it
    started this process): print the seconds since then at the first paint and when ready
    (engine loaded, first view drawn) on stderr, then quit."""
    raw = os.environ.get(STARTUP_T0_ENV)
    if not raw:
        return
    try:
        t0 = float(raw)
    except ValueError:
        print(f"detscope: ${STARTUP_T0_ENV} must be a time.time() value, got {raw!r}", file=sys.stderr)
        return

    def stamp(what: str) -> None:
        torch = "loaded" if "torch" in sys.modules else "not loaded"
        print(f"detscope-startup: {what} {time.time() - t0:.3f} s (torch {torch})", file=sys.stderr, flush=True)

    window.firstPainted.connect(lambda: stamp("first-paint"))
    window.ready.connect(lambda: (stamp("ready"), app.quit()))


def _say_why_the_view_is_empty(window) -> None:
    """A debug view with nothing to show (an unreadable image, a failed trace) says why at once."""
    panel = getattr(window, "debug_panel", None) if getattr(window, "engine_loaded", False) else None
    if panel is None or not panel.active or getattr(window, "doc", None) is None:
        return
    failure = panel.failure or ("this image cannot be read: nothing to trace" if window.canvas.image is None else "")
    if failure:
        print(f"detscope: the debug view: {failure}", file=sys.stderr)


def _save_screenshot(app, window, path: Path, size=SCREENSHOT_SIZE) -> int:
    from PySide6.QtCore import Qt

    window.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
    window.resize(*size)
    window.show()
    for _ in range(3):
        app.processEvents()
    if hasattr(window, "wait_until_drawn") and not window.wait_until_drawn():
        print("detscope: the debug view did not finish in time; the screenshot shows it unfinished", file=sys.stderr)
    _wait_for_training_scan(app, window)
    _say_why_the_view_is_empty(window)
    ok = window.grab().save(str(path), "PNG")
    window.close()
    window.deleteLater()
    if not ok:
        print(f"detscope: cannot write screenshot {path} (does the folder exist?)", file=sys.stderr)
        return 1
    print(f"detscope: screenshot saved to {path}", file=sys.stderr)
    return 0
