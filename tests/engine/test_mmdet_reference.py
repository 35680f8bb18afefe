"""Replay the inputs that real mmdetection 3.3.0 saw (tests/engine/fixtures) through detengine
and compare: integers (assignments, labels, kept indices, valid flags) exactly; anchors, overlaps and coder
outputs within a few ULP (tests/floats.py: bit for bit on the machine that made the fixtures, within
FIXTURE_ULP on any other CPU); losses and detections to float32 noise."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from detengine.assigners import ATSSAssigner, DynamicSoftLabelAssigner, MaxIoUAssigner
from detengine.builder import build_head_core
from detengine.coders import DeltaXYWHBBoxCoder, DistancePointBBoxCoder
from detengine.config import load_config
from detengine.losses import CrossEntropyLoss, FocalLoss, GIoULoss, L1Loss, QualityFocalLoss, SmoothL1Loss
from detengine.postprocess import multiclass_nms
from detengine.priors import (
    AnchorGenerator,
    LegacyAnchorGenerator,
    LegacySSDAnchorGenerator,
    MlvlPointGenerator,
    SSDAnchorGenerator,
)
from tests.engine.fixtures.det_random import det_randn, det_uniform
from tests.floats import assert_ulp_close

FIXTURES = Path(__file__).parent / "fixtures" / "mmdet_reference.pt"
CONFIGS = Path(__file__).resolve().parents[2] / "resources" / "configs"


@pytest.fixture(scope="module")
def R():
    return torch.load(FIXTURES, weights_only=True)


# ---------------------------------------------------------------- deterministic inputs (README)
def from_recipe(recipe, build):
    t = build(recipe)
    assert t.double().sum().item() == pytest.approx(recipe["sum_f64"], rel=1e-12, abs=1e-9)
    assert_ulp_close(t.flatten()[:8], recipe["first8"].flatten())
    return t


def randn_recipe(r):
    return det_randn(tuple(r["shape"]), r["seed"], r.get("scale", 1.0), r.get("shift", 0.0))


def flat_levels(per_level, k):
    """[(N, A*K, H, W)] -> (N, sum HWA, K), the head's permute/reshape."""
    return torch.cat([t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, k) for t in per_level], dim=1)


# ---------------------------------------------------------------- priors
SSD_SETTINGS = {
    "ssd300_coco": ([8, 16, 32, 64, 100, 300], [[2], [2, 3], [2, 3], [2, 3], [2], [2]], (0.15, 0.9), 300),
    "ssd300_voc": ([8, 16, 32, 64, 100, 300], [[2], [2, 3], [2, 3], [2, 3], [2], [2]], (0.2, 0.9), 300),
    "ssd512_coco": ([8, 16, 32, 64, 128, 256, 512], [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]], (0.1, 0.9), 512),
    "ssd512_voc": ([8, 16, 32, 64, 128, 256, 512], [[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]], (0.15, 0.9), 512),
}


@pytest.mark.parametrize("name", sorted(SSD_SETTINGS))
@pytest.mark.parametrize("cls", [SSDAnchorGenerator, LegacySSDAnchorGenerator])
def test_ssd_anchors_match_mmdet(R, name, cls):
    strides, ratios, rng, size = SSD_SETTINGS[name]
    ref = R[f"ssd_anchors/{name}"][cls.__name__]
    gen = cls(strides=strides, ratios=ratios, basesize_ratio_range=rng, input_size=size, scale_major=False)
    assert gen.base_sizes == list(ref["base_sizes"])
    for mine, theirs in zip(gen.base_anchors, ref["base_anchors"], strict=True):
        assert_ulp_close(mine, theirs)
    sizes = R[f"ssd_anchors/{name}"]["featmap_sizes"]
    priors = gen.grid_priors(sizes)
    levels = priors.split(priors.tensor)
    if "grid_priors" in ref:
        for mine, theirs in zip(levels, ref["grid_priors"], strict=True):
            assert_ulp_close(mine, theirs)
    else:
        for mine, ht in zip(levels, ref["grid_priors_head_tail"], strict=True):
            assert_ulp_close(mine[:50], ht["first"])
            assert_ulp_close(mine[-50:], ht["last"])
            assert mine.double().sum().item() == pytest.approx(ht["sum_f64"], rel=1e-12)


