"""Coders (round trips), losses (torchvision and d2l references), samplers and post-processing."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.ops import batched_nms, sigmoid_focal_loss

from detengine.assigners import AssignResult
from detengine.boxes import box_iou
from detengine.coders import D2LOffsetCoder, DeltaXYWHBBoxCoder, DistancePointBBoxCoder
from detengine.losses import FocalLoss, GIoULoss, QualityFocalLoss, SmoothL1Loss, weight_reduce_loss
from detengine.postprocess import Stage, postprocess_d2l, postprocess_dense, suppressors
from detengine.samplers import PseudoSampler, hard_negative_mask

EPS32 = torch.finfo(torch.float32).eps


def _pairs(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 200
    p = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=g) * 80], 1)
    q = p + (torch.rand(n, 4, generator=g) - 0.5) * 20
    q[:, 2:] = torch.maximum(q[:, 2:], q[:, :2] + 1)
    return p, q


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([(1.0, 1.0, 1.0, 1.0), (0.1, 0.1, 0.2, 0.2)]))
def test_delta_coder_round_trip(seed, stds):
    p, q = _pairs(16, seed)
    coder = DeltaXYWHBBoxCoder(target_stds=stds)
    torch.testing.assert_close(coder.decode(p, coder.encode(p, q)), q, rtol=1e-4, atol=1e-3)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_distance_and_d2l_coder_round_trip(seed):
    p, q = _pairs(16, seed)
    centers = (q[:, :2] + q[:, 2:]) / 2
    dc = DistancePointBBoxCoder()
    torch.testing.assert_close(dc.decode(centers, dc.encode(centers, q)), q)
    d2l = D2LOffsetCoder()
    torch.testing.assert_close(d2l.decode(p, d2l.encode(p, q)), q, rtol=1e-4, atol=1e-3)


def test_delta_decode_clamps_aspect_and_clips():
    coder = DeltaXYWHBBoxCoder()
    out = coder.decode(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([[0.0, 0, 100.0, -100.0]]), max_shape=(50, 60))
    assert out[0, 0] == 0 and out[0, 2] == 60  # width clamped to 10 * 1000/16 = 625, clipped to the image
    assert torch.isfinite(out).all()


def test_focal_loss_equals_torchvision():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(50, 7, generator=g)
    labels = torch.randint(0, 8, (50,), generator=g)  # 7 = background
    target = F.one_hot(labels, 8)[:, :7].float()
    ours = FocalLoss()(pred, labels, reduction_override="none")
    torch.testing.assert_close(ours, sigmoid_focal_loss(pred, target, reduction="none"))
    torch.testing.assert_close(FocalLoss(reduction="sum")(pred, labels), sigmoid_focal_loss(pred, target, reduction="sum"))
    torch.testing.assert_close(FocalLoss()(pred, labels), sigmoid_focal_loss(pred, target, reduction="mean"))


def test_reduction_semantics_and_empty_targets():
    loss = torch.tensor([1.0, 2.0, 3.0])
    assert float(weight_reduce_loss(loss, avg_factor=3)) == pytest.approx(2.0, rel=1e-6)
    assert float(weight_reduce_loss(loss, torch.tensor([1.0, 0, 1]))) == pytest.approx(4 / 3)
    empty = SmoothL1Loss()(torch.zeros(0, 4, requires_grad=True), torch.zeros(0, 4), avg_factor=1.0)
    assert float(empty.detach()) == 0.0 and empty.requires_grad
    assert float(GIoULoss()(torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0))) == 0.0
    point = torch.tensor([[3.0, 3, 3, 3]])
    assert float(GIoULoss()(point, point, reduction_override="none")) == 1.0


def test_pseudo_sampler_and_mining_modes():
    ar = AssignResult(2, torch.tensor([1, 0, 0, -1, 2, 0, 0]), torch.zeros(7), torch.tensor([3, -1, -1, -1, 4, -1, -1]))
    s = PseudoSampler().sample(ar, torch.rand(7, 4), torch.tensor([[0.0, 0, 1, 1], [2.0, 2, 3, 3]]))
    assert s.pos_inds.tolist() == [0, 4] and s.neg_inds.tolist() == [1, 2, 5, 6]
    assert s.pos_assigned_gt_inds.tolist() == [0, 1]
    loss = torch.tensor([0.1, 5.0, 0.2, 9.0, 0.3, 3.0, 0.4])
    hard = hard_negative_mask(loss, ar.pos_mask, ar.neg_mask, neg_pos_ratio=1)
    assert hard.nonzero().view(-1).tolist() == [1, 5]
    none = hard_negative_mask(loss, torch.zeros(7, dtype=torch.bool), ar.neg_mask)
    assert not none.any()


def ssd_pytorch_mining(loss_c, pos, negpos_ratio=3):
    """ssd.pytorch MultiBoxLoss hard-negative mining for one image (seed 004)."""
    loss_c = loss_c.clone().view(1, -1)
    pos = pos.view(1, -1)
    loss_c[pos] = 0
    _, loss_idx = loss_c.sort(1, descending=True)
    _, idx_rank = loss_idx.sort(1)
    num_pos = pos.long().sum(1, keepdim=True)
    num_neg = torch.clamp(negpos_ratio * num_pos, max=pos.size(1) - 1)
    return (idx_rank < num_neg.expand_as(idx_rank)).view(-1)


def test_ssd_pytorch_mining_equals_transcription():
    g = torch.Generator().manual_seed(3)
    loss = torch.rand(500, generator=g)
    pos = torch.rand(500, generator=g) < 0.03
    ours = hard_negative_mask(loss, pos, ~pos, 3, mode="ssd_pytorch")
    assert torch.equal(ours, ssd_pytorch_mining(loss, pos))
    mm = hard_negative_mask(loss, pos, ~pos, 3, mode="mmdet")
    assert torch.equal(mm, ours)  # no ties: both pick the same 3 * num_pos hardest negatives


def _random_dense(seed, a=600, c=5):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(a, 2, generator=g) * 250
    priors = torch.cat([xy, xy + 10 + torch.rand(a, 2, generator=g) * 60], 1)
    cls = torch.randn(a, c + 1, generator=g)
    reg = torch.randn(a, 4, generator=g) * 0.3
    return priors, cls, reg


@pytest.mark.parametrize("seed", range(5))
def test_postprocess_nms_equals_torchvision_batched_nms_and_record_is_consistent(seed):
    priors, cls, reg = _random_dense(seed)
    coder = DeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2))
    r = postprocess_dense(cls, reg, priors, [400, 200], coder.decode, score_layout="softmax", score_thr=0.05,
                          nms_pre=300, iou_threshold=0.45, max_per_img=10_000, img_shape=(300, 300))
    alive = r.cand_stage != Stage.TOO_SMALL
    keep = batched_nms(r.cand_box[alive], r.cand_score[alive], r.cand_label[alive], 0.45)
    assert torch.equal(r.kept, alive.nonzero().view(-1)[keep])
    sup = r.cand_stage == Stage.SUPPRESSED
    assert sup.any()
    by = r.suppressed_by[sup]
    assert (by >= 0).all() and (r.cand_stage[by] == Stage.KEPT).all()
    assert torch.equal(r.cand_label[by], r.cand_label[sup])
    assert (r.cand_score[by] >= r.cand_score[sup]).all()
    ious = box_iou(r.cand_box[sup], r.cand_box).gather(1, by[:, None]).view(-1)
    assert (ious > 0.45).all()
    torch.testing.assert_close(ious, r.suppressed_iou[sup])
    counts = list(r.counts.values())
    assert counts == sorted(counts, reverse=True) and counts[-1] == r.boxes.shape[0]
    assert int((r.raw_stage == Stage.KEPT).sum()) == r.boxes.shape[0]


def test_suppressor_is_the_first_kept_box_in_score_order():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1.0, 0, 11, 10], [0.5, 0, 10.5, 10], [50, 50, 60, 60]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.zeros(4, dtype=torch.long)
    keep = batched_nms(boxes, scores, labels, 0.5)
    by, iou = suppressors(boxes, scores, labels, keep, 0.5)
    assert keep.tolist() == [0, 3] and by.tolist() == [-1, 0, 0, -1]


def test_postprocess_handles_nothing_above_threshold_and_max_per_img():
    priors, cls, reg = _random_dense(0, a=50)
    coder = DeltaXYWHBBoxCoder()
    r = postprocess_dense(cls, reg, priors, [50], coder.decode, score_layout="sigmoid", score_thr=1.1, nms_pre=10,
                          iou_threshold=0.5, max_per_img=5)
    assert r.boxes.shape == (0, 4) and r.counts["score_thr"] == 0
    r = postprocess_dense(cls, reg, priors, [50], coder.decode, score_layout="sigmoid", score_thr=0.0, nms_pre=1000,
                          iou_threshold=0.5, max_per_img=5)
    assert r.boxes.shape[0] == 5 and (r.cand_stage == Stage.OVER_MAX_PER_IMG).any()
    assert torch.all(r.scores[:-1] >= r.scores[1:])


def d2l_multibox_detection(cls_probs, offset_preds, anchors, decode, nms_threshold=0.5, pos_threshold=0.009999999):
    """d2l sec. 14.4 ``multibox_detection`` for one image (torchvision nms for d2l's loop)."""
    from torchvision.ops import nms
    num_anchors = anchors.shape[0]
    conf, class_id = torch.max(cls_probs[1:], 0)
    predicted_bb = decode(anchors, offset_preds)
    keep = nms(predicted_bb, conf, nms_threshold)
    all_idx = torch.arange(num_anchors, dtype=torch.long)
    combined = torch.cat((keep, all_idx))
    uniques, counts = combined.unique(return_counts=True)
    non_keep = uniques[counts == 1]
    all_id_sorted = torch.cat((keep, non_keep))
    class_id[non_keep] = -1
    class_id = class_id[all_id_sorted]
    conf, predicted_bb = conf[all_id_sorted], predicted_bb[all_id_sorted]
    below = conf < pos_threshold
    class_id[below] = -1
    conf[below] = 1 - conf[below]
    return torch.cat((class_id.unsqueeze(1).float(), conf.unsqueeze(1), predicted_bb), dim=1)


def test_postprocess_d2l_equals_multibox_detection():
    priors, cls, reg = _random_dense(7, a=400, c=3)
    cls[:, 1:] += 1.5
    coder = D2LOffsetCoder()
    expected = d2l_multibox_detection(cls.softmax(-1).t(), reg, priors, coder.decode)
    rows = expected[expected[:, 0] >= 0]
    r = postprocess_d2l(cls, reg, priors, coder.decode)
    assert torch.equal(r.labels.float(), rows[:, 0])
    torch.testing.assert_close(r.scores, rows[:, 1])
    torch.testing.assert_close(r.boxes, rows[:, 2:])


def test_focal_per_prior_equals_row_sums_and_keeps_gradients():
    from detengine.losses import sigmoid_focal_loss as ours_dense
    from detengine.losses import sigmoid_focal_loss_per_prior
    g = torch.Generator().manual_seed(2)
    pred = (torch.randn(1500, 9, generator=g) * 4).requires_grad_()
    labels = torch.randint(0, 10, (1500,), generator=g)
    rows = sigmoid_focal_loss_per_prior(pred, labels, rows=128)
    torch.testing.assert_close(rows, ours_dense(pred, labels).sum(1), rtol=1e-5, atol=1e-5)
    (grad_rows,) = torch.autograd.grad(rows.sum(), pred)
    (grad_dense,) = torch.autograd.grad(ours_dense(pred, labels).sum(), pred)
    torch.testing.assert_close(grad_rows, grad_dense, rtol=1e-5, atol=1e-6)
    assert sigmoid_focal_loss_per_prior(torch.zeros(0, 9), torch.zeros(0, dtype=torch.long)).shape == (0,)



def test_focal_per_prior_in_one_block_off_the_cpu_equals_the_blocks():
    """Off the CPU the rows go in one block (a GPU pays launches per block), and with a gradient to
    follow always (the written-out backward, ``_FocalRows``); each row's sum is the same reduction
    either way, so the values are equal bit for bit."""
    from detengine import losses
    from detengine.launches import gpu_code_paths
    from detengine.losses import sigmoid_focal_loss_per_prior
    g = torch.Generator().manual_seed(3)
    pred = (torch.randn(3000, 20, generator=g) * 4).requires_grad_()
    labels = torch.randint(0, 21, (3000,), generator=g)
    with torch.no_grad():
        saved, losses._blocks_pay = losses._blocks_pay, lambda t: True
        try:
            blocks = sigmoid_focal_loss_per_prior(pred, labels)
        finally:
            losses._blocks_pay = saved
        with gpu_code_paths():
            whole = sigmoid_focal_loss_per_prior(pred, labels)
    with_grad = sigmoid_focal_loss_per_prior(pred, labels)
    assert with_grad.grad_fn is not None and whole.grad_fn is None
    assert torch.equal(blocks, whole) and torch.equal(with_grad.detach(), whole)


@pytest.mark.parametrize("gamma, alpha", [(2.0, 0.25), (1.5, 0.25), (0.0, 0.5), (3.0, 0.75)])
def test_focal_per_prior_gradient_equals_torchvision_in_float64(gamma, alpha):
    """The written-out backward against autograd through ``torchvision.ops.sigmoid_focal_loss`` on
    one-hot targets in float64, with logits out to +-12 (where ``1 - p`` loses its digits in
    float32: torchvision's own float32 gradient is no closer there), per-row weights and
    background rows; a half input (autocast) gets a half gradient of the float32 loss."""
    import torchvision

    from detengine.losses import sigmoid_focal_loss_per_prior
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2000, 9, generator=g) * 4
    x[:50] = torch.linspace(-12, 12, 50)[:, None]
    labels = torch.randint(0, 10, (2000,), generator=g)
    w = torch.rand(2000, generator=g)
    pred = x.clone().requires_grad_()
    (ours,) = torch.autograd.grad((sigmoid_focal_loss_per_prior(pred, labels, gamma, alpha) * w).sum(), pred)
    x64 = x.double().requires_grad_()
    one_hot = torch.nn.functional.one_hot(labels, 10)[:, :9].double()
    ref = torchvision.ops.sigmoid_focal_loss(x64, one_hot, alpha=alpha, gamma=gamma, reduction="none").sum(1)
    (expected,) = torch.autograd.grad((ref * w.double()).sum(), x64)
    torch.testing.assert_close(ours, expected.float(), rtol=1e-5, atol=2e-6)
    half = x.half().requires_grad_()
    loss = sigmoid_focal_loss_per_prior(half, labels, gamma, alpha)
    (grad_half,) = torch.autograd.grad(loss.sum(), half)
    assert loss.dtype == torch.float32 and grad_half.dtype == torch.float16 and torch.isfinite(grad_half).all()


