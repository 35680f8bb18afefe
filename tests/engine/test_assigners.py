"""Assigners on hand-built cases, and the classic rules against literal transcriptions of
ssd.pytorch's ``match`` and d2l's ``assign_anchor_to_bbox``."""
from __future__ import annotations

import pytest
import torch

from detengine.assigners import (
    AssignResult,
    ATSSAssigner,
    D2LGreedyAssigner,
    DynamicSoftLabelAssigner,
    MaxIoUAssigner,
    Reason,
    SSDPytorchMatcher,
)
from detengine.boxes import box_iou

SSD = dict(pos_iou_thr=0.5, neg_iou_thr=0.5, min_pos_iou=0.0, gt_max_assign_all=False)
RETINA = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.0)
PRIORS = torch.tensor([[0.0, 0, 10, 10], [0, 0, 20, 20], [30, 30, 40, 40], [30, 30, 50, 50], [100, 100, 110, 110]])


def test_gt_below_pos_threshold_still_gets_its_best_prior():
    gt = torch.tensor([[0.0, 0, 12, 4]])  # IoU 0.4 with prior 0, below 0.5
    r = MaxIoUAssigner(**SSD).assign(PRIORS, gt, torch.tensor([3]))
    assert r.gt_inds.tolist() == [1, 0, 0, 0, 0]
    assert r.labels.tolist() == [3, -1, -1, -1, -1]
    assert r.reasons[0] == Reason.POS_LOW_QUALITY
    assert r.num_pos_per_gt().tolist() == [1]


def test_positive_negative_and_ignored_band():
    gt = torch.tensor([[0.0, 0, 10, 10], [30.0, 30, 44, 44]])
    r = MaxIoUAssigner(**RETINA).assign(PRIORS, gt, torch.tensor([0, 1]))
    iou = box_iou(gt, PRIORS)
    assert iou[1, 3] >= 0.4 and iou[1, 3] < 0.5
    # prior 3 sits in [0.4, 0.5): ignored; prior 2 is GT 1's best (0.51): positive
    assert r.gt_inds.tolist() == [1, 0, 2, -1, 0]
    assert r.reasons[3] == Reason.IGNORED_BETWEEN_THR


def test_ties_with_gt_max_assign_all():
    priors = torch.tensor([[0.0, 0, 10, 10], [10.0, 0, 20, 10], [50, 50, 60, 60]])
    gt = torch.tensor([[5.0, 0, 15, 10]])  # IoU 1/3 with both of the first two priors
    assert MaxIoUAssigner(**RETINA).assign(priors, gt, torch.tensor([0])).gt_inds.tolist() == [1, 1, 0]
    assert MaxIoUAssigner(**SSD).assign(priors, gt, torch.tensor([0])).gt_inds.tolist() == [1, 0, 0]


def test_later_gt_overwrites_shared_best_prior():
    gt = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    r = MaxIoUAssigner(**SSD).assign(PRIORS, gt, torch.tensor([0, 1]))
    assert r.gt_inds[0] == 2 and r.num_pos_per_gt().tolist() == [0, 1]


def test_crowd_boxes_are_ignored():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    crowd = torch.tensor([[28.0, 28, 52, 52]])
    r = MaxIoUAssigner(**RETINA, ignore_iof_thr=0.5).assign(PRIORS, gt, torch.tensor([0]), gt_boxes_ignore=crowd)
    assert r.gt_inds.tolist() == [1, 0, -1, -1, 0]
    assert r.reasons[2] == Reason.IGNORED_CROWD


@pytest.mark.parametrize("assigner", [MaxIoUAssigner(**SSD), ATSSAssigner(topk=2), SSDPytorchMatcher(),
                                      D2LGreedyAssigner()])
def test_no_gt_means_all_negative_and_no_prior_means_empty(assigner):
    r = assigner.assign(PRIORS, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), num_level_priors=[5])
    assert r.gt_inds.tolist() == [0] * 5 and r.labels.tolist() == [-1] * 5 and r.num_gts == 0
    r = assigner.assign(torch.zeros(0, 4), PRIORS[:1], torch.tensor([0]), num_level_priors=[0])
    assert r.gt_inds.shape == (0,) and r.max_overlaps.shape == (0,)


def test_dynamic_soft_label_empty_cases():
    a = DynamicSoftLabelAssigner()
    pts = torch.tensor([[5.0, 5, 8, 8], [200.0, 200, 8, 8]])
    r = a.assign(pts, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), pred_scores=torch.zeros(2, 3),
                 pred_boxes=torch.zeros(2, 4))
    assert r.gt_inds.tolist() == [0, 0]
    r = a.assign(pts, torch.tensor([[50.0, 50, 60, 60]]), torch.tensor([1]), pred_scores=torch.zeros(2, 3),
                 pred_boxes=torch.tensor([[0.0, 0, 10, 10], [190, 190, 210, 210]]))
    assert r.gt_inds.tolist() == [0, 0] and r.reasons.tolist() == [Reason.NOT_INSIDE_ANY_GT] * 2


def test_assign_result_random_and_repr():
    r = AssignResult.random(num_priors=50, num_gts=4, seed=1)
    assert r.gt_inds.shape == (50,) and "num_gts=4" in repr(r)
    assert r.num_pos + r.num_neg + r.num_ignored == 50