def test_ssd300_coco_has_8732_anchors(R):
    strides, ratios, rng, size = SSD_SETTINGS["ssd300_coco"]
    gen = SSDAnchorGenerator(strides=strides, ratios=ratios, basesize_ratio_range=rng, scale_major=False)
    assert len(gen.grid_priors([(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)])) == 8732


def test_retina_anchors_and_valid_flags(R):
    ref = R["retina_anchors"]
    kw = dict(octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128])
    gen = AnchorGenerator(**kw)
    for mine, theirs in zip(gen.base_anchors, ref["base_anchors"], strict=True):
        assert_ulp_close(mine, theirs)
    for mine, theirs in zip(LegacyAnchorGenerator(**kw).base_anchors, ref["legacy_base_anchors"], strict=True):
        assert_ulp_close(mine, theirs)
    priors = gen.grid_priors(ref["featmap_sizes"])
    for mine, ht in zip(priors.split(priors.tensor), ref["grid_priors_head_tail"], strict=True):
        assert_ulp_close(mine[:50], ht["first"])
        assert_ulp_close(mine[-50:], ht["last"])
    for mine, theirs in zip(gen.valid_flags(ref["featmap_sizes"], ref["valid_flags_pad_shape"]), ref["valid_flags"], strict=True):
        assert_ulp_close(mine, theirs)


def test_points_and_valid_flags(R):
    ref = R["points"]
    sizes = [(80, 80), (40, 40), (20, 20)]
    priors = MlvlPointGenerator(strides=[8, 16, 32], offset=0).grid_priors(sizes)
    for mine, theirs in zip(priors.split(priors.tensor), ref["offset0_with_stride"], strict=True):
        assert_ulp_close(mine, theirs)
    gen = MlvlPointGenerator(strides=[8, 16, 32], offset=0)
    for mine, theirs in zip(gen.valid_flags(sizes, (480, 640)), ref["valid_flags"], strict=True):
        assert_ulp_close(mine, theirs)
    half = MlvlPointGenerator(strides=[8, 16, 32], offset=0.5).grid_priors(sizes)
    for mine, theirs in zip(half.split(half.tensor), ref["offset05_with_stride_first50"], strict=True):
        assert_ulp_close(mine[:50], theirs)


# ---------------------------------------------------------------- assigners
def _ssd300_priors(R):
    return torch.cat(R["ssd_anchors/ssd300_coco"]["SSDAnchorGenerator"]["grid_priors"])


def _max_iou_cases():
    ref = torch.load(FIXTURES, weights_only=True)
    return [(key.split("/")[1], run) for key in sorted(ref) if key.startswith("max_iou/") and key != "max_iou/_meta"
            for run in ref[key]["runs"]]


MAX_IOU_CASES = _max_iou_cases()


@pytest.mark.parametrize("case,run", MAX_IOU_CASES)
def test_max_iou_assigner_match_mmdet(R, case, run):
    ref = R[f"max_iou/{case}"]
    spec = ref["runs"][run]
    result = MaxIoUAssigner(**spec["assigner_cfg"]).assign(
        _ssd300_priors(R), ref["gt_bboxes"], ref["gt_labels"], gt_boxes_ignore=ref.get("gt_bboxes_ignore"))
    assert result.num_gts == spec["num_gts"]
    assert_ulp_close(result.gt_inds, spec["gt_inds"].long())
    assert_ulp_close(result.labels, spec["labels"].long())
    expected = ref["max_overlaps"]
    if "ignore" in run:  # mmdet sets ignored priors' overlaps to -1 before taking the max
        ours = result.max_overlaps
        assert_ulp_close(ours[ours >= 0], expected[expected >= 0])
    else:
        assert_ulp_close(result.max_overlaps, expected)


def _dense(sparse):
    out = torch.full((sparse["numel"],), float(sparse["fill"]))
    out[sparse["idx"].long()] = sparse["val"]
    return out


