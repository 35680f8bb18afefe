"""Benchmark: the debug views' redraw path, widgets offscreen.

One step = move a GT box (an undoable nudge, as the user does), then the trace on the worker
thread, then the view's overlay rebuilt and the canvas repainted. Timed from the nudge until the
repaint returns.

* ``ssd300``: the Assignment view on a 256x256 sample image (SSD300, 8732 priors). Target < 50 ms.
* ``retinanet P3``: the Anchors view, level P3 with ALL its anchors drawn (zoom 1:1, no
  thinning), on a 1333x800 image (RetinaNet R50-FPN: input 1344x800, 151,200 P3 anchors,
  over 200,000 in all). Target < 300 ms.

Peer in the same loop (alternating): torchvision's own anchors + matching for the same boxes
(``DefaultBoxGenerator`` + ``SSDMatcher`` for SSD300; ``AnchorGenerator`` + ``Matcher(0.5, 0.4)``
for RetinaNet) — compute only, nothing drawn.

Run from the repository root:  QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_debug_views.py
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def make_big_project(root: Path) -> Path:
    rng = np.random.default_rng(0)
    image = cv2.resize((rng.random((100, 167, 3)) * 255).astype(np.uint8), (1333, 800))
    (root / "images").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / "big.png"), image)
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1 + k % 3, "bbox": [60 + 150 * k, 80 + 40 * k, 40 + 30 * k,
                                                                            60 + 20 * k], "iscrowd": 0}
            for k in range(6)]
    data = {"images": [{"id": 1, "file_name": "big.png", "width": 1333, "height": 800}], "annotations": anns,
            "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    path = root / "big.json"
    path.write_text(json.dumps(data))
    return path


def open_window(app, path, view: str, config: str):
    from app.dialogs import ConsoleDialogs
    from app.main_window import MainWindow

    win = MainWindow(open_path=str(path) if path else None, dialogs=ConsoleDialogs(), restore_layout=False,
                     config=config)
    win.resize(1280, 800)
    win.show()
    win.show_view(view)
    app.processEvents()
    win.wait_until_drawn()
    return win


def step(app, win, dx: float) -> float:
    """Nudge the first box, wait for the new trace and its drawing, repaint; seconds."""
    panel = win.debug_panel
    before = panel.result
    win.canvas.set_selection([win.doc.project.images[win.editor.index].boxes[0].id])
    t0 = time.perf_counter()
    win.editor.nudge(dx, 0)
    while panel.result is before:
        app.processEvents()
        time.sleep(0.0005)
    win.canvas.viewport().repaint()
    return time.perf_counter() - t0


def tv_ssd_peer(boxes_in: torch.Tensor):
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.ops import box_iou
    gen = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]])
    matcher = det_utils.SSDMatcher(0.5)
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]

    class _Images:
        tensors = torch.zeros(1, 3, 300, 300)
        image_sizes = [(300, 300)]
    feats = [torch.zeros(1, 1, *s) for s in sizes]

    def run():
        anchors = gen(_Images(), feats)[0]
        return matcher(box_iou(boxes_in, anchors))
    return run


def tv_retina_peer(boxes_in: torch.Tensor):
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import box_iou
    sizes = tuple((x, int(x * 2 ** (1 / 3)), int(x * 2 ** (2 / 3))) for x in [32, 64, 128, 256, 512])
    gen = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 5)
    matcher = det_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)

    class _Images:
        tensors = torch.zeros(1, 3, 800, 1344)
        image_sizes = [(800, 1344)]
    feats = [torch.zeros(1, 1, 800 // s, 1344 // s) for s in (8, 16, 32, 64, 128)]

    def run():
        anchors = gen(_Images(), feats)[0]
        return matcher(box_iou(boxes_in, anchors))
    return run


def measure(app, win, peer, reps: int) -> tuple[list[float], list[float]]:
    ours, theirs = [], []
    for k in range(reps):
        for side in ((0, 1) if k % 2 == 0 else (1, 0)):
            if side == 0:
                ours.append(step(app, win, 1.0 if k % 4 < 2 else -1.0))
            else:
                t0 = time.perf_counter()
                peer()
                theirs.append(time.perf_counter() - t0)
    return ours, theirs


def report(name: str, ours, theirs, target_ms: float) -> None:
    o, t = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    p90 = sorted(ours)[int(0.9 * len(ours))] * 1000
    verdict = "met" if o < target_ms else "NOT met"
    print(f"{name}: nudge -> trace -> redraw -> repaint {o:.1f} ms median (p90 {p90:.1f}) [target < {target_ms:g} ms: "
          f"{verdict}]; torchvision anchors + matching alone {t:.1f} ms; ratio {o / t:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="detscope-bench-views-"))
    os.environ["DETSCOPE_HOME"] = str(root / "home")
    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    print(f"torch threads {args.threads}; {time.strftime('%Y-%m-%d %H:%M')}")

    win = open_window(app, None, "assign", "ssd300_coco")                 # the sample project
    win.show_image(7)
    win.wait_until_drawn()
    it = win.debug_panel.result.main
    peer = tv_ssd_peer(it.trace.gt_boxes)
    for _ in range(3):
        step(app, win, 1.0)
    ours, theirs = measure(app, win, peer, args.reps)
    print(f"ssd300: {len(it.trace.priors)} priors, {win.debug_panel.overlay.count('positives')} positives drawn")
    report("ssd300 assignment view", ours, theirs, 50)
    win.debug_panel.shutdown()
    win.close()

    path = make_big_project(root / "big")
    win = open_window(app, path, "anchors", "retinanet_r50_fpn_coco")
    win.canvas.actual_size()                                               # 1:1: P3 drawn without thinning
    page = win.debug_panel.pages["anchors"]
    page.set_level(0)
    win.wait_until_drawn()
    it = win.debug_panel.result.main
    peer = tv_retina_peer(it.trace.gt_boxes)
    for _ in range(2):
        step(app, win, 1.0)
    ours, theirs = measure(app, win, peer, max(6, args.reps // 3))
    drawn = win.debug_panel.overlay.count("priors")
    print(f"retinanet: input {it.trace.input_shape}, {len(it.trace.priors)} anchors; P3 {it.trace.priors.num_per_level[0]}"
          f", drawn {drawn} ({page.note or 'all, no thinning'})")
    report("retinanet 1333x800 anchors view, P3 all anchors", ours, theirs, 300)
    switches = []
    for _ in range(5):                      # a full rebuild of the P3 layer: P4 -> P3, then repaint
        page.set_level(1)
        win.canvas.viewport().repaint()
        t0 = time.perf_counter()
        page.set_level(0)
        win.canvas.viewport().repaint()
        switches.append(time.perf_counter() - t0)
    print(f"retinanet: switch to P3 (rebuild and paint all {drawn} anchors, no trace): "
          f"{statistics.median(switches) * 1000:.1f} ms median")
    win.debug_panel.shutdown()
    win.close()


if __name__ == "__main__":
    main()
