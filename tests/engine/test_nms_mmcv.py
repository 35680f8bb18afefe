"""NMS decisions exactly as mmcv 2.x makes them at mmdetection's test time, for any candidate count.

``mmcv_batched_nms`` below transcribes mmcv's ``ops/nms.py`` ``batched_nms`` (python; its
compiled ``nms`` kernel is torchvision's: sort by score, suppress when IoU > threshold), written
independently of detengine so that the engine's rule is checked against mmcv's, not itself.
"""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms as torchvision_batched_nms
from torchvision.ops import nms

from detengine.boxes import bbox_overlaps
from detengine.postprocess import Stage, batched_nms_mmcv, multiclass_nms, suppressors


def mmcv_batched_nms(boxes, scores, idxs, iou_threshold, split_thr=10000):
    """mmcv 2.x ``batched_nms(boxes, scores, idxs, dict(iou_threshold=...), class_agnostic=False)``
    -> kept indices in the order mmcv returns them."""
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    boxes_for_nms = boxes + offsets[:, None]
    if boxes_for_nms.shape[0] < split_thr:
        return nms(boxes_for_nms, scores, iou_threshold)
    total_mask = scores.new_zeros(scores.size(), dtype=torch.bool)
    for cls in torch.unique(idxs):
        mask = (idxs == cls).nonzero(as_tuple=False).view(-1)
        keep = nms(boxes_for_nms[mask], scores[mask], iou_threshold)
        total_mask[mask[keep]] = True
    keep = total_mask.nonzero(as_tuple=False).view(-1)
    _, inds = scores[keep].sort(descending=True, stable=True)
    return keep[inds]


# A pair of class 1 at IoU 0.4499999 on raw coordinates and 0.4500007 once moved by the class
# offset 1 * (1000 + 1): mmcv suppresses the second box, per-class NMS on raw boxes keeps it.
PAIR = torch.tensor([[34.43879318237305, 102.79019165039062, 130.87713623046875, 198.04803466796875],
                     [62.62919235229492, 113.0240249633789, 162.20166015625, 208.54367065429688]])


def _pair_and_fillers(num_fillers: int = 998):
    """The pair (class 1, scores 0.9 / 0.8), one more class-1 box far away, and class-0 fillers
    on a grid whose largest coordinate is exactly 1000."""
    side = 10.0
    cols = 30
    k = torch.arange(num_fillers)
    x1 = 400 + (k % cols).float() * 20
    y1 = 300 + (k // cols).float() * 20
    fillers = torch.stack([x1, y1, x1 + side, y1 + side], 1)
    fillers[-1] = torch.tensor([990.0, 990.0, 1000.0, 1000.0])
    lone = torch.tensor([[200.0, 300.0, 260.0, 350.0]])
    boxes = torch.cat([PAIR, lone, fillers])
    labels = torch.cat([torch.tensor([1, 1, 1]), torch.zeros(num_fillers, dtype=torch.long)])
    scores = torch.cat([torch.tensor([0.9, 0.8, 0.7]), 0.6 - torch.arange(num_fillers) * 1e-4])
    return boxes, scores, labels


def test_the_pair_is_decided_by_the_shifted_iou():
    raw = bbox_overlaps(PAIR[:1], PAIR[1:]).item()
    shifted = bbox_overlaps(PAIR[:1] + 1001.0, PAIR[1:] + 1001.0).item()
    assert raw <= 0.45 < shifted


def test_three_boxes_and_998_fillers_as_mmcv():
    boxes, scores, labels = _pair_and_fillers()
    assert boxes.max() == 1000 and boxes.shape[0] == 1001  # > 1000: torchvision goes per class on raw boxes
    want = mmcv_batched_nms(boxes, scores, labels, 0.45)
    assert 1 not in want.tolist()  # mmcv suppresses the second box of the pair
    assert 1 in torchvision_batched_nms(boxes, scores, labels, 0.45).tolist()  # the trap we avoid
    keep, shifted, cross = batched_nms_mmcv(boxes, scores, labels, 0.45)
    assert torch.equal(keep, want) and not cross


def test_the_record_of_the_pair_through_multiclass_nms():
    """The NMS view's record says the box was suppressed, by whom, at the IoU mmcv compared."""
    boxes, scores, labels = _pair_and_fillers()
    n = boxes.shape[0]
    cls_scores = torch.zeros(n, 3)  # softmax layout: 2 classes + background
    cls_scores[torch.arange(n), labels] = scores
    per_class = boxes.repeat(1, 2)  # class-specific boxes, the same for both classes
    dets, out_labels, inds, record = multiclass_nms(per_class, cls_scores, 0.05, 0.45)
    # candidates are (row, class) pairs above 0.05, in row-major order: the pair is 0 and 1
    assert record.cand_stage[1] == Stage.SUPPRESSED and record.suppressed_by[1] == 0
    assert record.suppressed_iou[1] > 0.45
    assert record.cand_stage[0] == record.cand_stage[2] == Stage.KEPT
    assert dets.shape[0] == n - 1


@pytest.mark.parametrize("num", [3500, 50_000])
def test_random_sigmoid_candidates_as_mmcv(num):
    """A sigmoid head with a low score_thr reaches NMS with thousands of (prior, class) pairs:
    3,500 (one NMS over all shifted boxes) and 50,000 (mmcv's split_thr branch, per class)."""
    g = torch.Generator().manual_seed(num)
    centres = torch.rand(num, 2, generator=g) * 600
    sizes = 8 + torch.rand(num, 2, generator=g) * 120
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], 1).clamp(0, 640)
    scores = torch.rand(num, generator=g)
    scores[::97] = scores[1::97]  # ties
    labels = torch.randint(0, 80, (num,), generator=g)
    boxes[::101] = boxes[1::101]  # identical boxes
    boxes[5::211, 2:] = boxes[5::211, :2]  # zero-area boxes
    keep, shifted, _ = batched_nms_mmcv(boxes, scores, labels, 0.6)
    assert torch.equal(keep, mmcv_batched_nms(boxes, scores, labels, 0.6))
    gone = torch.ones(num, dtype=torch.bool)
    gone[keep] = False
    by, iou = suppressors(shifted, scores, labels, keep, 0.6)
    assert (by[gone] >= 0).all() and (by[~gone] == -1).all()  # every suppressed box has its suppressor
    assert torch.equal(labels[by[gone]], labels[gone]) and (iou[gone] > 0.6).all()