@pytest.mark.parametrize("case", ["random3", "tiny_overlap", "ignore_0.5", "no_gt"])
def test_atss_assigner_match_mmdet(R, case):
    meta, ref = R["atss/_meta"], R[f"atss/{case}"]
    gen = AnchorGenerator(octave_base_scale=4, scales_per_octave=3, ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128])
    priors = gen.grid_priors([(40, 40), (20, 20), (10, 10), (5, 5), (3, 3)]).tensor
    assert priors.double().sum().item() == pytest.approx(meta["priors_sum_f64"], rel=1e-12)
    result = ATSSAssigner(**ref["assigner_cfg"]).assign(
        priors, ref["gt_bboxes"], ref["gt_labels"], num_level_priors=meta["num_level_priors"],
        gt_boxes_ignore=ref.get("gt_bboxes_ignore"))
    assert_ulp_close(result.gt_inds, ref["gt_inds"].long())
    assert_ulp_close(result.labels, ref["labels"].long())
    assert_ulp_close(result.max_overlaps, _dense(ref["max_overlaps_sparse"]))


def _dsl_inputs(R, ref):
    priors = MlvlPointGenerator(strides=[8, 16, 32], offset=0).grid_priors([(40, 40), (20, 20), (10, 10)]).tensor
    scores = from_recipe(ref["scores"], randn_recipe)

    def boxes(r):
        u = det_uniform(2100 * 4, r["seed"]).view(2100, 4)
        p = priors.double()
        dist = (0.5 + 2.5 * u) * p[:, 2:3]
        return torch.cat([p[:, :2] - dist[:, :2], p[:, :2] + dist[:, 2:]], 1).float()
    return priors, scores, from_recipe(ref["decoded_bboxes"], boxes)


@pytest.mark.parametrize("case", ["basic", "overlap", "tiny", "no_gt"])
def test_dynamic_soft_label_assigner_match_mmdet(R, case):
    ref = R[f"dsl/{case}"]
    priors, scores, boxes = _dsl_inputs(R, ref)
    result = DynamicSoftLabelAssigner(soft_center_radius=3.0, topk=13, iou_weight=3.0).assign(
        priors, ref["gt_bboxes"], ref["gt_labels"], pred_scores=scores, pred_boxes=boxes)
    assert_ulp_close(result.gt_inds, ref["gt_inds"].long())
    assert_ulp_close(result.labels, ref["labels"].long())
    assert_ulp_close(result.max_overlaps, ref["max_overlaps"])


# ---------------------------------------------------------------- coders
@pytest.mark.parametrize("tag,stds", [("stds_0.1_0.2", [0.1, 0.1, 0.2, 0.2]), ("stds_1", [1.0, 1.0, 1.0, 1.0])])
def test_delta_coder_match_mmdet(R, tag, stds):
    ref = R["delta_coder"]
    coder = DeltaXYWHBBoxCoder(target_stds=stds)
    out = ref[tag]
    assert_ulp_close(coder.encode(ref["proposals"], ref["gts"]), out["encode"])
    assert_ulp_close(coder.decode(ref["proposals"], ref["deltas"], max_shape=(300, 300)), out["decode_max_shape_300"])
    assert_ulp_close(coder.decode(ref["proposals"], ref["deltas"]), out["decode_no_max_shape"])
    assert_ulp_close(coder.decode(ref["proposals"], coder.encode(ref["proposals"], ref["gts"])),
                       out["roundtrip_decode_encode"])


def test_delta_coder_class_specific_decode(R):
    ref = R["delta_coder"]["decode_4C"]
    coder = DeltaXYWHBBoxCoder(target_stds=[0.1, 0.1, 0.2, 0.2])
    assert_ulp_close(coder.decode(ref["proposals"], ref["deltas"], max_shape=(300, 300)), ref["decoded_max_shape_300"])


def test_distance_coder_match_mmdet(R):
    ref = R["distance_coder"]
    coder = DistancePointBBoxCoder()
    assert_ulp_close(coder.encode(ref["points"], ref["gt_bboxes"]), ref["encode_no_max_dis"])
    assert_ulp_close(coder.encode(ref["points"], ref["gt_bboxes"], max_dis=16.0), ref["encode_max_dis_16"]["out"])
    assert_ulp_close(coder.decode(ref["points"], ref["distances"], max_shape=(300, 300)), ref["decode_max_shape_300"])
    assert_ulp_close(coder.decode(ref["points"], ref["distances"]), ref["decode_no_max_shape"])