@pytest.mark.parametrize("activated", [False, True])
@pytest.mark.parametrize("beta", [2.0, 1.5, 1.0, 3.0])
def test_quality_focal_gradient_equals_autograds_in_float64(beta, activated):
    """QFL with a gradient to follow (``_QFLRows``), of logits (GFL, RTMDet) and of probabilities
    (TOOD): the forward the no-gradient form's bit for bit, the written-out backward against autograd
    through the dense form (``_qfl``) in float64: background and out-of-range labels, a score equal to
    its probability (``|t - p| = 0``), logits out to +-12 (probabilities within 1e-5 of 0 and 1, and 0
    itself), per-row weights; no positive at all; a half input keeps its dtype."""
    from detengine.losses import _qfl, quality_focal_loss
    g = torch.Generator().manual_seed(6)
    x = torch.randn(1500, 9, generator=g, dtype=torch.float64) * 4
    x[:50] = torch.linspace(-12, 12, 50, dtype=torch.float64)[:, None]
    labels = torch.randint(0, 10, (1500,), generator=g)
    labels[:3] = torch.tensor([-1, 99, 4])
    scores = torch.rand(1500, generator=g, dtype=torch.float64)
    scores[2] = x[2, 4].sigmoid()
    w = torch.rand(1500, generator=g, dtype=torch.float64)
    if activated:
        x = x.sigmoid()
        x[3, :] = 0.0

    def autograd_chain(pred, labels):
        pos = ((labels >= 0) & (labels < 9)).nonzero().view(-1)
        dense = pred.new_zeros(pred.shape)
        dense[pos, labels[pos]] = scores[pos]
        return _qfl(pred, dense, (pos, labels[pos]), beta, activated)

    for lab in (labels, torch.full_like(labels, 9)):
        pred, chain = x.clone().requires_grad_(), x.clone().requires_grad_()
        ours = quality_focal_loss(pred, lab, scores, beta, activated)
        expected = autograd_chain(chain, lab)
        with torch.no_grad():
            assert torch.equal(ours, expected)
            assert torch.equal(quality_focal_loss(x, lab, scores, beta, activated), expected)
        (grad,) = torch.autograd.grad((ours * w).sum(), pred)
        (want,) = torch.autograd.grad((expected * w).sum(), chain)
        torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)
    if activated:       # half probabilities go through F.binary_cross_entropy, which has no CPU half kernel
        return
    half = x.half().requires_grad_()
    loss = quality_focal_loss(half, labels, scores, beta)
    (grad_half,) = torch.autograd.grad(loss.sum(), half)
    assert loss.dtype == grad_half.dtype == torch.float16 and torch.isfinite(grad_half).all()


