"""Regenerate the README screenshots (offscreen, 1280x800) from the sample project.

    QT_QPA_PLATFORM=offscreen .venv/bin/python resources/screenshots/make_screenshots.py [--checkpoint CKPT]
        [--size 1024x700 --out resources/screenshots/1024x700]

``--checkpoint``: a TinySSD checkpoint (with its run folder's config.py) for the NMS and
evaluation shots; without it those use a short run made here (and the training panel is shot
mid-run). ``--size`` / ``--out``: every view at another window size, into another folder.
Uses a fresh DetScope home. ``--only dense``: just the FCOS / YOLOX Assignment shots.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "resources" / "screenshots"
sys.path.insert(0, str(ROOT))


def settle(app, seconds: float = 0.3) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def grab(app, win, name: str) -> None:
    win.wait_until_drawn()
    settle(app)
    path = OUT / name
    path.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(path), "PNG")
    print(f"wrote {path}")


def main() -> None:
    global OUT
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint")
    parser.add_argument("--size", default="1280x800")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", choices=("dense",), help="dense: only the FCOS / YOLOX Assignment shots")
    args = parser.parse_args()
    OUT = args.out
    width, height = (int(v) for v in args.size.split("x"))
    os.environ["DETSCOPE_HOME"] = tempfile.mkdtemp(prefix="detscope-shots-")
    from PySide6.QtWidgets import QApplication

    from app.dialogs import ConsoleDialogs
    from app.main_window import MainWindow
    app = QApplication.instance() or QApplication([])
    win = MainWindow(dialogs=ConsoleDialogs(), restore_layout=False)
    win.resize(width, height)
    win.show()
    win.show_image(7)
    settle(app)
    if args.only == "dense":
        shoot_dense_assign(app, win)
        win.debug_panel.shutdown()
        win.training_panel.shutdown()
        win.eval_panel.shutdown()
        return
    grab(app, win, "window_annotate.png")
    for view in ("anchors", "assign", "loss"):
        win.show_view(view)
        if view == "assign":
            win.debug_panel.pages["assign"].select_gt(4)
        grab(app, win, f"view_{view}.png")
    win.show_view("scan")
    page = win.debug_panel.pages["scan"]
    page.k.setValue(3)
    page.run_scan()
    while page.scan is None:
        settle(app, 0.1)
    grab(app, win, "view_scan.png")
    win.show_view("dataset")
    grab(app, win, "panel_dataset.png")
    shoot_training_sample(app, win)
    shoot_dense_assign(app, win)

    panel = win.training_panel
    win.show_view("train")
    panel.config_combo.setCurrentIndex(panel.config_combo.findData("tinyssd_synthetic"))
    panel.epochs.setValue(12)
    panel.batch.setValue(16)
    if args.checkpoint:
        grab(app, win, "panel_training.png")
    else:
        panel.start()
        while panel.curve_points() < 40 and panel.process.running():      # mid-training
            settle(app, 0.2)
        settle(app, 0.5)
        grab(app, win, "panel_training.png")
        panel.stop()
        while panel.process.running():
            settle(app, 0.2)
    checkpoint = args.checkpoint or str(panel.process.run_dir / "last.pth")
    print(f"checkpoint: {checkpoint}")
    config = Path(checkpoint).with_name("config.py")
    win.use_checkpoint(str(config), checkpoint)
    win.show_image(245)
    win.show_view("nms")
    grab(app, win, "view_nms.png")
    win.show_view("evaluate")
    with_eval = win.eval_panel
    with_eval.evaluate()
    while with_eval.result is None:
        settle(app, 0.2)
    with_eval.score.setValue(30)
    grab(app, win, "panel_evaluate.png")
    win.show_view("scan")                          # the Dataset scan's "during training" mode on that run
    scan = win.debug_panel.pages["scan"]
    scan.show_training_run(Path(checkpoint).parent)
    while scan.training.loading:
        settle(app, 0.1)
    scan.training.share.setValue(0)                # every probe GT: TinySSD's greedy assigner starves none
    grab(app, win, "view_scan_training.png")
    scan.set_mode("project")
    win.debug_panel.shutdown()
    win.training_panel.shutdown()
    win.eval_panel.shutdown()


def shoot_training_sample(app, win) -> None:
    """The Debug dock's Training sample source under RTMDet: the mosaic stage, then the last
    stage (mix-up) with its assignment; back to the image and SSD300 after."""
    debug = win.debug_panel
    win.show_view("assign")
    debug.set_config("rtmdet_tiny_coco")
    win.show_image(3)
    debug.set_source("train")
    debug.set_sample(seed=0, stage=1)                  # the mosaic
    grab(app, win, "view_training_sample_mosaic.png")
    controls = debug.sample_controls
    controls.select_stage(controls.stage.count() - 1)  # the network input the views trace
    grab(app, win, "view_training_sample.png")
    debug.set_source("image")
    debug.set_config("ssd300_coco")


def shoot_dense_assign(app, win) -> None:
    """The Assignment view under FCOS (center_sampling ticked: the ring's regress-range bound and
    its levels' centre regions) and YOLOX-s (SimOTA on the random-init model's predictions: each
    level's centre square), the ring (GT4) selected and zoomed to, "Why?" for the point at its
    centre; the dock scrolled to the table, the heat map and the Why? text."""
    from PySide6.QtCore import QPoint
    from PySide6.QtWidgets import QSplitter
    debug = win.debug_panel
    page = debug.pages["assign"]
    win.show_view("assign")
    win.show_image(7)
    def traced(assigner: str, **params) -> None:        # the old trace stays shown until the new one comes
        while not (debug.result is not None and debug.result.main.trace.assigner_name == assigner
                   and all(debug.result.main.trace.assigner_params.get(k) == v for k, v in params.items())):
            settle(app, 0.1)
        win.wait_until_drawn()

    shots = (("fcos_r50_fpn_coco", "FCOSAssigner", "view_assign_fcos.png"),
             ("yolox_s_coco", "SimOTAAssigner", "view_assign_yolox.png"))
    for config, assigner, name in shots:
        debug.set_config(config)
        traced(assigner)
        if assigner == "FCOSAssigner":
            page.editor_a.set_value("center_sampling", True)
            traced(assigner, center_sampling=True)
        page.select_gt(4)
        it = debug.result.main
        x1, y1, x2, y2 = it.to_original(it.trace.gt_boxes[4:5].numpy())[0]
        page.on_click((x1 + x2) / 2, (y1 + y2) / 2)
        page.findChild(QSplitter).setSizes([120, 120, 420])
        settle(app)
        area = win.docks["debug"].widget()
        area.verticalScrollBar().setValue(page.counts.mapTo(area.widget(), QPoint(0, 0)).y() - 4)
        page.zoom_to_gt(4)
        grab(app, win, name)
    page.select_gt(None)
    win.docks["debug"].widget().verticalScrollBar().setValue(0)
    win.canvas.fit()
    debug.set_config("ssd300_coco")


if __name__ == "__main__":
    main()
