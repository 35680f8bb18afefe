"""Benchmark: opening a big COCO project in the window, and switching images, offscreen.

Data: 5,000 JPEG images (640x480, made once with OpenCV into ``$DETSCOPE_BENCH`` or
``/tmp/detscope-bench``) and a COCO file with 40,000 boxes (8 per image, 80 classes).

* ``open``: from ``MainWindow(open_path=...)`` until the window is shown with the first image
  and its boxes on the canvas and the image list filled (a usable window). Peer in the same
  run: pycocotools ``COCO(path)`` on the same file (parse + index only; no window).
* ``switch``: ``N`` (next image) through the window's action, until the new image and its
  boxes are on the canvas and painted (``processEvents``). Peer: reading the same JPEG with
  ``cv2.imread`` (decode only).

* ``big image``: a 4000x3000 JPEG with 500 boxes. One zoom step (wheel, x1.2 around a point),
  one pan step (60 px) and one frame of dragging a box, each until repainted, against the same
  gesture on the same image with no boxes (the boxes' cost).

The two sides alternate; medians are reported. Targets (issue 4): open < 3 s, switch < 100 ms;
"smooth with hundreds of boxes on a 4000x3000 image" (we read: frames well under 1/30 s).
Run from the repository root:  QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_gui.py
"""
from __future__ import annotations

import argparse
import contextlib
import io
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

NUM_IMAGES, BOXES_PER_IMAGE, NUM_CLASSES = 5000, 8, 80
W, H = 640, 480


def make_data(root: Path) -> Path:
    """The images (kept between runs) and the COCO file; returns the JSON path."""
    path = root / "annotations" / "big.json"
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = (rng.random((H // 8, W // 8, 3)) * 255).astype(np.uint8)
    for i in range(1, NUM_IMAGES + 1):
        name = f"{i:05d}.jpg"
        if not (images_dir / name).exists():
            tile = cv2.resize(np.roll(base, i, axis=1), (W, H), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(images_dir / name), tile, [cv2.IMWRITE_JPEG_QUALITY, 85])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(random_coco(NUM_IMAGES, BOXES_PER_IMAGE, rng)))
    return path


def random_coco(num_images: int, boxes_per_image: int, rng) -> dict:
    """A COCO dict of ``num_images`` W x H images named ``00001.jpg``... with random boxes of
    NUM_CLASSES classes (the big projects of the GUI benches)."""
    images, annotations = [], []
    for i in range(1, num_images + 1):
        images.append({"id": i, "file_name": f"{i:05d}.jpg", "width": W, "height": H})
        for _ in range(boxes_per_image):
            w, h = rng.uniform(10, 200, 2)
            x, y = rng.uniform(0, W - w), rng.uniform(0, H - h)
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(rng.integers(1, 81)),
                                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                                "area": round(w * h, 2), "iscrowd": 0})
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, NUM_CLASSES + 1)]
    return {"images": images, "annotations": annotations, "categories": categories}


def open_window_any(app, path: Path):
    from app.dialogs import ConsoleDialogs
    from app.main_window import MainWindow

    t0 = time.perf_counter()
    win = MainWindow(open_path=str(path), dialogs=ConsoleDialogs(), restore_layout=False)
    win.show()
    app.processEvents()
    return win, time.perf_counter() - t0


def open_window(app, path: Path):
    from app.dialogs import ConsoleDialogs
    from app.main_window import MainWindow

    t0 = time.perf_counter()
    win = MainWindow(open_path=str(path), dialogs=ConsoleDialogs(), restore_layout=False)
    win.show()
    app.processEvents()
    elapsed = time.perf_counter() - t0
    assert win.editor.index == 0 and len(win.canvas.items) == BOXES_PER_IMAGE
    assert win.image_list.visible_count() == NUM_IMAGES
    return win, elapsed


def pycocotools_load(path: Path) -> float:
    from pycocotools.coco import COCO

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(str(path))
    return time.perf_counter() - t0


def switch_once(app, win) -> float:
    start = win.editor.index
    t0 = time.perf_counter()
    win.actions_by_name["next"].trigger()
    app.processEvents()
    win.canvas.viewport().repaint()
    elapsed = time.perf_counter() - t0
    assert win.editor.index == start + 1 and win.canvas.image is not None
    return elapsed


def cv2_read(win, index: int) -> float:
    t0 = time.perf_counter()
    image = cv2.imread(str(win.doc.project.image_path(index)))
    elapsed = time.perf_counter() - t0
    assert image is not None
    return elapsed