def test_negative_coordinates_let_classes_meet_in_the_single_pass():
    """mmcv's offset is max + 1: with coordinates below -1 a shifted box of class 1 can overlap one
    of class 0 in the single NMS call, and mmcv then suppresses across classes. So do we, and the
    record names the other-class suppressor."""
    boxes = torch.tensor([[-11.0, -11, -1, -1], [0.0, 0, 10, 10], [-100.0, -100, -90, -90]])
    labels = torch.tensor([1, 0, 0])
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep, shifted, cross = batched_nms_mmcv(boxes, scores, labels, 0.5)
    assert cross and torch.equal(keep, mmcv_batched_nms(boxes, scores, labels, 0.5))
    assert keep.tolist() == [0, 2]  # class 1 moved by 11 lands exactly on the class-0 box
    by, iou = suppressors(shifted, scores, labels, keep, 0.5, class_agnostic=cross)
    assert by.tolist() == [-1, 0, -1] and iou[1] == 1.0


def test_evaluation_predicts_without_the_record_and_the_same_detections():
    """predict(record=False), what evaluation and export call: the same boxes, scores and labels,
    no suppressors computed."""
    from detengine.models import build_detector
    from detengine.shipped import find_config
    from detengine.train.runner import load_cfg
    torch.manual_seed(0)
    cfg = load_cfg(str(find_config("retinanet_r50_fpn_coco")))["model"]
    cfg["backbone"] = dict(cfg["backbone"], depth=18, init_cfg=None)
    cfg["neck"] = dict(cfg["neck"], in_channels=[64, 128, 256, 512])
    cfg["test_cfg"] = dict(cfg["test_cfg"], score_thr=0.0, nms_pre=2000)
    model = build_detector(cfg).eval()
    batch = {"images": torch.rand(1, 3, 128, 160)}
    full, lean = model.predict(batch)[0], model.predict(batch, record=False)[0]
    assert torch.equal(full.boxes, lean.boxes) and torch.equal(full.scores, lean.scores)
    assert torch.equal(full.labels, lean.labels)
    assert (full.record.suppressed_by >= 0).any() and (lean.record.suppressed_by == -1).all()
