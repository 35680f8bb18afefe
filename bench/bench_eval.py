"""Benchmark: ``detengine.evaluation.evaluate_coco`` (what the window's evaluation and
``detengine eval`` call) against faster-coco-eval alone on the same data: ``COCO`` from the GT
dict, ``loadRes``, ``COCOeval_faster`` evaluate / accumulate / summarize. 200 images of 640x480,
8 GTs each (5% crowd), 100 detections each (20,000), 10 classes. Interleaved, medians; the 12
numbers are checked equal first.

    .venv/bin/python bench/bench_eval.py [--reps 15]
"""
from __future__ import annotations

import contextlib
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detengine.evaluation import evaluate_coco  # noqa: E402


def make_case(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in range(1, 201)]
    anns, results = [], []
    for im in images:
        for _ in range(8):
            x, y, w, h = rng.uniform(0, 500), rng.uniform(0, 350), *rng.uniform(10, 140, 2)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.integers(1, 11)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.05)})
        for _ in range(100):
            x, y, w, h = rng.uniform(0, 500), rng.uniform(0, 350), *rng.uniform(10, 140, 2)
            results.append({"image_id": im["id"], "category_id": int(rng.integers(1, 11)),
                            "bbox": [round(x, 3), round(y, 3), round(w, 3), round(h, 3)],
                            "score": round(float(rng.random()), 5)})
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in range(1, 11)]}
    return gt, results


def peer(gt, results):
    from faster_coco_eval import COCO, COCOeval_faster
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval_faster(coco, coco.loadRes(results), "bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return list(ev.stats[:12])


def measure(reps: int = 15) -> dict:
    """evaluate_coco and faster-coco-eval alone on :func:`make_case`, alternating; medians in ms
    and whether the 12 numbers are equal."""
    import copy
    gt, results = make_case()
    ours_stats = list(evaluate_coco(gt, results).stats.values())
    same = np.allclose(ours_stats, peer(copy.deepcopy(gt), copy.deepcopy(results)), atol=1e-12)
    times = {"ours": [], "peer": []}
    for r in range(reps):
        inputs = (copy.deepcopy(gt), copy.deepcopy(results))      # the peer may change what it is given
        for side in (("ours", "peer") if r % 2 else ("peer", "ours")):
            t = time.perf_counter()
            evaluate_coco(gt, results) if side == "ours" else peer(*inputs)
            times[side].append(time.perf_counter() - t)
    return dict(images=len(gt["images"]), detections=len(results), reps=reps, same=bool(same),
                ours_ms=statistics.median(times["ours"]) * 1e3, peer_ms=statistics.median(times["peer"]) * 1e3)


def main(reps: int = 15) -> None:
    m = measure(reps)
    o, p = m["ours_ms"], m["peer_ms"]
    print(f"200 images, 20,000 detections: evaluate_coco {o:.0f} ms, faster-coco-eval alone {p:.0f} ms, "
          f"peer/ours {p / o:.2f}x; same 12 numbers: {m['same']}")


if __name__ == "__main__":
    main(int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] == "--reps" else 15)