# ---------------------------------------------------------------- losses
def close(a, b, tol=1e-6):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_cross_entropy_and_regression_losses(R):
    ce = R["losses"]["cross_entropy"]
    loss = CrossEntropyLoss()
    close(loss(ce["cls_score"], ce["label"], reduction_override="none"), ce["none"])
    close(loss(ce["cls_score"], ce["label"]), ce["mean"])
    close(loss(ce["cls_score"], ce["label"], ce["weight"], avg_factor=10), ce["weighted_avg_factor_10"])
    close(loss(ce["cls_score"], ce["label"], ce["weight"], reduction_override="sum"), ce["weighted_sum"])
    sl = R["losses"]["smooth_l1"]
    loss = SmoothL1Loss(beta=1.0)
    close(loss(sl["pred"], sl["target"], reduction_override="none"), sl["none"])
    close(loss(sl["pred"], sl["target"], sl["weight"], reduction_override="none"), sl["none_weighted"])
    close(loss(sl["pred"], sl["target"]), sl["mean"])
    close(loss(sl["pred"], sl["target"], sl["weight"], avg_factor=7), sl["weighted_avg_factor_7"])
    l1 = R["losses"]["l1"]
    loss = L1Loss()
    close(loss(l1["pred"], l1["target"], reduction_override="none"), l1["none"])
    close(loss(l1["pred"], l1["target"], avg_factor=7), l1["avg_factor_7"])
    close(loss(l1["pred"], l1["target"], l1["weight"], avg_factor=7), l1["weighted_avg_factor_7"])


def test_focal_quality_focal_giou_losses(R):
    f = R["losses"]["focal"]
    loss = FocalLoss(gamma=2.0, alpha=0.25)
    close(loss(f["pred"], f["label"], reduction_override="none"), f["none"])
    close(loss(f["pred"], f["label"], f["weight"], reduction_override="none"), f["none_weighted"])
    close(loss(f["pred"], f["label"]), f["mean"])
    close(loss(f["pred"], f["label"], f["weight"], avg_factor=9), f["weighted_avg_factor_9"])
    q = R["losses"]["quality_focal"]
    loss = QualityFocalLoss(beta=2.0)
    close(loss(q["pred"], (q["label"], q["score"]), reduction_override="none"), q["none"])
    close(loss(q["pred"], (q["label"], q["score"]), q["weight"], avg_factor=9), q["weighted_avg_factor_9"])
    g = R["losses"]["giou"]
    close(GIoULoss()(g["pred"], g["target"], reduction_override="none"), g["none"])
    close(GIoULoss()(g["pred"], g["target"], g["weight"], avg_factor=5), g["weighted_avg_factor_5"])
    close(GIoULoss(loss_weight=2.0)(g["pred"], g["target"], g["weight"], avg_factor=5),
          g["loss_weight2_weighted_avg_factor_5"])
    assert float(GIoULoss()(g["pred"], g["target"], torch.zeros(20))) == float(g["all_zero_weight"]) == 0.0


# ---------------------------------------------------------------- NMS
@pytest.mark.parametrize("variant", ["shared", "class_specific"])
def test_multiclass_nms_matches(R, variant):
    ref = R["multiclass_nms"]
    if variant == "shared":
        boxes, scores, out = ref["bboxes"], ref["scores"], ref
    else:
        boxes, scores, out = ref["class_specific"]["bboxes"], ref["scores"][:100], ref["class_specific"]
    dets, labels, inds, _ = multiclass_nms(boxes, scores, 0.05, 0.5, max_num=100)
    assert_ulp_close(dets, out["dets"])
    assert_ulp_close(labels, out["labels"])
    assert_ulp_close(inds, out["inds"])


# ---------------------------------------------------------------- heads
def _head_inputs(ref, k):
    cls = flat_levels([from_recipe(r, randn_recipe) for r in ref["cls_scores"]], k)
    reg = flat_levels([from_recipe(r, randn_recipe) for r in ref["bbox_preds"]], 4)
    return cls, reg


def _batch_loss(core, priors, cls, reg, gts, img_shape):
    targets = [core.targets(priors, g["bboxes"], g["labels"], img_shape, cls_scores=c, bbox_preds=r)
               for g, c, r in zip(gts, cls, reg, strict=True)]
    avg = core.reduce_avg_factor([core.avg_factor_of(t) for t in targets])
    return [core.loss_image(c, r, priors, t, avg) for c, r, t in zip(cls, reg, targets, strict=True)]


def _core(name):
    return build_head_core(load_config(CONFIGS / name).to_dict()["model"])


