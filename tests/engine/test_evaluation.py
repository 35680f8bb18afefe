"""evaluate_coco gives pycocotools' 12 numbers and leaves the caller's data as it was."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from detengine.evaluation import COCO_METRIC_NAMES, evaluate_coco


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 320, "height": 240, "file_name": f"{i}.jpg"} for i in range(1, 13)]
    anns, results = [], []
    for im in images:
        for _ in range(5):
            x, y, w, h = rng.uniform(0, 200), rng.uniform(0, 150), *rng.uniform(4, 110, 2)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": int(rng.integers(1, 4)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(len(anns) % 7 == 0)})
        if im["id"] == 5:
            continue                                             # an image without detections
        for a in anns[-5:]:
            for _ in range(4):
                x, y, w, h = (v + rng.normal(0, 6) for v in a["bbox"])
                results.append({"image_id": im["id"], "category_id": a["category_id"] if rng.random() < 0.8 else 1,
                                "bbox": [round(x, 3), round(y, 3), round(abs(w) + 1, 3), round(abs(h) + 1, 3)],
                                "score": round(float(rng.random()), 5)})
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": f"c{c}"} for c in (1, 2, 3)]}
    return gt, results


def test_the_twelve_numbers_are_pycocotools_and_nothing_is_changed():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt, results = _case()
    gt_before, results_before = copy.deepcopy(gt), copy.deepcopy(results)
    ours = evaluate_coco(gt, results)
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert [ours.stats[n] for n in COCO_METRIC_NAMES] == pytest.approx(list(ev.stats[:12]), abs=1e-12)
    assert gt == gt_before and results == results_before            # no 'ignore', 'area', 'id' added
    again = evaluate_coco(gt, results, backend="pycocotools")
    assert again.stats == pytest.approx(ours.stats, abs=1e-12)