# ---------------------------------------------------------------- literal transcriptions
def ssd_pytorch_match(threshold, truths, priors_xyxy, labels):
    """ssd.pytorch layers/box_utils.py ``match`` (seed 004), returning conf_t and the matched truth."""
    overlaps = box_iou(truths, priors_xyxy)
    best_prior_overlap, best_prior_idx = overlaps.max(1, keepdim=True)
    best_truth_overlap, best_truth_idx = overlaps.max(0, keepdim=True)
    best_truth_idx.squeeze_(0)
    best_truth_overlap.squeeze_(0)
    best_prior_idx.squeeze_(1)
    best_prior_overlap.squeeze_(1)
    best_truth_overlap.index_fill_(0, best_prior_idx, 2)
    for j in range(best_prior_idx.size(0)):
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx] + 1
    conf[best_truth_overlap < threshold] = 0
    return conf, best_truth_idx


def d2l_assign_anchor_to_bbox(ground_truth, anchors, iou_threshold=0.5):
    """d2l sec. 14.4 ``assign_anchor_to_bbox``."""
    num_anchors, num_gt_boxes = anchors.shape[0], ground_truth.shape[0]
    jaccard = box_iou(anchors, ground_truth)
    anchors_bbox_map = torch.full((num_anchors,), -1, dtype=torch.long)
    max_ious, indices = torch.max(jaccard, dim=1)
    anc_i = torch.nonzero(max_ious >= iou_threshold).reshape(-1)
    box_j = indices[max_ious >= iou_threshold]
    anchors_bbox_map[anc_i] = box_j
    col_discard = torch.full((num_anchors,), -1)
    row_discard = torch.full((num_gt_boxes,), -1)
    for _ in range(num_gt_boxes):
        max_idx = torch.argmax(jaccard)
        box_idx = (max_idx % num_gt_boxes).long()
        anc_idx = (max_idx / num_gt_boxes).long()
        anchors_bbox_map[anc_idx] = box_idx
        jaccard[:, box_idx] = col_discard
        jaccard[anc_idx, :] = row_discard
    return anchors_bbox_map


def _random_case(seed, num_gt):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(num_gt, 2, generator=g) * 220
    wh = 4 + torch.rand(num_gt, 2, generator=g) * 120
    return torch.cat([xy, xy + wh], 1).clamp(max=300), torch.randint(0, 20, (num_gt,), generator=g)


@pytest.fixture(scope="module")
def ssd_priors():
    from detengine.priors import SSDAnchorGenerator
    return SSDAnchorGenerator(strides=[8, 16, 32, 64, 100, 300], ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                              basesize_ratio_range=(0.15, 0.9), scale_major=False).grid_priors(
        [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]).tensor


@pytest.mark.parametrize("seed", range(6))
def test_ssd_pytorch_match_equals_transcription(ssd_priors, seed):
    truths, labels = _random_case(seed, 1 + seed)
    conf, _ = ssd_pytorch_match(0.5, truths, ssd_priors, labels)
    r = SSDPytorchMatcher(threshold=0.5).assign(ssd_priors, truths, labels)
    ours = torch.where(r.gt_inds > 0, r.labels + 1, torch.zeros_like(r.labels))
    assert torch.equal(ours, conf)


@pytest.mark.parametrize("seed", range(6))
def test_d2l_greedy_equals_transcription(ssd_priors, seed):
    truths, labels = _random_case(100 + seed, 1 + seed)
    expected = d2l_assign_anchor_to_bbox(truths, ssd_priors)
    r = D2LGreedyAssigner(iou_threshold=0.5).assign(ssd_priors, truths, labels)
    assert torch.equal(r.gt_inds - 1, expected)
    assert (r.reasons == Reason.POS_GREEDY).sum() == truths.shape[0]


def test_dynamic_soft_label_cost_factored_equals_mmdetections_per_class_sum():
    """The class cost summed over (V, G, C) as mmdetection writes it equals the factored (V, C) +
    (V, G) form within float rounding, and the assignments are the same on random cases."""
    import torch.nn.functional as F

    from detengine.assigners import DynamicSoftLabelAssigner
    from detengine.priors import MlvlPointGenerator

    def per_class(scores, gt_labels, ious):
        v, g = ious.shape
        onehot = F.one_hot(gt_labels.long(), scores.shape[-1]).float().unsqueeze(0).repeat(v, 1, 1)
        s = scores.unsqueeze(1).repeat(1, g, 1)
        soft = onehot * ious[..., None]
        return (F.binary_cross_entropy_with_logits(s, soft, reduction="none") * (soft - s.sigmoid()).abs().pow(2)).sum(-1)

    class MMDetCost(DynamicSoftLabelAssigner):
        _cls_cost = staticmethod(per_class)

    pri = MlvlPointGenerator(strides=[8, 16, 32], offset=0).grid_priors([(40, 40), (20, 20), (10, 10)]).tensor
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        n = [1, 3, 10, 40][seed % 4]
        xy = torch.rand(n, 2, generator=g) * 300
        gt = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 100 + 2], 1)
        labels = torch.randint(0, 80, (n,), generator=g)
        labels[: n // 2] = labels[0]                                       # shared classes too
        scores = torch.randn(len(pri), 80, generator=g) * 3 - 2
        d = (0.5 + 2.5 * torch.rand(len(pri), 4, generator=g)) * pri[:, 2:3]
        boxes = torch.cat([pri[:, :2] - d[:, :2], pri[:, :2] + d[:, 2:]], 1)
        ious = torch.rand(len(pri), n, generator=g)
        torch.testing.assert_close(DynamicSoftLabelAssigner._cls_cost(scores, labels, ious),
                                   per_class(scores, labels, ious), rtol=1e-5, atol=1e-5)
        a = DynamicSoftLabelAssigner().assign(pri, gt, labels, pred_scores=scores, pred_boxes=boxes)
        b = MMDetCost().assign(pri, gt, labels, pred_scores=scores, pred_boxes=boxes)
        assert torch.equal(a.gt_inds, b.gt_inds) and torch.equal(a.labels, b.labels)
