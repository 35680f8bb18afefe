"""YOLOXHead's targets, losses and detections against mmdetection 3.3.0
(``fixtures/make_yolox_head_reference.py``): a batch of 2 images (8 GTs, none), the L1 loss off and
on, a batch without any GT, predict_by_feat with and without rescaling; the per-prior breakdown
(objectness and L1 included) sums to the terms."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detengine.builder import build_head_core
from detengine.heads.yolox import YOLOXHeadCore, mode_switch_epoch
from tests.engine.fixtures.det_random import det_randn, det_uniform
from tests.engine.fixtures.make_yolox_head_reference import head_outputs
from tests.engine.levels import flat_levels
from tests.floats import assert_boxes_close, assert_ulp_close

FIXTURE = Path(__file__).parent / "fixtures" / "mmdet_yolox_head_reference.pt"


pytestmark = pytest.mark.usefixtures("one_thread")     # tests/engine/conftest.py


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURE, weights_only=True)


def _core(R, use_l1=False) -> YOLOXHeadCore:
    head = dict(type="YOLOXHead", num_classes=R["meta"]["num_classes"], in_channels=8, feat_channels=8,
                stacked_convs=2, strides=R["meta"]["strides"])
    core = build_head_core(dict(type="YOLOX", bbox_head=head, train_cfg=R["head"]["train_cfg"],
                                test_cfg=R["head"]["test_cfg"]))
    core.use_l1 = use_l1
    return core


def _outputs(R):
    """(2, A, C + 1) class logits with the objectness last, (2, A, 4) regression: DetScope's layout."""
    cls, reg, obj = head_outputs(det_randn, det_uniform)
    c = R["meta"]["num_classes"]
    return flat_levels([torch.cat([a, o], 1) for a, o in zip(cls, obj)], c + 1), flat_levels(reg, 4)


def _losses(R, use_l1, gts=None):
    core = _core(R, use_l1)
    cls, reg = _outputs(R)
    priors = core.priors(tuple(R["meta"]["image"]))
    gts = gts if gts is not None else R["meta"]["gts"]
    targets = [core.targets(priors, g["bboxes"], g["labels"], tuple(R["meta"]["image"]), cls_scores=c, bbox_preds=r)
               for g, c, r in zip(gts, cls, reg, strict=True)]
    norm = core.reduce_avg_factor([core.avg_factor_of(t) for t in targets])
    per_image = [core.loss_image(c, r, priors, t, norm) for c, r, t in zip(cls, reg, targets, strict=True)]
    return core, priors, targets, norm, per_image


def test_the_points_are_mmdetections_offset_zero_grid(R):
    core = _core(R)
    priors = core.priors(tuple(R["meta"]["image"]))
    assert priors.num_per_level == [24 * 32, 12 * 16, 6 * 8]
    assert priors.tensor[:2].tolist() == [[0.0, 0.0, 8.0, 8.0], [8.0, 0.0, 8.0, 8.0]]
    assert priors.tensor[-1].tolist() == [224.0, 160.0, 32.0, 32.0]


def test_yolox_targets_match_mmdet(R):
    """SimOTA on the cell centres with sqrt(class x objectness): positives exactly; the IoU-weighted
    one-hot class targets, GT boxes and L1 targets within the fixtures' ULP budget."""
    _, priors, targets, norm, _ = _losses(R, True)
    refs = R["head"]["targets"][True]
    assert norm == max(sum(r["num_pos"] for r in refs), 1)
    for t, ref in zip(targets, refs, strict=True):
        pos = ref["pos_inds"]
        assert_ulp_close(t.sampling_result.pos_inds, pos, what="positives")
        assert t.num_pos == ref["num_pos"] and float(t.extras["obj_targets"].sum()) == ref["obj_target_sum"]
        onehot = torch.nn.functional.one_hot(t.labels[pos], R["meta"]["num_classes"]).float()
        assert_ulp_close(onehot * t.extras["iou_targets"][pos, None], ref["cls_targets"], what="class targets")
        assert_ulp_close(t.bbox_targets[pos], ref["bbox_targets"], what="GT boxes")
        assert_ulp_close(t.extras["l1_targets"][pos], ref["l1_targets"], what="L1 targets")
    assert targets[0].num_pos > 0 and targets[1].num_pos == 0