def make_big_image(root: Path, boxes: int = 500) -> Path:
    path = root / "big4000" / "annotations.json"
    image_path = root / "big4000" / "big.jpg"
    if not image_path.exists():
        rng = np.random.default_rng(1)
        small = (rng.random((300, 400, 3)) * 255).astype(np.uint8)
        image_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_path), cv2.resize(small, (4000, 3000), interpolation=cv2.INTER_CUBIC))
    rng = np.random.default_rng(2)
    anns = []
    for k in range(boxes):
        w, h = rng.uniform(40, 600, 2)
        x, y = rng.uniform(0, 4000 - w), rng.uniform(0, 3000 - h)
        anns.append({"id": k + 1, "image_id": 1, "category_id": int(rng.integers(1, 21)),
                     "bbox": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)], "iscrowd": 0})
    data = {"images": [{"id": 1, "file_name": "big.jpg", "width": 4000, "height": 3000}], "annotations": anns,
            "categories": [{"id": c, "name": f"class{c}"} for c in range(1, 21)]}
    path.write_text(json.dumps(data))
    return path


def gesture_times(app, win, reps: int) -> dict[str, list[float]]:
    """Median-able times of zoom, pan and box-drag frames, each ending with a repaint."""
    canvas = win.canvas
    viewport = canvas.viewport()
    centre = viewport.rect().center()
    out = {"zoom": [], "pan": [], "drag": []}
    for k in range(reps):
        t0 = time.perf_counter()
        canvas.zoom_by(1.2 if k % 2 == 0 else 1 / 1.2, centre)
        viewport.repaint()
        out["zoom"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        bar = canvas.horizontalScrollBar()
        bar.setValue(bar.value() + (60 if k % 2 == 0 else -60))
        viewport.repaint()
        out["pan"].append(time.perf_counter() - t0)
        if canvas.items:
            item = next(iter(canvas.items.values()))
            r = item.rect
            t0 = time.perf_counter()
            item.set_geometry(r.left() + 3, r.top(), r.right() + 3, r.bottom())
            viewport.repaint()
            out["drag"].append(time.perf_counter() - t0)
        app.processEvents()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opens", type=int, default=5)
    parser.add_argument("--switches", type=int, default=60)
    args = parser.parse_args()
    root = Path(os.environ.get("DETSCOPE_BENCH", Path(tempfile.gettempdir()) / "detscope-bench"))
    os.environ["DETSCOPE_HOME"] = str(root / "home")
    t0 = time.perf_counter()
    path = make_data(root)
    print(f"data: {NUM_IMAGES} images, {NUM_IMAGES * BOXES_PER_IMAGE} boxes ({time.perf_counter() - t0:.1f} s to prepare)")

    from PySide6.QtWidgets import QApplication
    app = QApplication.instance() or QApplication([])
    opens, cocos = [], []
    for _ in range(args.opens):
        cocos.append(pycocotools_load(path))
        win, elapsed = open_window(app, path)
        opens.append(elapsed)
        win.doc._autosave.stop()
        win.editor.cache.shutdown()
        win.deleteLater()
        app.processEvents()
    win, _ = open_window(app, path)
    switches, reads = [], []
    for k in range(args.switches):
        reads.append(cv2_read(win, win.editor.index + 1))
        switches.append(switch_once(app, win))
    big = make_big_image(root)
    win_boxes, _ = open_window_any(app, big)
    win_plain, _ = open_window_any(app, big)
    win_plain.canvas.set_boxes([])
    for w in (win_boxes, win_plain):
        w.resize(1280, 800)
        w.canvas.zoom_by(3.0)
        app.processEvents()
    with_boxes, without = {"zoom": [], "pan": [], "drag": []}, {"zoom": [], "pan": [], "drag": []}
    for _ in range(10):                                       # alternate the two sides
        for key, values in gesture_times(app, win_boxes, 4).items():
            with_boxes[key] += values
        for key, values in gesture_times(app, win_plain, 4).items():
            without[key] += values
    o, c = statistics.median(opens), statistics.median(cocos)
    s, r = statistics.median(switches), statistics.median(reads)
    print(f"open to a usable window: {o:.2f} s median of {args.opens} (target < 3 s); "
          f"pycocotools COCO() alone {c:.2f} s; ratio {o / c:.2f}x")
    print(f"switch image (N):        {s * 1000:.1f} ms median of {args.switches} (target < 100 ms), "
          f"max {max(switches) * 1000:.1f} ms; cv2.imread alone {r * 1000:.1f} ms; ratio {s / r:.2f}x")
    for key in ("zoom", "pan"):
        a, b = statistics.median(with_boxes[key]), statistics.median(without[key])
        print(f"4000x3000, 500 boxes, {key} frame: {a * 1000:.1f} ms median (p90 "
              f"{sorted(with_boxes[key])[int(0.9 * len(with_boxes[key]))] * 1000:.1f} ms); "
              f"same image without boxes {b * 1000:.1f} ms; ratio {a / b:.2f}x")
    print(f"4000x3000, 500 boxes, box-drag frame: {statistics.median(with_boxes['drag']) * 1000:.1f} ms median")


if __name__ == "__main__":
    main()
