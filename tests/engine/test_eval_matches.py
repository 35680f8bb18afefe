"""The window's per-image TP / FP / missed come from COCOeval's own matches (pycocotools'
``evalImgs`` at IoU 0.5, area "all", maxDets 100), with both backends, at any score threshold,
and differ from a naive greedy count exactly where COCOeval's rules differ."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detengine.evaluation import coco_image_matches, evaluate_coco
from detengine.project_eval import ImagePredictions, evaluate_predictions, match_detections, per_image_counts

CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
LABEL_TO_CAT = {0: 1, 1: 2}


def _ann(ann_id, image_id, cat, xyxy, crowd=0):
    x1, y1, x2, y2 = xyxy
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
            "area": (x2 - x1) * (y2 - y1), "iscrowd": crowd}


def hand_made_case():
    """Image 1: a cat found once (TP), found again (duplicate: FP), called a dog (wrong class:
    FP), and a crowd of cats with a detection inside (COCO: ignored, greedy: FP). Image 2: a dog
    and no detections (missed). Image 3: nothing at all. Image 4: 101 detections of one class
    on an empty image (COCO keeps the 100 best)."""
    gt = {"images": [{"id": i, "width": 400, "height": 400, "file_name": f"{i}.png"} for i in (1, 2, 3, 4)],
          "categories": CATS,
          "annotations": [_ann(1, 1, 1, (10, 10, 60, 60)), _ann(2, 1, 1, (200, 200, 380, 380), crowd=1),
                          _ann(3, 2, 2, (50, 50, 150, 150))]}
    preds = {1: ImagePredictions([(10, 10, 60, 60), (12, 10, 62, 60), (10, 10, 60, 60), (250, 250, 300, 300)],
                                 [0.9, 0.8, 0.7, 0.6], [0, 0, 1, 0]),
             2: ImagePredictions(np.zeros((0, 4)), [], []),
             3: ImagePredictions(np.zeros((0, 4)), [], []),
             4: ImagePredictions([(k, k, k + 20, k + 20) for k in range(101)], np.linspace(0.99, 0.5, 101),
                                 [1] * 101)}
    return gt, preds


def evalimgs_counts(gt: dict, results: list[dict], image_ids, score_thr: float) -> dict[int, tuple]:
    """The reference, straight from pycocotools' evalImgs: TP = matched and not ignored, FP =
    unmatched and not ignored, missed = a not-ignored GT no kept detection matched."""
    coco = COCO()
    coco.dataset = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes([dict(r) for r in results]), "bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.evaluate()
    t = int(np.flatnonzero(np.isclose(ev.params.iouThrs, 0.5))[0])
    out = {int(i): [0, 0, 0] for i in image_ids}
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0] or e["maxDet"] != ev.params.maxDets[-1]:
            continue
        kept = np.asarray(e["dtScores"]) >= score_thr
        matched, ignored = e["dtMatches"][t] > 0, e["dtIgnore"][t].astype(bool)
        kept_ids = {d for d, k in zip(e["dtIds"], kept) if k}
        found = np.array([m in kept_ids for m in e["gtMatches"][t]], bool)
        counts = out[e["image_id"]]
        counts[0] += int((kept & matched & ~ignored).sum())
        counts[1] += int((kept & ~matched & ~ignored).sum())
        counts[2] += int((~found & ~e["gtIgnore"].astype(bool)).sum())
    return {i: tuple(c) for i, c in out.items()}


def greedy_counts(gt: dict, preds: dict, score_thr: float) -> dict[int, tuple]:
    """The count the image list showed before: match_detections on the non-crowd GTs."""
    out = {}
    for image_id, p in preds.items():
        anns = [a for a in gt["annotations"] if a["image_id"] == image_id and not a["iscrowd"]]
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns]).reshape(-1, 4)
        labels = np.array([a["category_id"] - 1 for a in anns])
        keep = p.scores >= score_thr
        tp, _, missed = match_detections(p.boxes[keep], p.scores[keep], p.labels[keep], boxes, labels)
        out[image_id] = (int(tp.sum()), int((~tp).sum()), len(missed))
    return out


@pytest.mark.parametrize("backend", ["faster-coco-eval", "pycocotools"])
def test_counts_are_cocoevals_at_every_threshold(backend):
    gt, preds = hand_made_case()
    metrics, counts, results = evaluate_predictions(gt, preds, LABEL_TO_CAT, backend=backend)
    assert counts == evalimgs_counts(gt, results, preds, 0.0)
    assert counts == {1: (1, 2, 0), 2: (0, 0, 1), 3: (0, 0, 0), 4: (0, 100, 0)}
    # the greedy count: the detection in the crowd is an FP there, and image 4 has 101 FPs
    assert greedy_counts(gt, preds, 0.0) == {1: (1, 3, 0), 2: (0, 0, 1), 3: (0, 0, 0), 4: (0, 101, 0)}
    for thr in (0.65, 0.75, 0.85, 0.95):          # the slider recounts the same matches
        assert per_image_counts(metrics.image_matches, thr) == evalimgs_counts(gt, results, preds, thr)
    assert per_image_counts(metrics.image_matches, 0.75) == {1: (1, 1, 0), 2: (0, 0, 1), 3: (0, 0, 0),
                                                             4: (0, 49, 0)}
    assert per_image_counts(metrics.image_matches, 0.95)[1] == (0, 0, 1)      # the cat is missed


def test_no_detections_at_all():
    gt, preds = hand_made_case()
    empty = {i: ImagePredictions(np.zeros((0, 4)), [], []) for i in preds}
    _, counts, _ = evaluate_predictions(gt, empty, LABEL_TO_CAT)
    assert counts == {1: (0, 0, 1), 2: (0, 0, 1), 3: (0, 0, 0), 4: (0, 0, 0)}   # the crowd is never missed


def random_case(seed: int):
    """Clustered boxes (many overlaps, equal scores, crowds) on 6 images, 3 classes."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": 200, "height": 200} for i in range(1, 7)]
    anns, results = [], []
    for image in images:
        for _ in range(rng.integers(0, 6)):
            x, y = rng.uniform(0, 120, 2)
            w, h = rng.uniform(8, 70, 2)
            anns.append({"id": len(anns) + 1, "image_id": image["id"], "category_id": int(rng.integers(1, 4)),
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": int(rng.random() < 0.2)})
        own = [a for a in anns if a["image_id"] == image["id"]]
        for _ in range(rng.integers(0, 12)):
            base = own[rng.integers(len(own))] if own and rng.random() < 0.85 else \
                {"bbox": [50, 50, 40, 40], "category_id": 1}
            x, y, w, h = base["bbox"]
            box = [x + rng.normal(0, 3), y + rng.normal(0, 3), w * rng.uniform(0.85, 1.15), h * rng.uniform(0.85, 1.15)]
            cat = base["category_id"] if rng.random() < 0.8 else int(rng.integers(1, 4))
            results.append({"image_id": image["id"], "category_id": cat, "bbox": [round(float(v), 3) for v in box],
                            "score": round(float(rng.choice([0.3, 0.5, rng.uniform()])), 5)})
    return {"images": images, "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3)],
            "annotations": anns}, results


@pytest.mark.parametrize("seed", range(8))
def test_numpy_matching_equals_pycocotools_evalimgs(seed):
    """faster-coco-eval keeps its matches in C++: the numpy port of evaluateImg gives exactly
    pycocotools' (ties in score and IoU included)."""
    gt, results = random_case(seed)
    ids = [im["id"] for im in gt["images"]]
    ours = coco_image_matches(gt, results, ids)
    theirs = evaluate_coco(gt, results, backend="pycocotools", matches=True).image_matches if results else ours
    for thr in (0.0, 0.4, 0.6):
        expected = evalimgs_counts(gt, results, ids, thr) if results else per_image_counts(ours, thr)
        assert per_image_counts(ours, thr) == expected == per_image_counts(theirs, thr)


@pytest.mark.parametrize("backend", ["faster-coco-eval", "pycocotools"])
def test_each_prediction_s_outcome_is_coco_s_and_adds_up_to_the_counts(backend):
    """The canvas colours each prediction TP / FP and marks missed GTs from the same matches."""
    from detengine.project_eval import EvalResult
    gt, preds = hand_made_case()
    metrics, per_image, results = evaluate_predictions(gt, preds, LABEL_TO_CAT, backend=backend)
    result = EvalResult(metrics, per_image, results, preds, [], "model", LABEL_TO_CAT, gt)
    status, missed = result.outcome(1)
    assert status == ["tp", "fp", "fp", "ignored"] and missed == []     # duplicate and wrong class: FP; crowd
    assert result.outcome(2) == ([], [3])                               # the dog nobody found
    status, missed = result.outcome(4)
    assert status.count("fp") == 100 and status[-1] is None             # the 101st is beyond COCO's 100
    assert result.outcome(1, score_thr=0.95) == ([None] * 4, [1])       # above every score: the cat is missed
    for image_id, (tp, fp, miss) in per_image_counts(metrics.image_matches, 0.75).items():
        status, missed = result.outcome(image_id, 0.75)
        assert (status.count("tp"), status.count("fp"), len(missed)) == (tp, fp, miss)