@pytest.mark.parametrize("use_l1", [False, True])
def test_yolox_losses_match_mmdet(R, use_l1):
    """loss_cls, loss_bbox, loss_obj (and loss_l1 once switched on), summed over the images."""
    _, _, _, _, per_image = _losses(R, use_l1)
    expected = R["head"]["loss"][use_l1]
    assert set(per_image[0].terms) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(sum(loss.terms[key] for loss in per_image), torch.tensor(value), rtol=1e-5,
                                   atol=1e-6, msg=key)


def test_a_batch_without_gt_trains_the_objectness_only(R):
    none = [dict(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))] * 2
    _, _, _, norm, per_image = _losses(R, True, gts=none)
    assert norm == 1.0
    for key, value in R["head"]["loss_no_gt"].items():
        torch.testing.assert_close(sum(loss.terms[key] for loss in per_image), torch.tensor(value), rtol=1e-5,
                                   atol=1e-6, msg=key)
    assert all(float(loss.terms[k]) == 0 for loss in per_image for k in ("loss_cls", "loss_bbox", "loss_l1"))


def test_the_per_prior_breakdown_sums_to_each_term(R):
    """The trace's loss breakdown: class, box and L1 on the positives only, objectness on every point."""
    _, _, targets, _, per_image = _losses(R, True)
    loss, t = per_image[0], targets[0]
    parts = {"loss_cls": loss.cls_per_prior, "loss_bbox": loss.bbox_per_prior, **loss.extra_per_prior()}
    assert set(parts) == {"loss_cls", "loss_bbox", "loss_obj", "loss_l1"}
    for key, per_prior in parts.items():
        torch.testing.assert_close(per_prior.sum(), loss.terms[key], rtol=1e-5, atol=1e-6, msg=key)
    pos = torch.zeros(len(t.labels), dtype=torch.bool)
    pos[t.sampling_result.pos_inds] = True
    for key in ("loss_cls", "loss_bbox", "loss_l1"):
        assert (parts[key][~pos] == 0).all(), key
    assert (parts["loss_obj"][~pos] > 0).all()


def test_yolox_detections_match_mmdet(R):
    """Best class per point, class x objectness >= score_thr, batched NMS; no max_per_img cap
    (test_cfg's max_per_img=20 is not read by mmdetection's YOLOXHead)."""
    core = _core(R)
    cls, reg = _outputs(R)
    priors = core.priors(tuple(R["meta"]["image"]))
    for i, expected in enumerate(R["head"]["predict"]):
        result = core.predict(cls[i], reg[i], priors, tuple(R["meta"]["image"]))
        assert expected["scores"].numel() > R["head"]["test_cfg"]["max_per_img"]
        assert_ulp_close(result.labels, expected["labels"], what="labels")
        torch.testing.assert_close(result.scores, expected["scores"], rtol=1e-5, atol=1e-6)
        assert_boxes_close(result.boxes, expected["bboxes"])
        assert result.raw_stage.shape == (len(priors), 1)
        assert result.counts["score_thr"] == int((result.raw_stage != 1).sum())
    capped = core.predict(cls[0], reg[0], priors, tuple(R["meta"]["image"]), max_per_img=5)
    assert capped.scores.numel() == 5        # the window's NMS view may still cap