def test_written_out_gradients_pass_gradcheck_in_float64():
    """The focal loss and the QFL with their backward written out keep a float64 input in float64
    (a half one goes to float32) and pass ``torch.autograd.gradcheck`` there (finite differences);
    a second derivative is refused, not computed wrong."""
    from detengine.losses import quality_focal_loss, sigmoid_focal_loss_per_prior
    g = torch.Generator().manual_seed(8)
    x = (torch.randn(12, 5, generator=g, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.tensor([0, 5, 2, 4, 5, 1, -1, 3, 5, 0, 2, 6])
    scores = torch.rand(12, generator=g, dtype=torch.float64)
    for gamma in (2.0, 1.5):
        assert sigmoid_focal_loss_per_prior(x, labels, gamma).dtype == torch.float64
        assert torch.autograd.gradcheck(lambda t: sigmoid_focal_loss_per_prior(t, labels, gamma, 0.25), (x,))
    assert torch.autograd.gradcheck(lambda t: quality_focal_loss(t, labels, scores, 2.0), (x,))
    (grad,) = torch.autograd.grad(sigmoid_focal_loss_per_prior(x, labels).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


# ---------------------------------------------------------------- dense targets (mmdetection's forms)
def _mmdet_py_sigmoid_focal_loss(pred, target, gamma=2.0, alpha=0.25):
    """mmdetection's ``py_sigmoid_focal_loss`` (elementwise), transcribed."""
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    pt = (1 - pred_sigmoid) * target + pred_sigmoid * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    return torch.nn.functional.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight


def test_focal_loss_takes_one_hot_and_soft_targets_as_mmdetection():
    g = torch.Generator().manual_seed(3)
    pred = torch.randn(50, 7, generator=g)
    labels = torch.randint(0, 8, (50,), generator=g)  # 7 = background
    one_hot = torch.nn.functional.one_hot(labels, 8)[:, :7]
    loss = FocalLoss()
    torch.testing.assert_close(loss(pred, one_hot, reduction_override="none"),
                               loss(pred, labels, reduction_override="none"), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(loss(pred, one_hot, avg_factor=9), loss(pred, labels, avg_factor=9))
    torch.testing.assert_close(loss.per_prior(pred, one_hot), loss.per_prior(pred, labels), rtol=1e-5, atol=1e-6)
    soft = torch.rand(50, 7, generator=g)
    weight = torch.rand(50, generator=g)
    torch.testing.assert_close(loss(pred, soft, weight, avg_factor=4.0),
                               (_mmdet_py_sigmoid_focal_loss(pred, soft) * weight[:, None]).sum() / (4.0 + EPS32))
    with pytest.raises(ValueError, match="prediction's shape"):
        loss(pred, soft[:, :3])


def test_quality_focal_loss_takes_dense_targets_and_probabilities_as_mmdetection():
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(40, 6, generator=g)
    labels = torch.randint(0, 7, (40,), generator=g)
    scores = torch.rand(40, generator=g)
    pos = labels < 6
    dense = torch.zeros(40, 6)
    dense[pos.nonzero().view(-1), labels[pos]] = scores[pos]
    qfl = QualityFocalLoss()
    torch.testing.assert_close(qfl(pred, dense, reduction_override="none"),
                               qfl(pred, (labels, scores), reduction_override="none"))
    # mmdetection's quality_focal_loss_tensor_target, written out for two entries of one row
    row = pred[0].sigmoid()
    target = torch.zeros(6)
    target[2], target[4] = 0.7, 0.2
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    want = (bce(pred[0], torch.zeros(6), reduction="none") * row.pow(2))
    for k in (2, 4):
        want[k] = bce(pred[0, k], target[k]) * (target[k] - row[k]).abs().pow(2)
    torch.testing.assert_close(qfl(pred[:1], target[None], reduction_override="none"), want.sum()[None])
    probs = QualityFocalLoss(activated=True)
    torch.testing.assert_close(probs(pred.sigmoid(), dense, reduction_override="none"),
                               qfl(pred, dense, reduction_override="none"), rtol=1e-4, atol=1e-5)