@pytest.mark.parametrize("batch", ["loss_img1_empty", "loss_img1_one_gt"])
def test_ssd_head_loss_matches_mmdet(R, batch):
    ref = R["ssd_head"]
    core = _core("ssd300_coco.py")
    priors = core.priors((300, 300))
    cls, reg = _head_inputs(ref, 81)
    gt1 = {"bboxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} if "empty" in batch else ref["gt1"]
    losses = _batch_loss(core, priors, cls, reg, [ref["gt0"], gt1], (300, 300))
    for i, loss in enumerate(losses):
        close(loss.terms["loss_cls"].reshape(1), ref[batch]["loss_cls"][i].reshape(1), 1e-5)
        close(loss.terms["loss_bbox"], ref[batch]["loss_bbox"][i], 1e-5)
        close(loss.cls_per_prior.sum(), loss.terms["loss_cls"], 1e-5)
        close(loss.bbox_per_prior.sum(), loss.terms["loss_bbox"], 1e-5)


def _check_detections(result, ref):
    n = ref["scores"].numel()
    assert result.scores.numel() == n
    close(result.scores, ref["scores"], 1e-5)
    close(result.boxes, ref["bboxes"], 1e-4)
    assert_ulp_close(result.labels, ref["labels"])


def test_ssd_head_predict_matches_mmdet(R):
    ref = R["ssd_head"]
    core = _core("ssd300_coco.py")
    priors = core.priors((300, 300))
    cls, reg = _head_inputs(ref, 81)
    _check_detections(core.predict(cls[0], reg[0], priors, (300, 300)), ref["predict_img0"])

    def dense_level(r):  # the recipe's "post": background and classes 30.. at -10, noise on 0..29
        noise = det_randn(tuple(r["shape"]), r["seed"], r["scale"])
        t = torch.full_like(noise, -10.0)
        t[:, :, :30] = noise[:, :, :30]
        a, s = r["shape"][1], r["shape"][3]
        return t.view(1, a * 81, s, s)
    dense = flat_levels([from_recipe(r, dense_level) for r in ref["predict_dense"]["cls_scores"]], 81)
    result = core.predict(dense[0], reg[0], priors, (300, 300))
    assert result.counts["score_thr"] > 100_000  # the dense, random-init-like case
    _check_detections(result, ref["predict_dense"])


def test_retina_head_loss_and_predict_match_mmdet(R):
    ref = R["retina_head"]
    core = _core("retinanet_r50_fpn_coco.py")
    priors = core.priors((320, 320))
    assert [h for h, w in priors.featmap_sizes] == list(ref["featmap_sizes"])
    cls, reg = _head_inputs(ref, 80)
    losses = _batch_loss(core, priors, cls, reg, ref["gts"], (320, 320))
    close(sum(l.terms["loss_cls"] for l in losses), sum(ref["loss"]["loss_cls"]), 1e-5)
    close(sum(l.terms["loss_bbox"] for l in losses), sum(ref["loss"]["loss_bbox"]), 1e-5)
    for i in range(2):
        _check_detections(core.predict(cls[i], reg[i], priors, (320, 320)), ref["predict"][i])


def test_rtmdet_head_loss_and_predict_match_mmdet(R):
    ref = R["rtmdet_head"]
    core = _core("rtmdet_tiny_coco.py")
    priors = core.priors((320, 320))
    cls = flat_levels([from_recipe(r, randn_recipe) for r in ref["cls_scores"]], 80)
    strides = [8, 16, 32]

    def dist(r):
        h, w = r["shape"][2:]
        s = strides[[40, 20, 10].index(h)]
        return ((0.5 + 2.5 * det_uniform(math.prod(r["shape"]), r["seed"]).view(*r["shape"])) * s).float()
    reg = flat_levels([from_recipe(r, dist) for r in ref["bbox_preds"]], 4)
    losses = _batch_loss(core, priors, cls, reg, ref["gts"], (320, 320))
    close(sum(l.terms["loss_cls"] for l in losses), sum(ref["loss"]["loss_cls"]), 1e-5)
    close(sum(l.terms["loss_bbox"] for l in losses), sum(ref["loss"]["loss_bbox"]), 1e-5)
    for i in range(2):
        _check_detections(core.predict(cls[i], reg[i], priors, (320, 320)), ref["predict"][i])