def test_rescaled_detections_match_mmdet(R):
    """``rescale=True``: the boxes divided by scale_factor (no clipping), as the detector maps them back."""
    from detengine.data.transforms import boxes_to_original
    core = _core(R)
    cls, reg = _outputs(R)
    priors = core.priors(tuple(R["meta"]["image"]))
    meta = {"scale_factor": R["head"]["scale_factor"], "img_shape": tuple(R["meta"]["image"])}
    for i, expected in enumerate(R["head"]["predict_rescaled"]):
        result = core.predict(cls[i], reg[i], priors, tuple(R["meta"]["image"]), record=False)
        torch.testing.assert_close(boxes_to_original(result.boxes, meta, clip=False), expected["bboxes"],
                                   rtol=1e-5, atol=1e-5)
        assert_ulp_close(result.labels, expected["labels"], what="labels")


@pytest.mark.parametrize("key, value, message", [
    ("loss_cls", dict(type="FocalLoss", use_sigmoid=True), "model.bbox_head.loss_cls"),
    ("loss_bbox", dict(type="IoULoss", mode="square", eps=1e-16, reduction="mean", loss_weight=5.0),
     "reduction='sum'"),
    ("loss_obj", dict(type="CrossEntropyLoss", use_sigmoid=False, reduction="sum"), "use_sigmoid=True"),
])
def test_a_loss_yoloxhead_would_compute_otherwise_is_refused(R, key, value, message):
    from detengine.builder import ConfigBuildError
    head = dict(type="YOLOXHead", num_classes=4, in_channels=8, **{key: value})
    with pytest.raises(ConfigBuildError, match=message.replace("(", r"\(")):
        build_head_core(dict(type="YOLOX", bbox_head=head))


def test_the_mode_switch_epoch_is_mmdetections():
    """YOLOXModeSwitchHook switches before epoch e when e + 1 >= max_epochs - num_last_epochs: 0-based
    epoch 284 of 300 with 15 last epochs; the head core turns L1 on from there (and after a resume)."""
    cfg = {"custom_hooks": [dict(type="YOLOXModeSwitchHook", num_last_epochs=15, priority=48)]}
    assert mode_switch_epoch(cfg, 300) == (284, ("Mosaic", "RandomAffine", "MixUp"))
    assert mode_switch_epoch({"custom_hooks": [dict(type="EMAHook")]}, 300) == (None, ())
    assert mode_switch_epoch(cfg, 10)[0] == 0
    core = build_head_core(dict(type="YOLOX", bbox_head=dict(type="YOLOXHead", num_classes=3, in_channels=8)))
    core.l1_from_epoch = 284
    core.set_epoch(283)
    assert not core.use_l1
    core.set_epoch(284)
    assert core.use_l1
    resumed = build_head_core(dict(type="YOLOX", bbox_head=dict(type="YOLOXHead", num_classes=2, in_channels=8)))
    resumed.l1_from_epoch = 284
    resumed.set_epoch(290)
    assert resumed.use_l1


def test_mixed_precision_assigns_in_float32_outside_autocast(R):
    """Under autocast (``--amp``) the head's outputs are half precision and CUDA's autocast refuses the
    plain binary_cross_entropy of SimOTA's class cost: the targets are made in float32 with autocast
    off (seen on an H200: the AMP step ran, its losses then fell), the loss in float32."""
    core = _core(R, use_l1=True)
    cls, reg = _outputs(R)
    priors = core.priors(tuple(R["meta"]["image"]))
    seen = []
    assign = core.assigner.assign

    def spy(*args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), kwargs["pred_scores"].dtype, kwargs["pred_boxes"].dtype))
        return assign(*args, **kwargs)
    core.assigner.assign = spy
    g = R["meta"]["gts"][0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        t = core.targets(priors, g["bboxes"], g["labels"], (192, 256), cls_scores=cls[0].bfloat16(),
                         bbox_preds=reg[0].bfloat16())
        loss = core.loss_image(cls[0].bfloat16(), reg[0].bfloat16(), priors, t, core.avg_factor_of(t))
    assert seen == [(False, torch.float32, torch.float32)]
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in loss.terms.values())
