"""DetScope's command line: parse arguments, check for a display, open the window or render it.

Qt is imported only after the display check, so a machine without a display gets a message
and exit code 2, never a Qt error.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main", "parse_args", "has_display", "NO_DISPLAY_MESSAGE", "VIEWS", "SCREENSHOT_SIZE"]

VIEWS = ("annotate", "anchors", "assign", "loss", "nms", "scan", "train", "evaluate")
SCREENSHOT_SIZE = (1280, 800)

NO_DISPLAY_MESSAGE = """\
detscope: no display available (DISPLAY and WAYLAND_DISPLAY are not set, nor QT_QPA_PLATFORM).
DetScope is a desktop window. To run it:
  - with a display: start it from a desktop session, or over `ssh -X`, with `python main.py`
  - render the window offscreen to an image: `python main.py --screenshot out.png`
  - run Qt without a screen (nothing is shown; for tests): `QT_QPA_PLATFORM=offscreen python main.py`
  - on a virtual X server: `xvfb-run python main.py`
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="detscope", description="DetScope: look inside dense object detectors.")
    p.add_argument("--config", default="ssd300_coco", metavar="NAME",
                   help="detector config for the debug views: a shipped name (ssd300_coco, "
                        "retinanet_r50_fpn_coco, ...) or a config file path")
    p.add_argument("--view", default="annotate", metavar="NAME",
                   help=f"view to show: {', '.join(VIEWS)} (default: annotate)")
    p.add_argument("--screenshot", type=Path, metavar="PATH",
                   help=f"render the window offscreen at {SCREENSHOT_SIZE[0]}x{SCREENSHOT_SIZE[1]}, save a PNG, exit")
    p.add_argument("--open", dest="open_path", metavar="PATH",
                   help="a COCO JSON file, a Pascal VOC folder or a folder of images (default: the last "
                        "project, else the built-in sample project)")
    p.add_argument("--image", type=int, metavar="N", help="show image N (0-based, in the project's order)")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="a training checkpoint as the current model of the debug and evaluation views (its run "
                        "folder's config.py is used when present, else --config)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.view not in VIEWS:
        parser.error(f"--view {args.view!r} is not available; views: {', '.join(VIEWS)}")
    if args.image is not None and args.image < 0:
        parser.error(f"--image must be >= 0, got {args.image}")
    return args


def has_display(env=None, platform: str | None = None) -> bool:
    """False on Linux/BSD when neither an X11 nor a Wayland display nor a Qt platform is set."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return True
    return any(env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def main(argv=None) -> int:
    args = parse_args(argv)
    if not has_display():
        if args.screenshot is None:
            sys.stderr.write(NO_DISPLAY_MESSAGE)
            return 2
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from detengine.cli import resolve_config
    try:
        resolve_config(args.config)
    except SystemExit as exc:            # resolve_config's message names the shipped configs
        print(exc, file=sys.stderr)
        return 2
    return _run_gui(args)


def _create_window(args):
    from .main_window import MainWindow
    for flag, value in (("--open", args.open_path), ("--checkpoint", args.checkpoint)):
        if value is not None and not Path(value).exists():
            print(f"detscope: {flag} {value}: no such file or folder", file=sys.stderr)
            return None
    from .dialogs import ConsoleDialogs
    offscreen = args.screenshot is not None
    try:
        window = MainWindow(open_path=args.open_path, image_index=args.image, view=args.view, config=args.config,
                            restore_layout=not offscreen, dialogs=ConsoleDialogs() if offscreen else None)
        if args.checkpoint:
            run_config = Path(args.checkpoint).with_name("config.py")
            window.use_checkpoint(str(run_config) if run_config.exists() else args.config, args.checkpoint)
        return window
    except Exception as exc:             # e.g. a broken config file: a message, not a stack trace
        print(f"detscope: cannot start with config {args.config!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def _run_gui(args) -> int:
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    pg.setConfigOptions(antialias=True)
    window = _create_window(args)
    if window is None:
        return 1
    if args.screenshot is not None:
        return _save_screenshot(app, window, args.screenshot)
    window.show()
    return app.exec()


def _save_screenshot(app, window, path: Path) -> int:
    from PySide6.QtCore import Qt

    window.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen, True)
    window.resize(*SCREENSHOT_SIZE)
    window.show()
    for _ in range(3):
        app.processEvents()
    if hasattr(window, "wait_until_drawn") and not window.wait_until_drawn():
        print("detscope: the debug view did not finish in time; the screenshot shows it unfinished", file=sys.stderr)
    ok = window.grab().save(str(path), "PNG")
    window.close()
    window.deleteLater()
    if not ok:
        print(f"detscope: cannot write screenshot {path} (does the folder exist?)", file=sys.stderr)
        return 1
    print(f"detscope: screenshot saved to {path}", file=sys.stderr)
    return 0
